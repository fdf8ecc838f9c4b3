"""The timing loop and the correctness oracle it checks timed runs with.

Every timed run is a launch of a `Subject` (a kernel config, or a baseline, over a few input
sets). Around chosen runs, outside the timed interval, the timer poisons the run's output
buffer with NaN before it and queues a check of what the run wrote after it; the checks are
read once the batch has synchronized (`Subject.settle`), so a config that is right on its
first launch and wrong or idle on later ones is caught on the very runs that were timed
(docs/how-evotune-measures.md). Imported only where torch runs: the worker processes and `evotune bench`.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

__all__ = [
    "Check",
    "CudaEventTimer",
    "PendingCheck",
    "Subject",
    "Timer",
    "Timing",
    "WallTimer",
    "check_output",
    "checked_runs",
    "measure",
    "median_is_stable",
    "rotation_sets",
    "summarize",
    "tensor_bytes",
]

# GPU work queued before each batch, so that the host enqueues the batch ahead of the GPU and
# host launch overhead never shows up as idle time between a start event and its kernel.
HEAD_START_CYCLES = 2_000_000
WARMUP_S = 0.05  # GPU warm-up before timing: lets clocks settle after compiling or idling
BATCH = 10  # runs per timed batch on a GPU (one host head start, one synchronize)


# --- correctness ------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """The verdict of the oracle on one output."""

    numel: int
    n_nan: int  # NaN in the output: written as NaN, or never written (the buffer starts NaN)
    n_over: int  # finite elements whose error exceeds atol + rtol * |ref| (inf counts too)
    max_error: float  # max |out - ref|; inf when any NaN is present

    @property
    def ok(self) -> bool:
        return self.n_nan == 0 and self.n_over == 0

    def describe(self) -> str:
        parts = []
        if self.n_nan:
            parts.append(f"{self.n_nan} of {self.numel} elements NaN or unwritten")
        if self.n_over:
            parts.append(f"{self.n_over} of {self.numel} elements over tolerance")
        parts.append(f"max error {self.max_error:.3g}")
        return "; ".join(parts)


class PendingCheck:
    """A check queued on the output's device: the counts stay device tensors until
    `result()`, so checking a timed run costs no synchronization inside the batch."""

    def __init__(self, out: torch.Tensor, ref: torch.Tensor, atol: float, rtol: float) -> None:
        if tuple(out.shape) != tuple(ref.shape):
            raise ValueError(
                f"output shape {tuple(out.shape)} != reference shape {tuple(ref.shape)}"
            )
        o = out.detach().float()
        r = ref.detach().to(device=o.device, dtype=torch.float32)
        err = (o - r).abs()
        self._numel = o.numel()
        self._n_nan = torch.isnan(o).sum()
        # NaN compares False with everything, so NaN elements are counted apart from n_over.
        self._n_over = (err > atol + rtol * r.abs()).sum()
        self._max = err.max() if err.numel() else None

    def result(self) -> Check:
        n_nan = int(self._n_nan.item())
        max_error = 0.0 if self._max is None else float(self._max.item())
        if n_nan:
            max_error = math.inf
        return Check(self._numel, n_nan, int(self._n_over.item()), max_error)


def check_output(out: torch.Tensor, ref: torch.Tensor, atol: float, rtol: float) -> Check:
    """Compare a kernel's output with the float32 reference: |out - ref| <= atol + rtol |ref|."""
    return PendingCheck(out, ref, atol, rtol).result()


# --- statistics ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Summary of one config's timed runs (microseconds)."""

    samples_us: list[float]
    p20_us: float
    p50_us: float
    p80_us: float

    @property
    def n_runs(self) -> int:
        return len(self.samples_us)


def summarize(samples_us: Sequence[float]) -> Timing:
    if not samples_us:
        raise ValueError("no samples to summarize")
    p20, p50, p80 = (float(v) for v in np.percentile(np.asarray(samples_us), [20, 50, 80]))
    return Timing(samples_us=[float(s) for s in samples_us], p20_us=p20, p50_us=p50, p80_us=p80)


def median_is_stable(samples: Sequence[float], target_rel_spread: float, window: int = 5) -> bool:
    """Whether the running median has settled: over the last `window` samples (at least a
    fifth of them all), (max - min) / last of the running medians is within the target."""
    n = len(samples)
    w = max(window, n // 5)
    if n <= w:
        return False
    medians = [statistics.median(samples[:k]) for k in range(n - w + 1, n + 1)]
    last = medians[-1]
    if last <= 0:
        return False
    return (max(medians) - min(medians)) / last <= target_rel_spread


# --- what is timed ------------------------------------------------------------------------


class Subject(Protocol):
    """Something a timer runs: `launch(i)` runs it on input set i mod k. `poison(i)` and
    `verify(i)` surround a run chosen for checking, outside its timed interval; `settle()`,
    called once the batch has synchronized, raises if a checked run was wrong."""

    def launch(self, i: int) -> None: ...
    def poison(self, i: int) -> None: ...
    def verify(self, i: int) -> None: ...
    def settle(self) -> None: ...


# --- timers ---------------------------------------------------------------------------------


class Timer(Protocol):
    def batch(self, subject: Subject, first: int, n: int, checked: frozenset[int]) -> list[float]:
        """Run subject.launch(first), ..., launch(first + n - 1); return each run's time in
        µs. Runs whose index is in `checked` are poisoned before and verified after, outside
        their timed interval. Ends with the batch's work finished (and settled)."""
        ...


class WallTimer:
    """perf_counter around each call: for the interpreter, where a call runs synchronously."""

    def batch(self, subject: Subject, first: int, n: int, checked: frozenset[int]) -> list[float]:
        samples = []
        for i in range(first, first + n):
            if i in checked:
                subject.poison(i)
            t0 = time.perf_counter()
            subject.launch(i)
            samples.append((time.perf_counter() - t0) * 1e6)
            if i in checked:
                subject.verify(i)
        subject.settle()
        return samples


class CudaEventTimer:
    """CUDA events around each run, with the L2 cache flushed before each one (a write of
    twice its size) and a spin kernel queued before each batch as the host's head start."""

    def __init__(self, l2_bytes: int, head_start_cycles: int = HEAD_START_CYCLES) -> None:
        self.flush_bytes = max(2 * l2_bytes, 8 << 20)
        self._flush = torch.empty(self.flush_bytes, dtype=torch.int8, device="cuda")
        self._head_start = head_start_cycles

    def batch(self, subject: Subject, first: int, n: int, checked: frozenset[int]) -> list[float]:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        sleep = getattr(torch.cuda, "_sleep", None)
        if sleep is not None and self._head_start > 0:
            sleep(self._head_start)
        for k in range(n):
            i = first + k
            if i in checked:
                subject.poison(i)  # before the flush: the poisoned lines leave the L2 too
            self._flush.zero_()
            starts[k].record()
            subject.launch(i)
            ends[k].record()
            if i in checked:
                subject.verify(i)
        torch.cuda.synchronize()
        subject.settle()
        return [s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends, strict=True)]


def checked_runs(first: int, n: int) -> frozenset[int]:
    """The runs of a batch whose output is verified: the last one, and one more drawn from
    the batch (seeded by its position, so a run repeats), so that a config that goes wrong
    only every few launches cannot line up with the last run of each batch."""
    if n <= 0:
        return frozenset()
    other = first + random.Random(first).randrange(n)
    return frozenset({first + n - 1, other})


def measure(
    subject: Subject,
    timer: Timer,
    *,
    first: int = 0,
    min_runs: int,
    max_runs: int,
    target_rel_spread: float,
    budget_s: float,
    warmup_s: float = 0.0,
    batch: int = BATCH,
) -> tuple[Timing, int]:
    """Warm up for `warmup_s`, then time batches until the running median is stable (after
    at least `min_runs`), `max_runs` are done, or `budget_s` of wall time is spent. Every
    batch, warm-up included, has its `checked_runs` verified. Returns the timing and the
    next run index (runs are numbered on from `first`)."""
    min_runs = max(1, min_runs)
    max_runs = max(min_runs, max_runs)
    batch = max(1, batch)
    index = first
    if warmup_s > 0:
        warm_end = time.perf_counter() + warmup_s
        while True:
            n = min(batch, 3)
            timer.batch(subject, index, n, checked_runs(index, n))
            index += n
            if time.perf_counter() >= warm_end:
                break
    start = time.perf_counter()
    samples: list[float] = []
    while len(samples) < max_runs:
        n = min(batch, max_runs - len(samples))
        samples += timer.batch(subject, index, n, checked_runs(index, n))
        index += n
        if len(samples) >= min_runs and (
            median_is_stable(samples, target_rel_spread) or time.perf_counter() - start >= budget_s
        ):
            break
    return summarize(samples), index


# --- inputs -------------------------------------------------------------------------------


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in a (nested) dict/list/tuple of inputs."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def rotation_sets(working_set_bytes: int, l2_bytes: int, max_sets: int = 8) -> int:
    """How many input sets timing rotates through: at least two (so that a config must be
    right on more than the inputs it first saw), and where a set fits in the L2, enough that
    the sets together span twice the L2 (capped)."""
    if working_set_bytes <= 0 or l2_bytes <= 0 or working_set_bytes > l2_bytes:
        return 2
    return max(2, min(max_sets, math.ceil(2 * l2_bytes / working_set_bytes)))
