"""The load benchmark runs end to end (a short, slow-rate run: the numbers are not checked)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evotune.api.loadtest import main, run_load


@pytest.mark.slow
def test_a_short_run_completes_without_errors(tmp_path: Path) -> None:
    result = run_load(
        seconds=2.0, rate=100.0, connections=4, writer_rate=20.0, warmup=0.5, workdir=tmp_path
    )
    assert result.sent == 200
    assert result.completed == result.sent and result.errors == {}
    assert result.statuses == {"200": result.sent}
    assert result.writer["written"] > 10 and result.writer["errors"] == {}
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms


def test_the_command_line_parses() -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
