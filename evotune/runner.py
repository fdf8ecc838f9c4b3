"""One search, end to end: study, ask, store as running, evaluate, store, tell; then the
finalists' shoot-out and the published best. The CLI and the API call `run_search`.

Storage is reached only through a `TrialStore` (evotune/storage/trial_store.py): the SQL
store for a database, the memory store for a search that leaves no trace. What the search starts
from is evotune/seeds.py's; the shoot-out and publishing are evotune/shootout.py's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from evotune.errors import UserError
from evotune.records import Config, TrialRequest, TrialStatus, config_hash
from evotune.search import Candidate, Observation, Strategy, make_strategy
from evotune.search.grid import space_index, valid_configs
from evotune.search.pipeline import AsyncPipeline, GenerationPipeline
from evotune.search.registry import default_settings
from evotune.seeds import seed_configs
from evotune.shootout import fastest, shootout_and_publish
from evotune.space import SearchSpace, Shape
from evotune.storage.trial_store import (
    NewTrial,
    StudyRecord,
    StudySpec,
    TrialRecord,
    TrialStore,
)
from evotune.worker.evaluator import Evaluator

__all__ = [
    "SearchObserver",
    "SearchOptions",
    "SearchSummary",
    "run_search",
    "trial_seed",
]


@dataclass
class SearchOptions:
    """What the user asked for; the study stores it so a rerun can resume it."""

    strategy: str = "evolution"
    budget: int = 120
    seed: int | None = None  # None: 0 for a new study; a resumed one keeps its own
    fresh: bool = False
    replay: str | None = None
    restrict: str | None = None  # an extra constraint: search only this sub-space
    time_limit_s: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    # The configs the strategy starts from; None: `seed_configs` (the space's default and
    # seeds, and the bests of nearby tuned shapes). `evotune compare --start` sets it.
    start: list[Config] | None = None
    finalists: int = 3
    shootout_rounds: int = 5
    # Generations in flight at once (evotune/search/pipeline.py): 1 is the synchronous
    # loop; 2 queues the next generation while one runs (more trials/min, but each
    # generation is bred from older results: measured a net loss on one GPU); 0 is
    # asynchronous (results told as they come; not repeatable). None: synchronous on one
    # GPU, asynchronous on several (a generation barrier leaves the second GPU idle:
    # docs/lab/benchmarks.md, issue 8).
    pipeline_depth: int | None = None
    # Run timeout (correctness gate + timing): this many times the best p50 so far, floored.
    timeout_factor: float = 50_000.0
    timeout_floor_s: float = 30.0


@dataclass
class SearchSummary:
    study_id: int
    resumed: bool
    trials_run: int
    total_trials: int
    status_counts: dict[str, int]
    best_config: Config | None
    best_p50_us: float | None
    best_shootout_p50_us: float | None
    best_tflops: float | None
    default_p50_us: float | None
    rerun_trials: int  # left in flight by an earlier, stopped run; measured again by this one
    state: str
    # Whether the served best of this shape and environment is this study's: a replay, an
    # interrupted search, all-wrong finalists or a faster best of another study say no.
    published: bool = False
    # The whole run: warm-up, measuring phase, shoot-out (not the evaluator's start).
    wall_s: float = 0.0
    # The measuring phase: from the first ask to the last trial's result.
    search_s: float = 0.0
    worker_busy_s: float = 0.0

    @property
    def trials_per_min(self) -> float | None:
        """Trials finished per minute of the measuring phase; the shoot-out that follows it
        is a fixed cost per search, not trial throughput, so it is left out (`wall_s` has it)."""
        if self.search_s <= 0 or not self.trials_run:
            return None
        return self.trials_run / self.search_s * 60

    @property
    def worker_busy_share(self) -> float | None:
        """Busy seconds of the workers (compiling and running trials, summed over them) per
        second of the measuring phase."""
        if self.search_s <= 0 or not self.trials_run:
            return None
        return self.worker_busy_s / self.search_s

    @property
    def speedup_over_default(self) -> float | None:
        best = self.best_shootout_p50_us or self.best_p50_us
        if best and self.default_p50_us:
            return self.default_p50_us / best
        return None

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["speedup_over_default"] = self.speedup_over_default
        data["trials_per_min"] = self.trials_per_min
        data["worker_busy_share"] = self.worker_busy_share
        return data


class SearchObserver(Protocol):
    """Progress hooks (the CLI shows them with rich); all optional to act on."""

    def started(self, study: StudyRecord, resumed: bool, done: int, budget: int) -> None: ...
    def note(self, text: str) -> None: ...
    def trial_finished(self, trial: TrialRecord, best_p50_us: float | None) -> None: ...
    def shootout_started(self, finalists: int) -> None: ...


class _SilentObserver:
    def started(self, study: StudyRecord, resumed: bool, done: int, budget: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def trial_finished(self, trial: TrialRecord, best_p50_us: float | None) -> None:
        pass

    def shootout_started(self, finalists: int) -> None:
        pass


def _kept_on_resume(study: StudyRecord, options: SearchOptions) -> str | None:
    """What a resumed study keeps although this run asked otherwise (its seed and strategy
    settings decide the trials it already ran), said as one line; None if nothing differs."""
    asked = {"seed": options.seed, **options.settings}
    kept = {"seed": study.seed, **study.settings}
    differ = [
        f"{name} {kept.get(name)!r} (asked {value!r})"
        for name, value in asked.items()
        if value is not None and kept.get(name) != value
    ]
    if not differ:
        return None
    return (
        f"study {study.id} resumed with its own "
        + ", ".join(differ)
        + "; --fresh starts a new study"
    )


def trial_seed(study_seed: int, number: int) -> int:
    """Inputs of trial `number` are drawn from this seed (stored with the trial)."""
    return (study_seed * 1_000_003 + number * 7919) % (2**31 - 1)


def _observation(trial: TrialRecord) -> Observation:
    return Observation(
        config=dict(trial.config),
        status=TrialStatus(trial.status),
        p50_us=trial.p50_us,
        generation=trial.generation,
        parents=tuple(trial.parents),
        operator=trial.operator,
    )


def run_search(
    store: TrialStore,
    space: SearchSpace,
    shape: Shape,
    evaluator: Evaluator,
    options: SearchOptions,
    observer: SearchObserver | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> SearchSummary:
    """Run (or resume) one study until its budget, time limit or the strategy's stop."""
    observer = observer or _SilentObserver()
    environment = evaluator.environment()
    interpreted = bool(environment.get("interpreted"))
    space = space.searched(options.restrict, interpreted)
    _require_a_valid_config(space, shape, options.restrict, interpreted)
    tolerance = space.tolerance(shape.dims).model_dump()

    spec = StudySpec(
        kernel=space.kernel,
        shape=shape,
        environment=environment,
        strategy=options.strategy,
        settings={**default_settings(options.strategy), **options.settings},
        seed=options.seed or 0,
        budget=options.budget,
        replay=options.replay,
        restrict=options.restrict,
    )
    opened = store.open_study(spec, fresh=options.fresh)
    study = opened.study
    history = store.trials(study.id)
    seeds = options.start
    if seeds is None:
        seeds = seed_configs(space, shape, store.bests_of_kernel(space.kernel, study.fingerprint))
    observer.started(study, opened.resumed, len(history), options.budget)
    if opened.resumed and (kept := _kept_on_resume(study, options)):
        observer.note(kept)
    best_p50 = min((t.p50_us for t in history if t.p50_us is not None), default=None)
    rerun_requests = [
        _request(space, shape, t, tolerance, _run_timeout(best_p50, options)) for t in opened.rerun
    ]

    with store.keep_alive(study.id):  # "running" means alive while the search runs
        try:
            run_started = time.monotonic()
            _warm_up(evaluator, space, shape, study.seed, tolerance, options)
            started_at = time.monotonic()
            trials_run = 0
            busy_s = 0.0
            flops: float | None = None  # of the shape, as the workers' results report it

            def counted(trial: TrialRecord) -> None:
                nonlocal trials_run, busy_s, best_p50
                trials_run += 1
                busy_s += (trial.compile_s or 0.0) + (trial.run_s or 0.0)
                if trial.p50_us is not None and (best_p50 is None or trial.p50_us < best_p50):
                    best_p50 = trial.p50_us
                observer.trial_finished(trial, best_p50)

            # `restrict` describes the study's sub-space (already applied to `space`), not the
            # strategy.
            strategy_settings = {k: v for k, v in study.settings.items() if k != "restrict"}
            strategy = make_strategy(
                options.strategy, space, shape.dims, study.seed, strategy_settings, seeds
            )
            pipeline = _pipeline(strategy, evaluator, options.pipeline_depth)
            measured = {t.config_hash for t in history}
            number = len(history)
            batch_size = strategy.generation_size
            state = "running"

            def stop_reason() -> str | None:
                if number >= options.budget:
                    return "finished"
                if (
                    options.time_limit_s is not None
                    and time.monotonic() - started_at > options.time_limit_s
                ):
                    return "finished"
                if strategy.should_stop():
                    return "finished"
                if should_stop():
                    return "interrupted"
                return None

            def finished(trial: TrialRecord) -> None:
                counted(trial)
                measured.add(trial.config_hash)
                pipeline.tell(_observation(trial))

            def ask_ahead() -> None:
                """Open generations until the pipeline is full, a stop applies or nothing is new."""
                nonlocal number, state
                while state == "running" and pipeline.advance():
                    reason = stop_reason()
                    if reason is not None:
                        state = reason
                        return
                    candidates = pipeline.ask(
                        min(batch_size, options.budget - number), skip=measured
                    )
                    if not candidates:
                        state = "finished"
                        return
                    requests, invalid = _store_batch(
                        store, study, space, shape, candidates, number, tolerance, best_p50, options
                    )
                    number += len(candidates)
                    evaluator.submit(requests)
                    for trial in invalid:
                        finished(trial)

            # Trials an earlier, stopped run left in flight are measured first, as they were
            # asked; then the strategy learns the whole history.
            for result in evaluator.evaluate(rerun_requests) if rerun_requests else ():
                flops = result.flops or flops
                counted(store.finish_trial(result))
            if rerun_requests:
                history = store.trials(study.id)
            strategy.restore([_observation(t) for t in history])
            ask_ahead()
            while pipeline.outstanding:
                for result in evaluator.collect():
                    flops = result.flops or flops
                    finished(store.finish_trial(result))
                ask_ahead()
            search_s = time.monotonic() - started_at

            if state == "finished" and (
                trials_run > 0 or store.study(study.id).best_trial_id is None
            ):
                if options.replay is not None:
                    # A replay is a simulation: it picks its best, never publishes it as measured.
                    best = fastest(store.trials(study.id, TrialStatus.OK.value))
                    if best is not None:
                        store.set_winner(study.id, best.id)
                else:
                    observer.shootout_started(options.finalists)
                    flops = shootout_and_publish(
                        store,
                        study,
                        space,
                        shape,
                        evaluator,
                        options.finalists,
                        options.shootout_rounds,
                        tolerance,
                        flops,
                    )
            store.end_study(study.id, state)
        except KeyboardInterrupt:  # Ctrl-C, or SIGINT from the service stopping its search
            store.end_study(study.id, "interrupted")
            raise
    summary = summarize(
        store, study.id, space, opened.resumed, trials_run, len(rerun_requests), flops
    )
    summary.wall_s = time.monotonic() - run_started
    summary.search_s = search_s
    summary.worker_busy_s = busy_s
    return summary


def _require_a_valid_config(
    space: SearchSpace, shape: Shape, restrict: str | None, interpreted: bool
) -> None:
    """Refuse, before any study exists, a search with nothing to try (a `--restrict` that
    no config meets, or a shape the interpreter cannot run)."""
    if valid_configs(space, shape.dims):
        return
    where = " in the interpreter" if interpreted else ""
    if restrict:
        where += f" with --restrict {restrict!r}"
    why = space.violations(space.default_config(), shape.dims)
    raise UserError(
        f"no config of kernel {space.kernel!r} is valid for shape {shape.label()!r}{where}"
        + (f"; the default config {why[-1]}" if why else "")
    )


def _pipeline(
    strategy: Strategy, evaluator: Evaluator, depth: int | None
) -> GenerationPipeline | AsyncPipeline:
    """The pipeline of `depth` (None: asynchronous where the evaluator measures on several
    workers at once). Asynchronous pipelines keep as many trials in flight as the evaluator
    can work on at once (its `capacity`: GPU workers plus compile processes)."""
    if depth is None:
        depth = 0 if evaluator.workers > 1 else 1
    if depth == 0:
        return AsyncPipeline(strategy, window=evaluator.capacity)
    return GenerationPipeline(strategy, depth=depth)


def _warm_up(
    evaluator: Evaluator,
    space: SearchSpace,
    shape: Shape,
    seed: int,
    tolerance: dict[str, float],
    options: SearchOptions,
) -> None:
    """Let the evaluator put the default config through each of its processes before the
    clock starts. Nothing is stored: the search measures the default config as a trial like
    any other."""
    config = space.default_config()
    if space.violations(config, shape.dims):
        return
    evaluator.warm_up(
        TrialRequest(
            trial_id=-1,
            kernel=space.kernel,
            dims=dict(shape.dims),
            config=dict(config),
            seed=seed,
            tolerance=tolerance,
            timeout_s=options.timeout_floor_s,
            min_runs=1,
            max_runs=1,
        )
    )


def _store_batch(
    store: TrialStore,
    study: StudyRecord,
    space: SearchSpace,
    shape: Shape,
    candidates: Sequence[Candidate],
    first_number: int,
    tolerance: dict[str, float],
    best_p50: float | None,
    options: SearchOptions,
) -> tuple[list[TrialRequest], list[TrialRecord]]:
    """Store a generation: as running, or as invalid where a constraint already rules it
    out (never compiled). Returns the requests to measure and the invalid trials."""
    new = []
    index = space_index(space, shape.dims)
    for offset, cand in enumerate(candidates):
        number = first_number + offset
        # The index's set lookup first: evaluating the constraints for their reasons is most
        # of a replayed trial's cost (`evotune compare` replays thousands of searches).
        problems = [] if index.is_valid(cand.config) else space.violations(cand.config, shape.dims)
        new.append(
            NewTrial(
                number=number,
                config=cand.config,
                config_hash=cand.config_hash,
                seed=trial_seed(study.seed, number),
                generation=cand.generation,
                parents=tuple(cand.parents),
                operator=cand.operator,
                refused="; ".join(problems) if problems else None,
            )
        )
    stored = store.add_trials(study.id, new)
    timeout = _run_timeout(best_p50, options)
    running = TrialStatus.RUNNING.value
    requests = [
        _request(space, shape, t, tolerance, timeout) for t in stored if t.status == running
    ]
    return requests, [t for t in stored if t.status != running]


def _run_timeout(best_p50: float | None, options: SearchOptions) -> float:
    """Seconds a trial may run (gate and timing): a multiple of the best p50 so far."""
    if best_p50 is None:
        return options.timeout_floor_s
    return max(options.timeout_floor_s, best_p50 * 1e-6 * options.timeout_factor)


def _request(
    space: SearchSpace,
    shape: Shape,
    trial: TrialRecord,
    tolerance: dict[str, float],
    timeout: float,
) -> TrialRequest:
    return TrialRequest(
        trial_id=trial.id,
        kernel=space.kernel,
        dims=dict(shape.dims),
        config=dict(trial.config),
        seed=trial.seed,
        tolerance=tolerance,
        timeout_s=timeout,
    )


def summarize(
    store: TrialStore,
    study_id: int,
    space: SearchSpace,
    resumed: bool = False,
    trials_run: int = 0,
    rerun: int = 0,
    flops: float | None = None,
) -> SearchSummary:
    """A study's outcome: counts, best, speedup over the space's default config, and TFLOPS
    where the shape's `flops` is known (the workers report it; a replay's evaluator cannot)."""
    default_hash = config_hash(space.default_config())
    study = store.study(study_id)
    trials = store.trials(study_id)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    by_id = {t.id: t for t in trials}
    best = by_id.get(study.best_trial_id) if study.best_trial_id is not None else None
    if best is None:
        best = fastest([t for t in trials if t.p50_us is not None])
    default = next((t for t in trials if t.config_hash == default_hash), None)
    best_p50 = best.shootout_p50_us or best.p50_us if best else None
    served = store.best(study.kernel, study.shape_key, study.fingerprint)
    return SearchSummary(
        study_id=study.id,
        resumed=resumed,
        trials_run=trials_run,
        total_trials=len(trials),
        status_counts=counts,
        best_config=dict(best.config) if best else None,
        best_p50_us=best.p50_us if best else None,
        best_shootout_p50_us=best.shootout_p50_us if best else None,
        best_tflops=flops / (best_p50 * 1e-6) / 1e12 if best_p50 and flops else None,
        default_p50_us=(default.shootout_p50_us or default.p50_us) if default else None,
        rerun_trials=rerun,
        state=study.state,
        published=served is not None and served.study_id == study.id,
    )
