"""Honest measurement inside the worker: the correctness oracle and the timing loop.

Correctness comes first (DESIGN.md "Measuring honestly"): the output buffer starts as NaN,
so an element the kernel never wrote stays NaN and fails the check. Timing uses CUDA events
around each run with the L2 cache flushed in between, and runs until the running median
is stable. Imported only inside worker processes (it imports torch).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

__all__ = [
    "Check",
    "CudaEventTimer",
    "Timer",
    "Timing",
    "WallTimer",
    "check_output",
    "measure",
    "median_is_stable",
    "rotation_sets",
    "summarize",
    "tensor_bytes",
]

Launch = Callable[[int], None]


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


def check_output(out: torch.Tensor, ref: torch.Tensor, atol: float, rtol: float) -> Check:
    """Compare a kernel's output with the float32 reference: |out - ref| <= atol + rtol |ref|."""
    if tuple(out.shape) != tuple(ref.shape):
        raise ValueError(f"output shape {tuple(out.shape)} != reference shape {tuple(ref.shape)}")
    o = out.detach().float()
    r = ref.detach().to(device=o.device, dtype=torch.float32)
    err = (o - r).abs()
    nan = torch.isnan(o)
    n_nan = int(nan.sum().item())
    # NaN compares False with everything, so NaN elements are counted apart from n_over.
    n_over = int((err > atol + rtol * r.abs()).sum().item())
    if n_nan:
        max_error = math.inf
    elif err.numel():
        max_error = float(err.max().item())
    else:
        max_error = 0.0
    return Check(numel=o.numel(), n_nan=n_nan, n_over=n_over, max_error=max_error)


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


# --- timers ---------------------------------------------------------------------------------


class Timer(Protocol):
    def batch(self, launch: Launch, first: int, n: int) -> list[float]:
        """Run launch(first), ..., launch(first + n - 1); return each run's time in µs."""
        ...


class WallTimer:
    """perf_counter around each call: for the interpreter, where a call runs synchronously."""

    def batch(self, launch: Launch, first: int, n: int) -> list[float]:
        samples = []
        for i in range(first, first + n):
            t0 = time.perf_counter()
            launch(i)
            samples.append((time.perf_counter() - t0) * 1e6)
        return samples


class CudaEventTimer:
    """CUDA events around each run, with the L2 cache flushed before each one.

    The flush writes a buffer of twice the L2 size. A short spin kernel queued before each
    batch lets the host enqueue the batch ahead of the GPU, so that host launch overhead
    never shows up as idle time between a start event and its kernel.
    """

    def __init__(self, l2_bytes: int, head_start_cycles: int = 2_000_000) -> None:
        self.flush_bytes = max(2 * l2_bytes, 8 << 20)
        self._flush = torch.empty(self.flush_bytes, dtype=torch.int8, device="cuda")
        self._head_start = head_start_cycles

    def batch(self, launch: Launch, first: int, n: int) -> list[float]:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        sleep = getattr(torch.cuda, "_sleep", None)
        if sleep is not None and self._head_start > 0:
            sleep(self._head_start)
        for k in range(n):
            self._flush.zero_()
            starts[k].record()
            launch(first + k)
            ends[k].record()
        ends[-1].synchronize()
        return [s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends, strict=True)]


def measure(
    launch: Launch,
    timer: Timer,
    *,
    min_runs: int,
    max_runs: int,
    target_rel_spread: float,
    budget_s: float,
    warmup_s: float = 0.0,
    batch: int = 10,
) -> Timing:
    """Warm up for `warmup_s`, then time batches until the running median is stable (after
    at least `min_runs`), `max_runs` are done, or `budget_s` of wall time is spent."""
    min_runs = max(1, min_runs)
    max_runs = max(min_runs, max_runs)
    batch = max(1, batch)
    index = 0
    if warmup_s > 0:
        warm_end = time.perf_counter() + warmup_s
        while True:
            timer.batch(launch, index, min(batch, 3))
            index += min(batch, 3)
            if time.perf_counter() >= warm_end:
                break
    start = time.perf_counter()
    samples: list[float] = []
    while len(samples) < max_runs:
        n = min(batch, max_runs - len(samples))
        samples += timer.batch(launch, index, n)
        index += n
        if len(samples) >= min_runs and (
            median_is_stable(samples, target_rel_spread) or time.perf_counter() - start >= budget_s
        ):
            break
    return summarize(samples)


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
    """How many input sets to rotate through while timing: one when a set overflows the L2,
    else enough that the sets together span twice the L2 (capped)."""
    if working_set_bytes <= 0 or l2_bytes <= 0 or working_set_bytes > l2_bytes:
        return 1
    return max(2, min(max_sets, math.ceil(2 * l2_bytes / working_set_bytes)))
