"""evotune.bench on the CPU: rows go through the trial code with the interpreter, timed by a
timer that runs each call but reports a fixed time (the table logic, not real numbers)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from evotune.bench import BenchRow, bench_dims, render_bench_table
from evotune.plugin import DeviceInfo
from evotune.worker.measure import Subject, WallTimer
from evotune.worker.trial import Device

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU dry-run of the table logic")

DIMS = {"B": 1, "H": 2, "S": 32, "D": 16, "causal": True, "dtype": "float32"}
TOL = {"atol": 5e-3, "rtol": 5e-3}


class FixedTimer:
    """Runs (and verifies) every call like the wall timer; reports `us` for each."""

    def __init__(self, us: float) -> None:
        self.us = us
        self.batches = 0

    def batch(self, subject: Subject, first: int, n: int, checked: frozenset[int]) -> list[float]:
        self.batches += 1
        WallTimer().batch(subject, first, n, checked)
        return [self.us] * n


def _device(timer: FixedTimer) -> Device:
    return Device(True, DeviceInfo(interpreted=True, name="cpu"), timer)


def test_kernel_and_baseline_rows() -> None:
    from evotune.kernels import attention as attn

    configs = {"small tiles": {"BLOCK_M": 16, "BLOCK_N": 16}, "bad": {"BLOCK_M": 48}}
    rows = bench_dims(attn, DIMS, configs, tolerance=TOL, device=_device(FixedTimer(50.0)))
    by_label = {r.label: r for r in rows}
    assert [r.kind for r in rows] == ["kernel"] * 2 + ["baseline"] * 4  # flash cudnn efficient math
    good = by_label["small tiles"]
    assert good.p50_us == 50.0 and good.error is None and good.n_runs == 3
    assert good.max_error is not None and good.max_error < 1e-3
    assert good.tflops == pytest.approx(attn.flops(DIMS) / 50e-6 / 1e12)
    assert by_label["bad"].p50_us is None and "BLOCK_M" in (by_label["bad"].error or "")
    flash = by_label["sdpa:flash"]  # torch's CPU flash kernel; cuDNN has no CPU kernel
    assert flash.p50_us == 50.0 and flash.ratio_to_best_baseline == pytest.approx(1.0)
    assert flash.max_error is not None and flash.max_error < 1e-3
    assert by_label["sdpa:cudnn"].error and by_label["sdpa:cudnn"].p50_us is None
    assert good.ratio_to_best_baseline == pytest.approx(1.0)


def test_wrong_result_is_not_timed() -> None:
    from evotune.kernels import attention as attn

    def wrong_run(inputs: dict[str, Any], out: torch.Tensor, config: dict[str, Any]) -> None:
        out.zero_()

    plugin = SimpleNamespace(
        make_inputs=attn.make_inputs,
        empty_output=attn.empty_output,
        reference=attn.reference,
        flops=attn.flops,
        unsupported=lambda config, dims, device: None,
        run=wrong_run,
    )
    timer = FixedTimer(1.0)
    rows = bench_dims(plugin, DIMS, {"zeros": {}}, tolerance=TOL, device=_device(timer))
    assert rows[0].error is not None and rows[0].error.startswith("wrong result")
    assert rows[0].p50_us is None and timer.batches == 0
    assert len(rows) == 1  # no baselines() in this plug-in: no baseline rows


def test_a_config_wrong_after_its_first_launch_is_an_error_row() -> None:
    """bench verifies timed runs as a search trial does: the same code."""
    from tests.worker import fault_plugin

    configs = {"stale": {"fault": "stale_queue"}, "fine": {"fault": "none"}}
    tiny = {"N": 4096, "dtype": "float32"}
    rows = bench_dims(fault_plugin, tiny, configs, tolerance=TOL, device=_device(FixedTimer(5.0)))
    by_label = {r.label: r for r in rows}
    assert "correct on launch 1, wrong on launch 2" in (by_label["stale"].error or "")
    assert by_label["stale"].p50_us is None and by_label["fine"].p50_us == 5.0


def test_render_table_shows_ratio_and_errors() -> None:
    from rich.console import Console

    rows = [
        BenchRow(
            "cfg", "kernel", p50_us=80.0, tflops=300.0, ratio_to_best_baseline=1.25, max_error=1e-3
        ),
        BenchRow("sdpa:flash", "baseline", p50_us=100.0, tflops=240.0, ratio_to_best_baseline=1.0),
        BenchRow("sdpa:cudnn", "baseline", error="RuntimeError: no kernel"),
    ]
    console = Console(width=200, record=True)
    console.print(render_bench_table(rows, title="t"))
    text = console.export_text()
    assert "1.25x" in text and "300.0" in text and "no kernel" in text


def test_launch_costs_are_not_measured_under_the_interpreter() -> None:
    from evotune.kernels import attention as attn

    rows = bench_dims(attn, DIMS, {"t": {}}, tolerance=TOL, device=_device(FixedTimer(5.0)))
    assert rows[0].p50_us == 5.0
    for row in rows:
        assert row.wall_us_per_call is None and row.host_us_per_call is None
        assert row.graph_us_per_call is None and row.graph_error is None


def test_render_table_shows_launch_costs_and_why_a_graph_time_is_missing() -> None:
    from rich.console import Console

    rows = [
        BenchRow("cfg", "kernel", p50_us=10.0, wall_us_per_call=14.5, host_us_per_call=12.25),
        BenchRow("sdpa:math", "baseline", p50_us=20.0, graph_error="RuntimeError: [no] capture"),
        BenchRow("sdpa:flash", "baseline", p50_us=12.0, graph_us_per_call=11.75),
    ]
    rows[0].graph_us_per_call = 9.5
    console = Console(width=250, record=True)
    console.print(render_bench_table(rows, title="t"))
    text = console.export_text()
    for header in ("wall µs/call", "host µs/call", "graph µs/call"):
        assert header in text
    assert "14.5" in text and "12.2" in text and "9.5" in text and "11.8" in text
    assert "- (1)" in text
    assert "graph capture failed: (1) sdpa:math: RuntimeError: [no] capture" in text


def test_bench_json_rows_carry_the_launch_costs_and_no_infinities() -> None:
    import json

    from evotune.schemas import bench_row_out

    row = BenchRow("cfg", "kernel", p50_us=10.0, max_error=float("inf"), wall_us_per_call=14.0)
    data = json.loads(json.dumps(bench_row_out(row).model_dump(mode="json"), allow_nan=False))
    assert data["max_error"] is None and data["wall_us_per_call"] == 14.0
    assert data["host_us_per_call"] is None and data["graph_us_per_call"] is None
    assert data["graph_error"] is None and data["p50_us"] == 10.0
