"""Offline comparison of strategies on a recorded landscape: the real search, replayed.

Each (strategy, seed) run is `runner.run_search` with an in-memory store and the landscape's
replay evaluator (evotune/replay.py): the seeds, pipeline, stopping rules and lineage of
`evotune search --replay`, and no database. `compare` watches the trials as the runner
finishes them, records after how many evaluations the best found came within `target` of the
landscape's best p50, and stops the search once that is known (`_Tally`). This is what
`evotune compare` prints, and what the strategies' defaults are tuned on. Results come back
in the order asked, or, given a simulated pool (evotune/pool_model.py), in the order and at
the simulated times it would deliver them, which is what replaying the asynchronous pipeline
needs.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from rich.table import Table

from evotune.errors import UserError
from evotune.kerneltuner import (
    check_kernel_tuner_strategies,
    is_kernel_tuner_strategy,
    landscape_to_cache,
    run_kernel_tuner,
)
from evotune.landscape import Landscape
from evotune.landscape_runs import RunResult, check_start, default_max_evals, start_configs
from evotune.pool_model import PoolModel
from evotune.records import TrialStatus
from evotune.replay import NOT_IN_LANDSCAPE, ReplayEvaluator
from evotune.runner import SearchOptions, run_search
from evotune.search.registry import STRATEGIES
from evotune.space import SearchSpace
from evotune.storage.memory_store import MemoryTrialStore
from evotune.storage.trial_store import StudyRecord, TrialRecord, TrialStore

__all__ = [
    "OFF_LANDSCAPE_MISSES",
    "ComparisonReport",
    "StrategySummary",
    "check_comparison",
    "compare_strategies",
    "render_comparison",
    "run_on_landscape",
]


@dataclass(frozen=True)
class StrategySummary:
    """Per strategy, over seeds: evaluations to reach the target and best at each budget."""

    strategy: str
    runs: list[RunResult]
    median_evals: float  # runs that did not reach count as max_evals + 1
    q25_evals: float
    q75_evals: float
    not_reached: float  # share of runs that did not reach the target
    best_at_budget: dict[int, float | None]  # median over seeds of the best p50 found
    seconds: float
    # With a pool model: median simulated seconds to the target (None: no model, or the
    # median run did not reach it).
    median_simulated_s: float | None = None
    # Its defaults were tuned on this landscape (`Strategy.tuned_on`): no held-out result.
    tuned_here: bool = False

    def to_dict(self, space_size: int) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "tuned_here": self.tuned_here,
            "median_evals": self.median_evals,
            "q25_evals": self.q25_evals,
            "q75_evals": self.q75_evals,
            "median_share_of_space": self.median_evals / space_size if space_size else None,
            "not_reached": self.not_reached,
            "evals_to_target": [r.evals_to_target for r in self.runs],
            "best_at_budget": {str(b): v for b, v in self.best_at_budget.items()},
            "misses": sum(r.misses for r in self.runs),
            "seconds": round(self.seconds, 3),
            "median_simulated_s_to_target": self.median_simulated_s,
            "simulated_s_to_target": [r.simulated_s_to_target for r in self.runs],
            "ended": [r.ended for r in self.runs],
        }


@dataclass(frozen=True)
class ComparisonReport:
    """Everything `evotune compare` shows, for one landscape."""

    kernel: str
    shape: str
    space_size: int
    best_p50_us: float
    target: float
    within_target: int  # how many configs of the landscape reach the target
    budgets: tuple[int, ...]
    seeds: int
    max_evals: int
    summaries: list[StrategySummary] = field(default_factory=list)
    recorded: int | None = None  # configs the landscape records (None: all of the space)

    def summary(self, strategy: str) -> StrategySummary:
        for s in self.summaries:
            if s.strategy == strategy:
                return s
        raise KeyError(strategy)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "shape": self.shape,
            "space_size": self.space_size,
            "best_p50_us": self.best_p50_us,
            "target": self.target,
            "within_target": self.within_target,
            "budgets": list(self.budgets),
            "seeds": self.seeds,
            "max_evals": self.max_evals,
            "recorded": self.space_size if self.recorded is None else self.recorded,
            "strategies": [s.to_dict(self.space_size) for s in self.summaries],
        }


# A run ends after this many configs in a row that the landscape lacks: the strategy searches
# where nothing was recorded (a landscape of a short study), and would ask on for minutes
# while costing no evaluations. On a landscape that records even 10 % of its space at random,
# 200 misses in a row happen with odds of 1 in 10^9.
OFF_LANDSCAPE_MISSES = 200


class _Tally:
    """One run's evaluations as the runner finishes its trials (a `SearchObserver`), and
    compare's own reasons to end the run, which the runner asks through `should_stop`.

    An evaluation is a trial the landscape answered; a config it lacks (a miss) costs none
    unless `count_misses`. The runner checks `should_stop` before it asks a generation, so
    it may still collect trials in flight after the run ended: they are not counted, as
    the run had ended without them."""

    def __init__(
        self,
        landscape: Landscape,
        clock: ReplayEvaluator,
        threshold: float,
        limit: int,
        min_evals: int,
        count_misses: bool,
    ) -> None:
        self.recorded = len(landscape)
        self.clock = clock
        self.threshold = threshold
        self.limit = limit
        self.min_evals = min_evals
        self.count_misses = count_misses
        self.curve: list[float] = []
        self.reached: int | None = None
        self.reached_s: float | None = None
        self.misses = 0
        self.misses_in_a_row = 0
        self.told = 0  # configs of the landscape told
        self.ended: str | None = None

    def should_stop(self) -> bool:
        return self.ended is not None

    def trial_finished(self, trial: TrialRecord, best_p50_us: float | None) -> None:
        if self.ended is not None:
            return
        if trial.status == TrialStatus.INVALID.value and trial.error == NOT_IN_LANDSCAPE:
            self.misses += 1
            self.misses_in_a_row += 1
            counted = self.count_misses
        else:
            self.misses_in_a_row = 0
            self.told += 1
            counted = True
        if counted:
            self.curve.append(math.inf if best_p50_us is None else best_p50_us)
            if self.reached is None and self.curve[-1] <= self.threshold:
                self.reached, self.reached_s = len(self.curve), self.clock.now
        self.ended = self._end()

    def _end(self) -> str | None:
        evaluations = len(self.curve)
        if evaluations >= self.limit:
            return "max_evals"
        if self.reached is not None and evaluations >= self.min_evals:
            return "target"
        if self.told == self.recorded:
            return "exhausted"
        if self.misses_in_a_row >= OFF_LANDSCAPE_MISSES:
            return "off the landscape"
        return None

    # The rest of the observer protocol: nothing to watch.
    def started(self, study: StudyRecord, resumed: bool, done: int, budget: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def shootout_started(self, finalists: int) -> None:
        pass


def _budget(landscape: Landscape, limit: int, count_misses: bool) -> int:
    """The budget of a run's search: the cap on evaluations, as `evotune search --budget`
    takes it; and where a config the landscape lacks costs no evaluation, room for every
    such miss (a search asks each config once: at most the space's size)."""
    if count_misses or len(landscape) >= landscape.space_size:
        return limit
    return limit + landscape.space_size


def run_on_landscape(
    landscape: Landscape,
    space: SearchSpace,
    strategy: str,
    seed: int,
    target: float = 0.02,
    max_evals: int | None = None,
    min_evals: int = 0,
    settings: Mapping[str, Any] | None = None,
    start: str = "default",
    count_misses: bool = False,
    pipeline_depth: int = 1,
    pool: PoolModel | None = None,
    store: TrialStore | None = None,
) -> RunResult:
    """Run one strategy's search on a landscape until it reaches the target and has made at
    least `min_evals` evaluations, or until `max_evals`, exhaustion or its own stop. The
    search is `run_search` on the landscape's replay (`pool`: on a simulated pool, needed
    for the asynchronous pipeline, depth 0), into `store` (default: a new memory store)."""
    best_p50 = landscape.best_p50_us
    if best_p50 is None:
        raise UserError("the landscape has no ok trial: nothing to compare against")
    if pipeline_depth == 0 and pool is None:
        raise UserError("an asynchronous replay (depth 0) needs a pool model for arrival order")
    check_start(start)
    limit = max_evals if max_evals is not None else default_max_evals(landscape.space_size)
    evaluator = ReplayEvaluator(landscape, pool)
    tally = _Tally(landscape, evaluator, best_p50 * (1.0 + target), limit, min_evals, count_misses)
    # "default" is the search's own start: `seed_configs`, with no tuned neighbours in a new
    # store.
    first = None if start == "default" else start_configs(start, space, landscape.shape.dims, seed)
    options = SearchOptions(
        strategy=strategy,
        budget=_budget(landscape, limit, count_misses),
        seed=seed,
        fresh=True,
        replay=f"compare on {landscape.kernel} {landscape.shape.label()}",
        settings=dict(settings or {}),
        start=first,
        pipeline_depth=pipeline_depth,
    )
    started = time.perf_counter()
    summary = run_search(
        store or MemoryTrialStore(),
        space,
        landscape.shape,
        evaluator,
        options,
        observer=tally,
        should_stop=tally.should_stop,
    )
    ended = tally.ended
    if ended is None:  # the search ended by itself: its budget, or its strategy's stop
        ended = "max_evals" if summary.total_trials >= options.budget else "strategy"
    return RunResult(
        strategy=strategy,
        seed=seed,
        evaluations=len(tally.curve),
        evals_to_target=tally.reached,
        best_curve=tally.curve,
        misses=tally.misses,
        seconds=time.perf_counter() - started,
        simulated_s_to_target=tally.reached_s if pool is not None else None,
        ended=ended,
    )


def check_comparison(
    landscape: Landscape,
    strategies: Sequence[str],
    seeds: int,
    start: str = "default",
    pipeline_depth: int = 1,
    pool: PoolModel | None = None,
) -> float:
    """Refuse (UserError) what cannot be compared; returns the landscape's best p50."""
    unknown = [s for s in strategies if s not in STRATEGIES and not is_kernel_tuner_strategy(s)]
    if unknown or not strategies:
        known = ", ".join(sorted(STRATEGIES))
        raise UserError(
            f"unknown strategies {', '.join(unknown) or '(none)'}; known: {known}, and "
            "Kernel Tuner's as kt:NAME (evotune compare --help)"
        )
    check_kernel_tuner_strategies(strategies, pipeline_depth, pool)
    if seeds < 1:
        raise UserError("--seeds must be at least 1")
    check_start(start)
    best_p50 = landscape.best_p50_us
    if best_p50 is None:
        raise UserError("the landscape has no ok trial: nothing to compare against")
    return best_p50


def compare_strategies(
    landscape: Landscape,
    space: SearchSpace,
    strategies: Sequence[str],
    seeds: int,
    target: float = 0.02,
    budgets: Sequence[int] = (10, 25, 50, 100),
    max_evals: int | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    start: str = "default",
    count_misses: bool = False,
    pipeline_depth: int = 1,
    pool: PoolModel | None = None,
    on_run: Callable[[RunResult], None] | None = None,
) -> ComparisonReport:
    """Run each strategy with seeds 0..seeds-1 on the landscape and summarize.

    `max_evals` caps a run (default: `default_max_evals`, 15 % of the space, the bound of
    the benchmark's target); a run that does not reach the target counts as max_evals + 1
    in the median and IQR, and in `not_reached`. `settings` maps a strategy name to
    settings overriding its defaults; `start` says what each run starts from
    (`start_configs`: by default the space's default config). Configs the landscape lacks are told as
    invalid and, unless `count_misses`, cost no evaluation (so a partial landscape compares
    strategies on the configs it has). `pipeline_depth` as the runner's (1: synchronous;
    2: each generation is bred from results one generation older; 0: asynchronous, which
    needs `pool`, the simulated pool whose arrival order and clock the runs follow).
    `on_run` hears of each (strategy, seed) run as it ends (the CLI's progress).
    Kernel Tuner's strategies (`kt:NAME`) run in its simulation mode on the landscape as its
    cache file (evotune/kerneltuner.py), synchronously.
    """
    best_p50 = check_comparison(landscape, strategies, seeds, start, pipeline_depth, pool)
    budget_list = tuple(sorted({int(b) for b in budgets if int(b) > 0}))
    limit = (
        max_evals
        if max_evals is not None
        else max(default_max_evals(landscape.space_size), max(budget_list, default=0))
    )
    # Kernel Tuner's strategies (kt:NAME) replay on the landscape as its cache file.
    kt_cache = (
        landscape_to_cache(landscape, space, count_misses)
        if any(map(is_kernel_tuner_strategy, strategies))
        else None
    )
    summaries: list[StrategySummary] = []
    for name in strategies:
        runs = []
        for seed in range(seeds):
            replay: Callable[..., RunResult] = run_on_landscape
            if kt_cache is not None and is_kernel_tuner_strategy(name):
                replay = partial(run_kernel_tuner, cache=kt_cache)
            run = replay(
                landscape,
                space,
                name,
                seed,
                target=target,
                max_evals=limit,
                min_evals=max(budget_list, default=0),
                settings=(settings or {}).get(name),
                start=start,
                count_misses=count_misses,
                pipeline_depth=pipeline_depth,
                pool=pool,
            )
            runs.append(run)
            if on_run is not None:
                on_run(run)
        tuned_here = name in STRATEGIES and STRATEGIES[name].was_tuned_on(landscape.content_sha256)
        summaries.append(_summarize(name, runs, limit, budget_list, tuned_here))
    return ComparisonReport(
        kernel=landscape.kernel,
        shape=landscape.shape.label(),
        space_size=landscape.space_size,
        best_p50_us=best_p50,
        target=target,
        within_target=len(landscape.within(target)),
        budgets=budget_list,
        seeds=seeds,
        max_evals=limit,
        summaries=summaries,
        recorded=len(landscape),
    )


def _summarize(
    name: str, runs: list[RunResult], limit: int, budgets: tuple[int, ...], tuned_here: bool
) -> StrategySummary:
    evals = np.array(
        [r.evals_to_target if r.evals_to_target is not None else limit + 1 for r in runs],
        dtype=float,
    )
    best_at: dict[int, float | None] = {}
    for budget in budgets:
        found = [r.best_at(budget) for r in runs]
        # A run with nothing ok by then counts as infinitely slow in the median.
        values = np.array([math.inf if v is None else v for v in found], dtype=float)
        median = float(np.median(values))
        best_at[budget] = None if math.isinf(median) else median
    simulated = [r.simulated_s_to_target for r in runs]
    median_s: float | None = None
    if any(v is not None for v in simulated):
        median = float(np.median([math.inf if v is None else v for v in simulated]))
        median_s = None if math.isinf(median) else median
    return StrategySummary(
        strategy=name,
        runs=runs,
        median_simulated_s=median_s,
        median_evals=float(np.median(evals)),
        q25_evals=float(np.percentile(evals, 25)),
        q75_evals=float(np.percentile(evals, 75)),
        not_reached=float(np.mean([r.evals_to_target is None for r in runs])),
        best_at_budget=best_at,
        seconds=sum(r.seconds for r in runs),
        tuned_here=tuned_here,
    )


def render_comparison(report: ComparisonReport) -> Table:
    """The comparison as a rich table: one row per strategy."""
    recorded = report.space_size if report.recorded is None else report.recorded
    coverage = f" ({recorded} recorded)" if recorded < report.space_size else ""
    title = (
        f"{report.kernel} {report.shape}: {report.space_size} configs{coverage}, best p50 "
        f"{report.best_p50_us:.2f} us, {report.within_target} within {report.target:.0%}; "
        f"{report.seeds} seeds, at most {report.max_evals} evaluations"
    )
    table = Table(title=title)
    table.add_column("strategy")
    table.add_column(f"evals to {report.target * 100:g}% (median)", justify="right")
    table.add_column("IQR", justify="right")
    table.add_column("% of space", justify="right")
    table.add_column("not reached", justify="right")
    for budget in report.budgets:
        table.add_column(f"best @{budget}", justify="right")
    random_median = next((s.median_evals for s in report.summaries if s.strategy == "random"), None)
    if random_median is not None:
        table.add_column("vs random", justify="right")
    any_misses = any(r.misses for s in report.summaries for r in s.runs)
    if any_misses:
        table.add_column("not in landscape", justify="right")
    simulated = any(r.simulated_s_to_target is not None for s in report.summaries for r in s.runs)
    if simulated:
        table.add_column("simulated s to target (median)", justify="right")
    for s in report.summaries:
        over = s.median_evals > report.max_evals
        median = f">{report.max_evals}" if over else f"{s.median_evals:g}"
        row = [
            f"{s.strategy} (tuned here)" if s.tuned_here else s.strategy,
            median,
            f"{s.q25_evals:g}-{s.q75_evals:g}",
            f"{100 * s.median_evals / report.space_size:.1f}%" if not over else "-",
            f"{s.not_reached:.0%}",
        ]
        for budget in report.budgets:
            value = s.best_at_budget.get(budget)
            if value is None:
                row.append("-")
            else:
                row.append(f"{value:.2f} (+{100 * (value / report.best_p50_us - 1):.1f}%)")
        if random_median is not None:
            if over:
                row.append("-")
            else:
                # Random's median past the cap is a lower bound, and so is the ratio.
                bound = ">=" if random_median > report.max_evals else ""
                row.append(f"{bound}{random_median / s.median_evals:.2f}x")
        if any_misses:
            row.append(str(sum(r.misses for r in s.runs)))
        if simulated:
            row.append("-" if s.median_simulated_s is None else f"{s.median_simulated_s:.1f}")
        table.add_row(*row)
    notes = []
    early = Counter(r.ended for s in report.summaries for r in s.runs if r.ended in _EARLY_ENDS)
    if early:
        notes.append(
            "runs that ended early: "
            + ", ".join(f"{n} {_EARLY_ENDS[reason]}" for reason, n in sorted(early.items()))
        )
    if any(s.tuned_here for s in report.summaries):
        notes.append(
            "tuned here: the strategy's defaults were chosen on this landscape (its tuning "
            "subset), so its row is no evidence of how it does on others"
        )
    if notes:
        table.caption = "\n".join(notes)
    return table


_EARLY_ENDS = {
    "exhausted": "told every config the landscape records",
    "off the landscape": f"asked {OFF_LANDSCAPE_MISSES} unrecorded configs in a row",
    "strategy": "were stopped by their strategy (nothing new to ask, or no improvement)",
}
