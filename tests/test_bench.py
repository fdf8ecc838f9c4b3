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
    from kernels import attention as attn

    configs = {"small tiles": {"BLOCK_M": 16, "BLOCK_N": 16}, "bad": {"BLOCK_M": 48}}
    rows = bench_dims(attn, DIMS, configs, tolerance=TOL, device=_device(FixedTimer(50.0)))
    by_label = {r.label: r for r in rows}
    assert [r.kind for r in rows] == ["kernel", "kernel", "baseline", "baseline", "baseline"]
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
    from kernels import attention as attn

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
