"""The load benchmark end to end, CI-sized (the numbers are the benchmark's, not checked here
beyond "nothing hung": docs/results/service.md has the full runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evotune.api.loadtest import main, run_load


@pytest.mark.slow
def test_a_short_open_loop_run_on_best_completes_without_errors(tmp_path: Path) -> None:
    result = run_load(
        seconds=2.0, rate=100.0, connections=4, writer_rate=20.0, warmup=0.5, workdir=tmp_path
    )
    assert result.sent == 200
    assert result.completed == result.sent and result.errors == {}
    assert result.statuses == {"200": result.sent}
    assert result.writer["written"] > 10 and result.writer["errors"] == {}
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms
    assert result.failures == 0


@pytest.mark.slow
def test_many_clients_on_every_database_route_get_only_200_or_503(tmp_path: Path) -> None:
    """Issue 23's wedge, small: every database route at once while a writer stores trials.
    Only 200 and 503 come back, nothing times out, /healthz answers 200 throughout and
    after, and SIGTERM under load stops the server (within the 30 s before a kill)."""
    result = run_load(
        seconds=4.0,
        routes=["db"],
        concurrency=150,
        timeout_s=10.0,
        after=1.0,
        writer_rate=20.0,
        workdir=tmp_path,
    )
    assert result.errors == {}, result.errors  # no timeouts, no connection failures
    assert set(result.statuses) <= {"200", "503"} and result.statuses.get("200", 0) > 0
    assert result.health_during["n"] > 0 and set(result.health_during["statuses"]) == {"200"}
    assert result.health_after["n"] > 0 and set(result.health_after["statuses"]) == {"200"}
    assert result.shutdown_s is not None
    assert result.writer["written"] > 10 and result.writer["errors"] == {}
    assert result.failures == 0


def test_the_command_line_parses() -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0


def test_a_server_without_routes_to_load_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # With --url nothing is seeded, so the default route set ("best") is empty.
    assert main(["--url", "http://127.0.0.1:9", "--seconds", "0.1", "--writer-rate", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "error: no routes to load (with --url, give --route PATH)\n"
