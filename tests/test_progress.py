"""Progress: a live display on a terminal, a few plain lines when piped."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

from rich.console import Console

from evotune.progress import (
    LineSearchObserver,
    RichSearchObserver,
    progress_counter,
    search_observer,
)


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=120), out


def test_piped_progress_is_a_line_at_the_start_and_per_tenth() -> None:
    console, out = _console(terminal=False)
    with progress_counter(console, "runs", 40) as advance:
        for i in range(40):
            advance(f"run {i}")
    lines = out.getvalue().splitlines()
    assert lines[0] == "runs: 0/40"
    assert lines[1:] == [f"runs: {4 * k}/40 (run {4 * k - 1})" for k in range(1, 11)]


def test_terminal_progress_is_a_live_bar_not_lines() -> None:
    console, out = _console(terminal=True)
    with progress_counter(console, "runs", 40) as advance:
        for _ in range(40):
            advance()
    assert "runs: 4/40" not in out.getvalue() and "\x1b[" in out.getvalue()


def _trial(number: int, status: str, p50: float | None) -> Any:
    return SimpleNamespace(number=number, status=status, p50_us=p50, config={"BLOCK": 64})


def test_the_search_shows_lines_when_piped_and_nothing_before_it_starts() -> None:
    console, out = _console(terminal=False)
    observer = search_observer(console, "tiny")
    assert isinstance(observer, LineSearchObserver)
    with observer:
        assert out.getvalue() == ""  # an error before the study exists stays one line
        observer.started(SimpleNamespace(id=3), False, 0, 20)  # type: ignore[arg-type]
        for n in range(20):
            status = "ok" if n % 4 else "invalid"
            observer.trial_finished(_trial(n, status, 10.0 + n if n % 4 else None), 11.0)
        observer.shootout_started(3)
    lines = out.getvalue().splitlines()
    assert lines[0] == "study 3 (new) tiny: 0/20 trials done"
    assert lines[-2] == "tiny: 20/20 trials, ok 15, failed: invalid 5, best p50 11.00 µs"
    assert lines[-1] == "tiny: re-measuring the top 3 interleaved"
    assert len(lines) == 12


def test_the_search_is_live_on_a_terminal() -> None:
    console, out = _console(terminal=True)
    observer = search_observer(console, "tiny")
    assert isinstance(observer, RichSearchObserver)
    with observer:
        assert out.getvalue() == ""
        observer.started(SimpleNamespace(id=3), True, 2, 4)  # type: ignore[arg-type]
        observer.trial_finished(_trial(2, "ok", 12.5), 12.5)
    assert "study 3 (resuming) tiny" in out.getvalue() and "12.50 µs" in out.getvalue()
