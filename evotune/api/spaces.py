"""Search spaces as the service sees them: parsed once per process, then served from memory.

A space file that changes on disk is picked up when the service restarts, and so is the
installed kernels' source hash (which configs it serves without `stale=true`).
"""

from __future__ import annotations

import threading
from pathlib import Path

from evotune.errors import KernelNotFoundError, SpaceFileError
from evotune.source_hash import kernel_source_hash
from evotune.space import SearchSpace, available_kernels, load_space

__all__ = ["SpaceCatalog"]


class SpaceCatalog:
    """Kernel name -> SearchSpace, loaded on first use (errors are raised, never cached)."""

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory
        self._spaces: dict[str, SearchSpace] = {}
        self._source_hashes: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def kernels(self) -> list[str]:
        return available_kernels(self._directory)

    def get(self, kernel: str) -> SearchSpace:
        """The space of a kernel; KernelNotFoundError / SpaceFileError when there is none."""
        space = self._spaces.get(kernel)
        if space is None:
            with self._lock:
                space = self._spaces.get(kernel)
                if space is None:
                    if kernel not in self.kernels():  # never a path: only listed names
                        known = ", ".join(self.kernels()) or "none"
                        raise KernelNotFoundError(
                            f"unknown kernel {kernel!r}; known kernels: {known}"
                        )
                    space = load_space(kernel, self._directory)
                    self._spaces[kernel] = space
        return space

    def source_hash(self, kernel: str) -> str | None:
        """The source hash of the kernel's plug-in as installed beside the service (read,
        not imported); None when its module is not installed here."""
        if kernel not in self._source_hashes:
            module = self.get(kernel).module
            try:
                self._source_hashes[kernel] = kernel_source_hash(module)
            except SpaceFileError:
                self._source_hashes[kernel] = None
        return self._source_hashes[kernel]
