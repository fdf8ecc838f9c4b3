"""Worker hygiene: what one trial leaves behind must not reach the next.

`MemoryProbe` reads the memory a worker holds between trials: CUDA tensors (PyTorch's
allocator, this process only) on a GPU, the resident set under the interpreter. A trial
that leaves more behind than `leak_limit` leaked: it fails, and its worker is replaced.
Device memory a plug-in takes outside PyTorch's allocator is not read (the device-wide free
memory also moves with the compile processes' contexts and other programs); what it does to
the next config is covered by replacing the worker after an out-of-memory error.
`OutputDrain` takes the worker's stdout and stderr (file descriptors 1 and 2, so C and CUDA
printf too) into a pipe that a thread empties, so a plug-in that prints tens of megabytes
neither blocks the worker nor floods the search's terminal; the tail is kept for the error
text of a failed trial.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
from typing import Any

__all__ = ["MemoryProbe", "OutputDrain"]

_MiB = 1 << 20
# A trial may leave at most this much more in tensors than it found: more is a config that
# keeps memory alive after its call returns (a leak, however small a call's share).
GPU_TENSOR_LIMIT = 64 * _MiB
# The interpreter's resident set moves with Python's and numpy's own caches.
HOST_LIMIT = 256 * _MiB


class MemoryProbe:
    """Bytes a worker holds in tensors (PyTorch's allocator), or its resident set under the
    interpreter."""

    def __init__(self, torch: Any, interpreted: bool) -> None:
        self._torch = torch
        self.interpreted = interpreted
        self.leak_limit = HOST_LIMIT if interpreted else GPU_TENSOR_LIMIT

    def read(self, collect: bool = False) -> int:
        if collect:  # tensors that only a reference cycle keeps alive are not a leak
            gc.collect()
        if self.interpreted:
            return _resident_bytes()
        self._torch.cuda.synchronize()
        return int(self._torch.cuda.memory_allocated())

    def check(self, before: int) -> str | None:
        """Why the trial leaked, against a reading taken before it (None: it did not)."""
        grown = self.read() - before
        if grown > self.leak_limit:
            grown = self.read(collect=True) - before  # only then: a collection costs tens of ms
        if grown <= self.leak_limit:
            return None
        where = "host memory under the interpreter" if self.interpreted else "GPU memory"
        return (
            f"leaked {where}: holds {grown / _MiB:.0f} MiB more after the trial than before "
            f"(limit {self.leak_limit / _MiB:.0f} MiB)"
        )


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class OutputDrain:
    """Redirects this process's file descriptors 1 and 2 into a pipe emptied by a thread;
    `take()` returns (bytes written, their last `keep` bytes as text) since the last call."""

    def __init__(self, keep: int = 2048) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._count = 0
        self._tail = bytearray()
        read_end, write_end = os.pipe()
        for fd in (1, 2):
            os.dup2(write_end, fd)
        os.close(write_end)
        self._thread = threading.Thread(
            target=self._drain, args=(read_end,), name="evotune-output-drain", daemon=True
        )
        self._thread.start()

    def _drain(self, fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._count += len(chunk)
                self._tail += chunk
                del self._tail[: -self._keep]

    def take(self) -> tuple[int, str]:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        with self._lock:
            count, tail = self._count, bytes(self._tail)
            self._count, self._tail = 0, bytearray()
        return count, tail.decode(errors="replace")

    def describe(self) -> str | None:
        """'the config printed 41.9 MB; it ended: ...' for an error text, or None if quiet."""
        count, tail = self.take()
        if not count:
            return None
        return f"it printed {count / 1e6:.3g} MB; the last of it: {tail[-800:].strip()}"
