"""Kernel configs against the plug-in's baselines: same process, same inputs, same timer
(`evotune bench`).

A kernel row is measured by the code every search trial goes through
(evotune/worker/trial.py): the gate on every input set, verified timed batches on rotating
input sets with the L2 flushed before each run, the physical floor; so a bench row and a
stored p50 of the same config come from one timer. Baseline rows come from the plug-in's
optional `baselines(inputs)` (label -> a call returning the output: torch SDPA's backends
for attention, cuBLAS for a GEMM), timed by the same timer on the same input sets and
checked against the same references (their error is shown, never held against them).

Beside that GPU time, each row that has one gets what a caller running it back to back pays
(evotune/worker/launch_cost.py): wall time and host time per call of the plug-in's `run` (or the
baseline's call) and, with the same call captured in a CUDA graph and replayed, GPU time per
call; a kernel's replay is checked against the reference. Not under the interpreter.

Needs only torch and the worker's measuring modules (and rich for the table): `bench_dims`
runs on a bare GPU host without the search-space machinery; `bench_table` is the CLI's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

    from evotune.records import Config
    from evotune.space import SearchSpace, Shape
    from evotune.worker.trial import Device, InputSet, Prepared

__all__ = ["BenchRow", "bench_dims", "bench_table", "render_bench_table"]


@dataclass
class BenchRow:
    """One line of the table. `ratio_to_best_baseline` is the fastest baseline's time over
    this row's time: above 1.0 this row is faster than every baseline."""

    label: str
    kind: str  # "kernel" or "baseline"
    p50_us: float | None = None
    tflops: float | None = None
    ratio_to_best_baseline: float | None = None
    max_error: float | None = None
    n_runs: int = 0
    error: str | None = None
    wall_us_per_call: float | None = None  # back to back, synchronized once at the end
    host_us_per_call: float | None = None  # the same calls' enqueue time
    graph_us_per_call: float | None = None  # GPU time of a call captured in a CUDA graph
    graph_error: str | None = None  # why there is no graph time


class _BaselineSubject:
    """A baseline over the input sets, as the timer runs it: it allocates its own output,
    so there is nothing to poison; verify records its error against the reference."""

    def __init__(self, calls: Sequence[Callable[[], Any]], sets: Sequence[InputSet]) -> None:
        self.calls, self.sets = list(calls), list(sets)
        self.outs: list[Any] = [None] * len(self.calls)
        self.max_error = 0.0
        self._pending: list[Any] = []

    def launch(self, i: int) -> None:
        k = i % len(self.calls)
        self.outs[k] = self.calls[k]()

    def poison(self, i: int) -> None:
        pass

    def verify(self, i: int) -> None:
        from evotune.worker.measure import PendingCheck

        k = i % len(self.calls)
        self._pending.append(PendingCheck(self.outs[k], self.sets[k].ref, 0.0, 0.0))

    def settle(self) -> None:
        pending, self._pending = self._pending, []
        for check in pending:
            self.max_error = max(self.max_error, check.result().max_error)


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:200] if lines else ""


def _launch_costs(
    row: BenchRow,
    call: Callable[[], Any],
    poison: Callable[[], None] = lambda: None,
    verify: Callable[[Any], None] = lambda _result: None,
) -> None:
    """Fill a timed row's wall, host and graph times per call (launch_cost.py)."""
    from evotune.worker import launch_cost

    try:
        wall = launch_cost.wall_per_call(call)
    except Exception as exc:
        row.error = f"wall time: {type(exc).__name__}: {_first_line(str(exc))}"
        return
    row.wall_us_per_call, row.host_us_per_call = wall.wall_us, wall.host_us
    try:
        row.graph_us_per_call = launch_cost.graph_per_call(call, poison, verify)
    except Exception as exc:
        row.graph_error = f"{type(exc).__name__}: {_first_line(str(exc))}"


def _kernel_costs(plugin: Any, prepared: Prepared, row: BenchRow) -> None:
    """`_launch_costs` of a kernel config through the plug-in's `run` on its first input set;
    its graph replay must reproduce the reference within the tolerance."""
    from evotune.worker import measure

    subject = prepared.subject
    s, config = subject.sets[0], subject.config

    def call() -> Any:
        plugin.run(s.inputs, s.out, config)
        return s.out

    def verify(out: Any) -> None:
        check = measure.check_output(out, s.ref, subject.atol, subject.rtol)
        if not check.ok:
            raise RuntimeError(f"the replay's output is wrong: {check.describe()}")

    _launch_costs(row, call, lambda: s.out.fill_(math.nan), verify)


def bench_dims(
    plugin: ModuleType | Any,
    dims: Mapping[str, Any],
    configs: Mapping[str, Mapping[str, Any]],
    *,
    seed: int = 0,
    tolerance: Mapping[str, float] | None = None,
    baselines: bool = True,
    device: Device | None = None,
    time_budget_s: float = 1.0,
    on_row: Callable[[str], None] | None = None,
) -> list[BenchRow]:
    """Time each labelled kernel config, then each of the plug-in's baselines.

    `plugin` is a kernel plug-in module (evotune/plugin.py); `tolerance` ({atol, rtol})
    defaults to exact. A config that fails or is wrong gets its error instead of a time.
    `device` defaults to CUDA device 0; `on_row(label)` is called before each row starts
    (progress, and the culprit if a kernel hangs).
    """
    from evotune.records import TrialRequest
    from evotune.worker import measure
    from evotune.worker.trial import Device, Verdict, make_input_sets, prepare, time_prepared

    device = device or Device.open(interpreted=False)
    tol = {"atol": 0.0, "rtol": 0.0, **(tolerance or {})}
    flop = float(plugin.flops(dict(dims)))
    rows: list[BenchRow] = []

    for number, (label, config) in enumerate(configs.items()):
        if on_row:
            on_row(label)
        row = BenchRow(label=label, kind="kernel")
        rows.append(row)
        request = TrialRequest(
            number, "bench", dict(dims), dict(config), seed, tol, time_budget_s=time_budget_s
        )
        prepared = prepare(plugin, request, device)
        verdict = (
            prepared if isinstance(prepared, Verdict) else time_prepared(plugin, prepared, device)
        )
        result = verdict.result
        row.max_error, row.n_runs = result.max_error, result.n_runs
        if result.p50_us is None:
            row.error = _first_line(result.error)
            continue
        row.p50_us = result.p50_us
        if not device.interpreted and not isinstance(prepared, Verdict):
            _kernel_costs(plugin, prepared, row)

    make_baselines = getattr(plugin, "baselines", None)
    if baselines and callable(make_baselines):
        reference_request = TrialRequest(0, "bench", dict(dims), {}, seed, tol)
        sets = make_input_sets(plugin, reference_request, device)
        per_set = [make_baselines(s.inputs) for s in sets]
        min_runs, max_runs = device.limits(reference_request)
        for label in per_set[0]:
            if on_row:
                on_row(label)
            row = BenchRow(label=label, kind="baseline")
            rows.append(row)
            subject = _BaselineSubject([calls[label] for calls in per_set], sets)
            try:
                subject.launch(0)
                device.sync()
                timing, _ = measure.measure(
                    subject,
                    device.timer,
                    first=1,
                    min_runs=min_runs,
                    max_runs=max_runs,
                    target_rel_spread=reference_request.target_rel_spread,
                    budget_s=time_budget_s,
                    warmup_s=0.0 if device.interpreted else measure.WARMUP_S,
                    batch=1 if device.interpreted else measure.BATCH,
                )
            except Exception as exc:  # e.g. a backend without a kernel for these inputs
                row.error = f"{type(exc).__name__}: {_first_line(str(exc))}"
                continue
            row.p50_us, row.n_runs, row.max_error = timing.p50_us, timing.n_runs, subject.max_error
            if not device.interpreted:
                _launch_costs(row, subject.calls[0])

    best = min((r.p50_us for r in rows if r.kind == "baseline" and r.p50_us), default=None)
    for row in rows:
        if row.p50_us:
            row.tflops = flop / (row.p50_us * 1e-6) / 1e12
            if best:
                row.ratio_to_best_baseline = best / row.p50_us
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
    """A rich table: label, p50 µs (GPU time of one call), wall, host and graph µs per call,
    TFLOPS, ratio to the fastest baseline, max error; why a graph time is missing goes to a
    numbered footnote under the table."""
    from rich.markup import escape
    from rich.table import Table

    def us(value: float | None) -> str:
        return f"{value:.1f}" if value else "-"

    table = Table(title=title)
    columns = (
        "config",
        "p50 µs",
        "wall µs/call",
        "host µs/call",
        "graph µs/call",
        "TFLOPS",
        "vs best baseline",
        "max err",
        "note",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("config", "note") else "right")
    footnotes: list[str] = []
    for row in rows:
        graph = us(row.graph_us_per_call)
        if row.graph_error:
            footnotes.append(f"({len(footnotes) + 1}) {row.label}: {row.graph_error}")
            graph = f"- ({len(footnotes)})"
        table.add_row(
            row.label,
            us(row.p50_us),
            us(row.wall_us_per_call),
            us(row.host_us_per_call),
            graph,
            f"{row.tflops:.1f}" if row.tflops else "-",
            f"{row.ratio_to_best_baseline:.2f}x" if row.ratio_to_best_baseline else "-",
            f"{row.max_error:.2e}" if row.max_error is not None else "-",
            row.error or "",
        )
    if footnotes:
        table.caption = escape("graph capture failed: " + "; ".join(footnotes))
    return table
