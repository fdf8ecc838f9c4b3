"""Kernel configs against torch SDPA's backends, same process, same inputs (`evotune bench`).

Every row is timed the same way: warm-up, then CUDA events around each call with the L2
flushed in between, reported as the median. Each kernel config is checked against the
reference first; a wrong or failing config gets an error text instead of a time.

This module needs only torch (and rich for the table): `bench_dims` runs on a bare GPU host
without the search-space machinery; `bench_table` is the entry point for the CLI.
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

    from evotune.records import Config
    from evotune.space import SearchSpace, Shape

__all__ = [
    "BenchRow",
    "bench_dims",
    "bench_table",
    "render_bench_table",
    "time_cuda",
    "time_wall",
]

SDPA_BACKENDS = ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION")
_FLUSH_BYTES = 256 << 20  # larger than any current L2 (H100: 50 MB)
_SPIN_CYCLES = 400_000  # ~0.2 ms at 2 GHz: longer than the host side of one launch


@dataclass
class BenchRow:
    """One line of the table. `ratio_to_best_sdpa` is the fastest SDPA time over this row's
    time: above 1.0 this row is faster than every SDPA backend."""

    label: str
    kind: str  # "kernel" or "sdpa"
    p50_us: float | None = None
    tflops: float | None = None
    ratio_to_best_sdpa: float | None = None
    max_error: float | None = None
    n_runs: int = 0
    error: str | None = None


@functools.lru_cache(maxsize=1)
def _flush_buffer() -> Any:
    import torch

    return torch.empty(_FLUSH_BYTES, dtype=torch.uint8, device="cuda")


def time_cuda(
    fn: Callable[[], Any],
    *,
    warmup: int = 3,
    min_runs: int = 10,
    max_runs: int = 200,
    budget_ms: float = 300.0,
) -> tuple[float, int]:
    """Median microseconds of fn() over CUDA events, L2 flushed before each run; (p50, runs)."""
    import torch

    flush = _flush_buffer()
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    # A rough single-run estimate sizes the number of timed runs to the time budget.
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    estimate_ms = max(start.elapsed_time(end), 1e-3)
    runs = int(min(max_runs, max(min_runs, budget_ms / (estimate_ms + 0.05))))
    events = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        for _ in range(runs)
    ]
    for begin, finish in events:
        flush.zero_()
        # Keep the GPU busy while the host prepares the launch, so that host overhead (Python
        # wrappers, descriptor encoding) stays out of the interval between the two events.
        torch.cuda._sleep(_SPIN_CYCLES)
        begin.record()
        fn()
        finish.record()
    torch.cuda.synchronize()
    samples = [b.elapsed_time(f) * 1000.0 for b, f in events]
    return statistics.median(samples), runs


def time_wall(fn: Callable[[], Any], *, budget_ms: float = 0.0) -> tuple[float, int]:
    """One wall-clock run in microseconds: for dry runs on the CPU interpreter, not for numbers."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e6, 1


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _max_error(out: Any, ref: Any) -> float:
    import torch

    diff = (out.float() - ref.float()).abs()
    if not torch.isfinite(out.float()).all():
        return math.inf
    return float(diff.max())


def bench_dims(
    plugin: ModuleType | Any,
    dims: Mapping[str, Any],
    configs: Mapping[str, Mapping[str, Any]],
    *,
    seed: int = 0,
    tolerance: Mapping[str, float] | None = None,
    backends: tuple[str, ...] = SDPA_BACKENDS,
    device: str = "cuda",
    budget_ms: float = 300.0,
    timer: Callable[..., tuple[float, int]] | None = None,
    on_row: Callable[[str], None] | None = None,
) -> list[BenchRow]:
    """Time each labelled kernel config and each SDPA backend on one set of inputs.

    `plugin` is a kernel plug-in module (make_inputs/run/reference/flops); the SDPA rows
    assume it is the attention kernel (inputs q, k, v, causal, sm_scale). With `tolerance`
    ({atol, rtol}) a kernel row whose error exceeds it is reported as wrong and not timed.
    `budget_ms` bounds the timed runs of one row (at least 10, at most 200). `timer` defaults
    to `time_cuda` on a CUDA device and to `time_wall` (a dry run) elsewhere. `on_row(label)`
    is called before each row starts (progress, and the culprit if a kernel hangs).
    """
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    timer = timer or (time_cuda if device.startswith("cuda") else time_wall)
    inputs = plugin.make_inputs(dict(dims), seed, device)
    ref = plugin.reference(inputs)
    flop = float(plugin.flops(dict(dims)))
    rows: list[BenchRow] = []

    for label, config in configs.items():
        if on_row:
            on_row(label)
        row = BenchRow(label=label, kind="kernel")
        rows.append(row)
        out = plugin.empty_output(inputs)
        out.fill_(float("nan"))
        try:
            plugin.run(inputs, out, dict(config))
            _sync(device)
        except Exception as exc:  # a failing config is a row, not the end of the table
            row.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else ''}"
            continue
        row.max_error = _max_error(out, ref)
        if tolerance is not None:
            bound = (tolerance["atol"] + tolerance.get("rtol", 0.0) * ref.float().abs()).to(
                out.device
            )
            if not bool(((out.float() - ref.float()).abs() <= bound).all()):
                row.error = f"wrong result (max error {row.max_error:.3g})"
                continue
        row.p50_us, row.n_runs = timer(
            functools.partial(plugin.run, inputs, out, dict(config)), budget_ms=budget_ms
        )

    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    causal = bool(inputs["causal"])
    scale = inputs.get("sm_scale")
    for name in backends:
        if on_row:
            on_row(name)
        row = BenchRow(label=f"sdpa:{name.lower().removesuffix('_attention')}", kind="sdpa")
        rows.append(row)
        backend = getattr(SDPBackend, name)

        def call(backend: Any = backend) -> Any:
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)

        try:
            out = call()
            _sync(device)
        except Exception as exc:
            row.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''}"
            continue
        row.max_error = _max_error(out, ref)
        row.p50_us, row.n_runs = timer(call, budget_ms=budget_ms)

    best_sdpa = min((r.p50_us for r in rows if r.kind == "sdpa" and r.p50_us), default=None)
    for row in rows:
        if row.p50_us:
            row.tflops = flop / (row.p50_us * 1e-6) / 1e12
            if best_sdpa:
                row.ratio_to_best_sdpa = best_sdpa / row.p50_us
    return rows


def bench_table(
    space: SearchSpace, shape: Shape, configs: dict[str, Config], seed: int = 0
) -> list[BenchRow]:
    """`bench_dims` for a search space's kernel at one shape, with the space's tolerance."""
    from evotune.plugin import load_plugin

    plugin = load_plugin(space.module)
    tol = space.tolerance(shape.dims)
    return bench_dims(
        plugin, shape.dims, configs, seed=seed, tolerance={"atol": tol.atol, "rtol": tol.rtol}
    )


def render_bench_table(rows: list[BenchRow], title: str | None = None) -> Table:
    """A rich table: label, p50 µs, TFLOPS, ratio to the fastest SDPA backend, max error."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("config", "p50 µs", "TFLOPS", "vs best SDPA", "max err", "note"):
        table.add_column(column, justify="left" if column in ("config", "note") else "right")
    for row in rows:
        table.add_row(
            row.label,
            f"{row.p50_us:.1f}" if row.p50_us else "-",
            f"{row.tflops:.1f}" if row.tflops else "-",
            f"{row.ratio_to_best_sdpa:.2f}x" if row.ratio_to_best_sdpa else "-",
            f"{row.max_error:.2e}" if row.max_error is not None else "-",
            row.error or "",
        )
    return table
