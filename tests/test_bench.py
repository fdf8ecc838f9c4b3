"""evotune.bench on the CPU: the table logic with the interpreter and a wall-clock dry-run timer."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from evotune.bench import BenchRow, bench_dims, render_bench_table

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU dry-run of the table logic")

DIMS = {"B": 1, "H": 2, "S": 32, "D": 16, "causal": True, "dtype": "float32"}
TOL = {"atol": 5e-3, "rtol": 5e-3}


def _fixed_timer(us: float) -> Any:
    def timer(fn: Any, *, budget_ms: float = 0.0) -> tuple[float, int]:
        fn()
        return us, 1

    return timer


def test_kernel_and_sdpa_rows() -> None:
    from kernels import attention as attn

    configs = {"small tiles": {"BLOCK_M": 16, "BLOCK_N": 16}, "bad": {"BLOCK_M": 48}}
    rows = bench_dims(attn, DIMS, configs, tolerance=TOL, device="cpu", timer=_fixed_timer(50.0))
    by_label = {r.label: r for r in rows}
    assert [r.kind for r in rows] == ["kernel", "kernel", "sdpa", "sdpa", "sdpa"]
    good = by_label["small tiles"]
    assert (
        good.p50_us == 50.0
        and good.error is None
        and good.max_error is not None
        and good.max_error < 1e-3
    )
    assert good.tflops == pytest.approx(attn.flops(DIMS) / 50e-6 / 1e12)
    assert by_label["bad"].p50_us is None and "BLOCK_M" in (by_label["bad"].error or "")
    flash = by_label["sdpa:flash"]  # torch's CPU flash kernel; cuDNN has no CPU kernel
    assert flash.p50_us == 50.0 and flash.ratio_to_best_sdpa == pytest.approx(1.0)
    assert by_label["sdpa:cudnn"].error and by_label["sdpa:cudnn"].p50_us is None
    assert good.ratio_to_best_sdpa == pytest.approx(1.0)


def test_wrong_result_is_not_timed() -> None:
    from kernels import attention as attn

    def wrong_run(inputs: dict[str, Any], out: torch.Tensor, config: dict[str, Any]) -> None:
        out.zero_()

    plugin = SimpleNamespace(
        make_inputs=attn.make_inputs,
        empty_output=attn.empty_output,
        reference=attn.reference,
        flops=attn.flops,
        run=wrong_run,
    )
    timed: list[int] = []

    def timer(fn: Any, *, budget_ms: float = 0.0) -> tuple[float, int]:
        timed.append(1)
        return 1.0, 1

    rows = bench_dims(
        plugin, DIMS, {"zeros": {}}, tolerance=TOL, backends=(), device="cpu", timer=timer
    )
    assert rows[0].error is not None and rows[0].error.startswith("wrong result")
    assert rows[0].p50_us is None and not timed


def test_render_table_shows_ratio_and_errors() -> None:
    from rich.console import Console

    rows = [
        BenchRow(
            "cfg", "kernel", p50_us=80.0, tflops=300.0, ratio_to_best_sdpa=1.25, max_error=1e-3
        ),
        BenchRow("sdpa:flash", "sdpa", p50_us=100.0, tflops=240.0, ratio_to_best_sdpa=1.0),
        BenchRow("sdpa:cudnn", "sdpa", error="RuntimeError: no kernel"),
    ]
    console = Console(width=200, record=True)
    console.print(render_bench_table(rows, title="t"))
    text = console.export_text()
    assert "1.25x" in text and "300.0" in text and "no kernel" in text
