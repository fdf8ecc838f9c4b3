"""Live progress of a search and its final table (rich)."""

from __future__ import annotations

import json
from collections import Counter
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from evotune.runner import SearchSummary
from evotune.storage import Study, Trial

__all__ = ["RichSearchObserver", "render_summary"]


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
        self._live = Live(self._render(), console=console, refresh_per_second=4, transient=False)

    def _render(self) -> Group:
        failures = (
            ", ".join(f"{k} {v}" for k, v in sorted(self._status.items()) if k != "ok") or "none"
        )
        best = f"{self._best:.2f} µs" if self._best is not None else "-"
        line = Text.assemble(
            ("best p50 ", "dim"),
            (best, "bold green"),
            ("   ok ", "dim"),
            str(self._status["ok"]),
            ("   failed: ", "dim"),
            failures,
        )
        return Group(self._progress, line, self._last)

    def __enter__(self) -> RichSearchObserver:
        self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._live.__exit__(exc_type, exc, tb)

    def started(self, study: Study, resumed: bool, done: int, budget: int) -> None:
        verb = "resuming" if resumed else "new"
        self._progress.update(
            self._task,
            total=budget,
            completed=done,
            description=f"study {study.id} ({verb}) {self._label}",
        )
        self._live.update(self._render())

    def trial_finished(self, trial: Trial, best_p50_us: float | None) -> None:
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
        self._live.update(self._render())

    def shootout_started(self, finalists: int) -> None:
        self._last = Text(f"re-measuring the top {finalists} interleaved ...", style="dim")
        self._live.update(self._render())


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
    return table
