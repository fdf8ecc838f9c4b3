"""Progress of long commands and the search's final table.

On a terminal, progress is a live rich display; piped or redirected, it is a few plain lines
(one at the start and one per tenth of the work), so that logs stay short and greppable.
Nothing is shown before the work has started, so an error before it stays one line.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from evotune.runner import SearchSummary
from evotune.storage.trial_store import StudyRecord, TrialRecord

__all__ = [
    "LineSearchObserver",
    "ProgressCounter",
    "RichSearchObserver",
    "progress_counter",
    "render_summary",
    "search_observer",
]


class _SteppedLines:
    """Decides when a piped progress report prints: at the start and at each tenth."""

    def __init__(self, total: int | None, done: int = 0) -> None:
        self.total = total
        self._last_tenth = self._tenth(done)

    def _tenth(self, done: int) -> int:
        return done * 10 // self.total if self.total else 0

    def due(self, done: int) -> bool:
        tenth = self._tenth(done)
        if tenth > self._last_tenth:
            self._last_tenth = tenth
            return True
        return False


def _failures(status: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(status.items()) if k != "ok") or "none"


def _best(best: float | None) -> str:
    return f"{best:.2f} µs" if best is not None else "-"


class RichSearchObserver:
    """Shows trials done, failures by status and the best p50 so far, live."""

    def __init__(self, console: Console, shape_label: str) -> None:
        self._console = console
        self._label = shape_label
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = self._progress.add_task(f"search {shape_label}", total=None)
        self._status: Counter[str] = Counter()
        self._best: float | None = None
        self._last = Text("")
        self._live: Live | None = None

    def _render(self) -> Group:
        line = Text.assemble(
            ("best p50 ", "dim"),
            (_best(self._best), "bold green"),
            ("   ok ", "dim"),
            str(self._status["ok"]),
            ("   failed: ", "dim"),
            _failures(self._status),
        )
        return Group(self._progress, line, self._last)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def __enter__(self) -> RichSearchObserver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)

    def started(self, study: StudyRecord, resumed: bool, done: int, budget: int) -> None:
        verb = "resuming" if resumed else "new"
        self._progress.update(
            self._task,
            total=budget,
            completed=done,
            description=f"study {study.id} ({verb}) {self._label}",
        )
        self._live = Live(
            self._render(), console=self._console, refresh_per_second=4, transient=False
        )
        self._live.__enter__()

    def note(self, text: str) -> None:
        self._console.print(f"[yellow]note:[/] {text}", highlight=False)

    def trial_finished(self, trial: TrialRecord, best_p50_us: float | None) -> None:
        self._status[trial.status] += 1
        self._best = best_p50_us
        p50 = f"{trial.p50_us:.2f} µs" if trial.p50_us is not None else trial.status
        self._last = Text(
            f"trial {trial.number}: {p50}  {json.dumps(trial.config)}",
            style="dim",
            overflow="ellipsis",
            no_wrap=True,
        )
        self._progress.advance(self._task)
        self._refresh()

    def shootout_started(self, finalists: int) -> None:
        self._last = Text(f"re-measuring the top {finalists} interleaved ...", style="dim")
        self._refresh()


class LineSearchObserver:
    """The search's progress as plain lines: its start, each tenth of the budget, the
    shoot-out. For logs and pipes, where a live display would be noise."""

    def __init__(self, console: Console, shape_label: str) -> None:
        self._console = console
        self._label = shape_label
        self._status: Counter[str] = Counter()
        self._done = 0
        self._budget = 0
        self._steps = _SteppedLines(None)

    def __enter__(self) -> LineSearchObserver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass

    def _line(self, text: str) -> None:
        self._console.print(text, highlight=False, soft_wrap=True, markup=False)

    def started(self, study: StudyRecord, resumed: bool, done: int, budget: int) -> None:
        self._done, self._budget = done, budget
        self._steps = _SteppedLines(budget, done)
        verb = "resuming" if resumed else "new"
        self._line(f"study {study.id} ({verb}) {self._label}: {done}/{budget} trials done")

    def note(self, text: str) -> None:
        self._line(f"note: {text}")

    def trial_finished(self, trial: TrialRecord, best_p50_us: float | None) -> None:
        self._status[trial.status] += 1
        self._done += 1
        if self._steps.due(self._done):
            self._line(
                f"{self._label}: {self._done}/{self._budget} trials, ok {self._status['ok']}, "
                f"failed: {_failures(self._status)}, best p50 {_best(best_p50_us)}"
            )

    def shootout_started(self, finalists: int) -> None:
        self._line(f"{self._label}: re-measuring the top {finalists} interleaved")


class SearchProgress(Protocol):
    def __enter__(self) -> SearchProgress: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def started(self, study: StudyRecord, resumed: bool, done: int, budget: int) -> None: ...
    def note(self, text: str) -> None: ...
    def trial_finished(self, trial: TrialRecord, best_p50_us: float | None) -> None: ...
    def shootout_started(self, finalists: int) -> None: ...


def search_observer(console: Console, shape_label: str) -> SearchProgress:
    """A live display on a terminal, plain lines otherwise."""
    if console.is_terminal:
        return RichSearchObserver(console, shape_label)
    return LineSearchObserver(console, shape_label)


class ProgressCounter(Protocol):
    def __call__(self, note: str = "") -> None:
        """One more unit of work done; `note` says which."""


@contextmanager
def progress_counter(console: Console, description: str, total: int) -> Iterator[ProgressCounter]:
    """Count `total` units of work: a rich bar on a terminal, a line per tenth when piped."""
    if console.is_terminal:
        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[note]}", style="dim"),
            console=console,
            transient=True,
        )
        task = bar.add_task(description, total=total, note="")
        with bar:
            yield lambda note="": bar.update(task, advance=1, note=note)
        return
    steps = _SteppedLines(total)
    done = 0

    def advance(note: str = "") -> None:
        nonlocal done
        done += 1
        if steps.due(done):
            tail = f" ({note})" if note else ""
            console.print(
                f"{description}: {done}/{total}{tail}",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )

    console.print(f"{description}: 0/{total}", highlight=False, soft_wrap=True, markup=False)
    yield advance


def render_summary(summary: SearchSummary) -> Table:
    """The final table: best config, its p50, speedup over the space's default config."""
    table = Table(title=f"study {summary.study_id}: {summary.state}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("trials", f"{summary.total_trials} ({summary.trials_run} this run)")
    table.add_row(
        "outcomes", ", ".join(f"{k} {v}" for k, v in sorted(summary.status_counts.items()))
    )
    if summary.rerun_trials:
        table.add_row("re-run", f"{summary.rerun_trials} trial(s) an earlier stop left in flight")
    if summary.best_config is None:
        table.add_row("best", "no trial succeeded")
        return table
    table.add_row("best config", json.dumps(summary.best_config))
    table.add_row(
        "best p50 (search)", f"{summary.best_p50_us:.2f} µs" if summary.best_p50_us else "-"
    )
    if summary.best_shootout_p50_us:
        table.add_row("best p50 (shoot-out)", f"{summary.best_shootout_p50_us:.2f} µs")
    if summary.best_tflops:
        table.add_row("TFLOPS", f"{summary.best_tflops:.2f}")
    speedup = summary.speedup_over_default
    table.add_row("speedup over default", f"{speedup:.3f}×" if speedup else "default not measured")
    table.add_row("published", "yes" if summary.published else "no (`evotune best` serves what is)")
    return table
