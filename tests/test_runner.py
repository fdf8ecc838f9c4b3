"""The runner over a replayed landscape: storage, dedup, resume, invalid handling, no publish.

The search runs through the `TrialStore` protocol; each test runs it on the in-memory store
and on SQLite (the store contract itself, PostgreSQL included, is tests/storage/).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from evotune.landscape import Landscape
from evotune.records import TrialResult, TrialStatus, config_hash
from evotune.replay import ReplayEvaluator
from evotune.runner import SearchOptions, SearchSummary, run_search
from evotune.space import load_space
from evotune.storage import (
    MemoryTrialStore,
    NewTrial,
    SqlTrialStore,
    StudySpec,
    TrialRecord,
    TrialStore,
    open_database,
)
from evotune.synthetic_landscapes import synthetic_landscape
from evotune.worker.evaluator import Evaluator

SPACE = load_space("attention")
MISSION = SPACE.shape("mission")

NewStore = Callable[[], TrialStore]


@pytest.fixture(scope="module")
def landscape() -> Landscape:
    return synthetic_landscape(shape="mission")


@pytest.fixture(params=["memory", "sqlite"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NewStore]:
    """Makes empty stores of one kind."""
    databases = []

    def make() -> TrialStore:
        if request.param == "memory":
            return MemoryTrialStore()
        db = open_database(f"sqlite:///{tmp_path / f'{len(databases)}.db'}")
        databases.append(db)
        return SqlTrialStore(db)

    yield make
    for db in databases:
        db.dispose()


@pytest.fixture
def store(new_store: NewStore) -> TrialStore:
    return new_store()


def _search(
    store: TrialStore, evaluator: Evaluator, shape_name: str = "mission", **options: Any
) -> SearchSummary:
    return run_search(store, SPACE, SPACE.shape(shape_name), evaluator, SearchOptions(**options))


def _served(store: TrialStore, summary: SearchSummary) -> Any:
    study = store.study(summary.study_id)
    return store.best(study.kernel, study.shape_key, study.fingerprint)


def test_replayed_search_stores_every_trial_once(store: TrialStore, landscape: Landscape) -> None:
    summary = _search(store, ReplayEvaluator(landscape), budget=40, seed=3, replay="synthetic")
    assert summary.total_trials == 40 and summary.state == "finished"
    trials = store.trials(summary.study_id)
    assert len({t.config_hash for t in trials}) == 40
    assert all(t.status != "running" for t in trials)
    for t in trials:
        recorded = landscape.lookup(t.config)
        assert recorded is not None and t.status == recorded.status.value
        assert t.p50_us == (recorded.p50_us if t.status == "ok" else None)
    assert {t.operator for t in trials} - {"seed"}, "lineage operators are stored"
    # The best of a replay is chosen but never published as a measured best config.
    assert store.study(summary.study_id).best_trial_id is not None
    assert _served(store, summary) is None and not summary.published

    resumed = _search(store, ReplayEvaluator(landscape), budget=60, seed=3, replay="synthetic")
    assert resumed.study_id == summary.study_id and resumed.resumed
    assert resumed.total_trials == 60 and resumed.trials_run == 20
    assert len({t.config_hash for t in store.trials(summary.study_id)}) == 60


class _NoteTaker:
    """An observer that keeps the notes the runner gives."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def started(self, *args: Any) -> None:
        pass

    def note(self, text: str) -> None:
        self.notes.append(text)

    def trial_finished(self, *args: Any) -> None:
        pass

    def shootout_started(self, *args: Any) -> None:
        pass


def test_a_resumed_study_keeps_its_seed_and_settings_and_says_so(
    store: TrialStore, landscape: Landscape
) -> None:
    first = _search(
        store, ReplayEvaluator(landscape), budget=20, seed=3, replay="synthetic",
        settings={"population": 10},
    )  # fmt: skip
    quiet, noisy = _NoteTaker(), _NoteTaker()
    options = SearchOptions(budget=30, replay="synthetic")  # no seed asked: nothing to say
    run_search(store, SPACE, SPACE.shape("mission"), ReplayEvaluator(landscape), options, quiet)
    assert quiet.notes == []
    options = SearchOptions(budget=40, seed=5, replay="synthetic", settings={"population": 8})
    again = run_search(
        store, SPACE, SPACE.shape("mission"), ReplayEvaluator(landscape), options, noisy
    )
    assert again.study_id == first.study_id and again.resumed
    assert store.study(first.study_id).seed == 3
    assert store.study(first.study_id).settings["population"] == 10
    (note,) = noisy.notes
    assert "seed 3 (asked 5)" in note and "population 10 (asked 8)" in note
    assert "--fresh" in note


class _CountingEvaluator(ReplayEvaluator):
    """Replay that records which requests reached it, and publishes like a GPU would."""

    def __init__(self, landscape: Landscape) -> None:
        super().__init__(landscape)
        self.seen: list[str] = []
        self.shootouts = 0

    def evaluate(self, requests):  # type: ignore[no-untyped-def]
        self.seen += [config_hash(r.config) for r in requests]
        yield from super().evaluate(requests)

    def shootout(self, requests, rounds):  # type: ignore[no-untyped-def]
        self.shootouts += 1
        return [
            TrialResult(r.trial_id, TrialStatus.OK, p50_us=100.0 + i)
            for i, r in enumerate(requests)
        ]


def test_invalid_candidates_never_reach_the_evaluator_and_winner_is_published(
    store: TrialStore, landscape: Landscape
) -> None:
    evaluator = _CountingEvaluator(landscape)
    summary = _search(store, evaluator, budget=30, seed=1, finalists=3)
    for t in store.trials(summary.study_id):
        if SPACE.violations(t.config, MISSION.dims):
            assert t.status == "invalid" and t.config_hash not in evaluator.seen
    best = _served(store, summary)
    # The shoot-out decides: its first finalist got the lowest shoot-out time.
    assert best is not None and best.shootout_p50_us == 100.0
    assert summary.best_shootout_p50_us == 100.0 and summary.published
    assert evaluator.shootouts == 1


class _WrongInShootout(_CountingEvaluator):
    """The shoot-out finds the fastest finalists wrong (say, on their 40th launch)."""

    def __init__(self, landscape: Landscape, wrong: int) -> None:
        super().__init__(landscape)
        self.wrong = wrong
        self.wrong_ids: list[int] = []

    def shootout(self, requests, rounds):  # type: ignore[no-untyped-def]
        results = super().shootout(requests, rounds)
        for result in results[: self.wrong]:
            self.wrong_ids.append(result.trial_id)
            result.status, result.p50_us = TrialStatus.WRONG_RESULT, None
            result.error = "wrong result: correct on launch 1, wrong on launch 40"
        return results


def _trial(store: TrialStore, study_id: int, trial_id: int) -> TrialRecord:
    return next(t for t in store.trials(study_id) if t.id == trial_id)


def test_a_finalist_the_shootout_finds_wrong_is_stored_wrong_and_never_published(
    store: TrialStore, landscape: Landscape
) -> None:
    evaluator = _WrongInShootout(landscape, wrong=1)
    summary = _search(store, evaluator, budget=30, seed=1, finalists=3)
    (wrong_id,) = evaluator.wrong_ids
    wrong = _trial(store, summary.study_id, wrong_id)
    assert wrong.status == "wrong_result" and wrong.p50_us is None
    assert wrong.error == "shoot-out: wrong result: correct on launch 1, wrong on launch 40"
    best = _served(store, summary)
    assert best is not None and best.trial_id != wrong_id
    assert best.shootout_p50_us == 101.0  # the next finalist's shoot-out time
    assert summary.best_shootout_p50_us == 101.0 and summary.published


def test_nothing_is_published_when_every_finalist_is_wrong(
    store: TrialStore, landscape: Landscape
) -> None:
    evaluator = _WrongInShootout(landscape, wrong=100)
    summary = _search(store, evaluator, budget=30, seed=1, finalists=3)
    assert len(evaluator.wrong_ids) >= 2 and not summary.published
    assert _served(store, summary) is None
    assert store.study(summary.study_id).best_trial_id is None
    statuses = {_trial(store, summary.study_id, i).status for i in evaluator.wrong_ids}
    assert statuses == {"wrong_result"}


class _Clock:
    """Stands in for the runner's `time` module: its clock moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


class _ClockedEvaluator(_CountingEvaluator):
    """Each trial takes 10 ms of the clock, the shoot-out 500 ms."""

    def __init__(self, landscape: Landscape, clock: _Clock) -> None:
        super().__init__(landscape)
        self.clock = clock

    def evaluate(self, requests):  # type: ignore[no-untyped-def]
        for result in super().evaluate(requests):
            self.clock.now += 0.01
            yield result

    def shootout(self, requests, rounds):  # type: ignore[no-untyped-def]
        self.clock.now += 0.5
        return super().shootout(requests, rounds)


def test_trials_per_min_counts_the_measuring_phase_not_the_shootout(
    store: TrialStore, landscape: Landscape, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    monkeypatch.setattr("evotune.runner.time", clock)
    evaluator = _ClockedEvaluator(landscape, clock)
    summary = _search(store, evaluator, budget=30, seed=1)
    assert summary.search_s == pytest.approx(0.01 * len(evaluator.seen))
    assert summary.wall_s == pytest.approx(summary.search_s + 0.5)
    assert summary.trials_per_min == pytest.approx(summary.trials_run / summary.search_s * 60)
    assert summary.to_dict()["trials_per_min"] == summary.trials_per_min


class _Warmable(_CountingEvaluator):
    def __init__(self, landscape: Landscape) -> None:
        super().__init__(landscape)
        self.warmed: list = []  # type: ignore[type-arg]

    def warm_up(self, request) -> None:  # type: ignore[no-untyped-def]
        self.warmed.append(request)


def test_the_runner_warms_the_evaluator_with_the_default_config_and_stores_nothing(
    store: TrialStore, landscape: Landscape
) -> None:
    evaluator = _Warmable(landscape)
    summary = _search(store, evaluator, budget=12, seed=1)
    (request,) = evaluator.warmed
    assert request.config == SPACE.default_config()
    assert request.dims == dict(MISSION.dims)
    assert request.trial_id < 0 and request.max_runs == 1
    assert summary.total_trials == 12
    assert request.trial_id not in [t.id for t in store.trials(summary.study_id)]


class _TwoGpus(_CountingEvaluator):
    """A replay that says it measures on two workers and can hold 20 requests at once;
    records the most requests it ever held."""

    workers = 2
    capacity = 20

    def __init__(self, landscape: Landscape) -> None:
        super().__init__(landscape)
        self.held = 0
        self.most_held = 0

    def submit(self, requests) -> None:  # type: ignore[no-untyped-def]
        super().submit(requests)
        self.held += len(requests)
        self.most_held = max(self.most_held, self.held)

    def collect(self):  # type: ignore[no-untyped-def]
        results = super().collect()
        self.held -= len(results)
        return results


def test_on_several_workers_the_search_runs_asynchronously_with_the_evaluators_capacity(
    new_store: NewStore, landscape: Landscape
) -> None:
    two = _TwoGpus(landscape)
    _search(new_store(), two, budget=60, seed=1)
    # Population 12: a synchronous search never holds more than one generation.
    assert 12 < two.most_held <= 20 + 12
    one = _TwoGpus(landscape)
    one.workers = 1
    _search(new_store(), one, budget=60, seed=1)
    assert one.most_held <= 12


def test_best_configs_stored_under_an_older_space_file_still_seed_nearby_shapes(
    store: TrialStore, landscape: Landscape
) -> None:
    # A gluon best of llama-d128, stored when PRODUCER_REGS still applied without a
    # producer partition.
    current = {"impl": "gluon", "BLOCK_M": 64, "BLOCK_N": 64, "FAST_EXP": 0, "CTA_MULT": 0}
    current |= {"PRODUCER_WARPS": 0, "CONSUMER_WGS": 1, "KV_STAGES": 3, "TILE_ORDER": 1}
    current |= {"PINGPONG": 1, "P_BUFFERS": 1}  # knobs since (issue 24), at their defaults
    legacy = {k: v for k, v in current.items() if k not in ("PINGPONG", "P_BUFFERS")}
    legacy["PRODUCER_REGS"] = 40
    assert SPACE.structural_problems(legacy) and not SPACE.structural_problems(current)
    evaluator = _CountingEvaluator(landscape)
    spec = StudySpec(
        kernel="attention",
        shape=SPACE.shape("llama-d128"),
        environment=evaluator.environment(),
        strategy="evolution",
        settings={},
        seed=0,
        budget=1,
    )
    older = store.open_study(spec).study.id
    (trial,) = store.add_trials(older, [NewTrial(0, legacy, config_hash(legacy), seed=0)])
    store.finish_trial(TrialResult(trial.id, TrialStatus.OK, p50_us=50.0))
    store.publish_best(older, trial.id, None, None)
    store.end_study(older, "finished")

    summary = _search(store, evaluator, budget=12, seed=1, finalists=2)
    seeded = [t.config for t in store.trials(summary.study_id) if t.operator == "seed"]
    assert current in seeded


def test_a_search_starts_from_the_default_and_the_space_seeds(
    store: TrialStore, landscape: Landscape
) -> None:
    summary = _search(store, _CountingEvaluator(landscape), budget=12, seed=3)
    expected = [SPACE.default_config(), *SPACE.seed_configs(MISSION.dims)]
    assert len(expected) == 4
    seeded = [t.config for t in store.trials(summary.study_id) if t.operator == "seed"]
    assert sorted(map(config_hash, seeded)) == sorted(map(config_hash, expected))


def test_a_search_given_its_start_starts_from_that_alone(
    store: TrialStore, landscape: Landscape
) -> None:
    """`SearchOptions.start` (what `evotune compare --start` gives) replaces the seeds."""
    (start,) = SPACE.seed_configs(MISSION.dims)[-1:]
    summary = _search(store, ReplayEvaluator(landscape), budget=12, seed=3, start=[start])
    seeded = [t.config for t in store.trials(summary.study_id) if t.operator == "seed"]
    assert seeded == [start]
    bare = MemoryTrialStore()
    unseeded = _search(bare, ReplayEvaluator(landscape), budget=12, start=[])
    assert [t.operator for t in bare.trials(unseeded.study_id)].count("seed") == 0


@pytest.mark.slow
def test_sigkill_mid_search_then_resume_measures_the_trials_in_flight_again(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "EVOTUNE_DB": f"sqlite:///{tmp_path / 'k.db'}", "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "evotune", "search", "--shape", "tiny", "--interpret",
           "--budget", "8", "--population", "4", "--json"]  # fmt: skip
    # Piped, the search's progress is a line per tenth of its budget on stderr: one per
    # trial here. It is killed once it says two trials are stored.
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if "2/8 trials" in line:
            break
    else:
        pytest.fail(f"the search ended (exit {proc.wait()}) before it could be killed")
    os.killpg(proc.pid, signal.SIGKILL)  # the search and its workers, as an OOM kill would
    proc.wait()
    proc.stderr.close()

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout)
    assert summary["resumed"] is True and summary["total_trials"] == 8
    assert 1 <= summary["rerun_trials"] <= 4  # the batch that was in flight, no more
    trials = json.loads(
        subprocess.run(
            [sys.executable, "-m", "evotune", "trials", str(summary["study_id"]), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert not [t for t in trials if t["error"] and "in flight" in (t["error"] or "")]
    assert sum(t["status"] == "crashed" for t in trials) == 0
    assert len(trials) == 8
    assert len({t["config_hash"] for t in trials}) == 8


class _Interrupting(_CountingEvaluator):
    """Stops the search (as Ctrl-C does) the first `stops` times it is asked to measure."""

    def __init__(self, landscape: Landscape, stops: int) -> None:
        super().__init__(landscape)
        self.stops = stops

    def evaluate(self, requests):  # type: ignore[no-untyped-def]
        if self.stops:
            self.stops -= 1
            raise KeyboardInterrupt
        yield from super().evaluate(requests)


def _stopped_in_flight(store: TrialStore, landscape: Landscape, stops: int) -> list[TrialRecord]:
    """A replayed 8-trial search stopped `stops` times while its batch was in flight;
    returns the trials left `running`."""
    options: dict[str, Any] = {"budget": 8, "replay": "synthetic"}
    for _ in range(stops):
        with pytest.raises(KeyboardInterrupt):
            _search(store, _Interrupting(landscape, stops=1), **options)
    study_id = 1  # the first study of an empty store
    assert store.study(study_id).state == "interrupted"
    running = store.trials(study_id, "running")
    assert running and all(t.attempts == stops for t in running)
    return running


def test_trials_in_flight_when_the_search_stopped_are_measured_again_on_resume(
    store: TrialStore, landscape: Landscape
) -> None:
    in_flight = _stopped_in_flight(store, landscape, stops=1)
    evaluator = _CountingEvaluator(landscape)
    resumed = _search(store, evaluator, budget=8, replay="synthetic")
    assert resumed.resumed and resumed.rerun_trials == len(in_flight)
    assert resumed.trials_run == len(in_flight)
    # Measured again, and only they, in the order they were asked.
    assert evaluator.seen == [t.config_hash for t in in_flight]
    for trial in (_trial(store, resumed.study_id, t.id) for t in in_flight):
        recorded = landscape.lookup(trial.config)
        assert recorded is not None and trial.status == recorded.status.value
        assert trial.attempts == 2 and trial.error == recorded.error


def test_a_trial_in_flight_at_two_stops_is_not_measured_a_third_time(
    store: TrialStore, landscape: Landscape
) -> None:
    in_flight = _stopped_in_flight(store, landscape, stops=2)
    evaluator = _CountingEvaluator(landscape)
    resumed = _search(store, evaluator, budget=8, replay="synthetic")
    assert resumed.rerun_trials == 0 and evaluator.seen == []
    for trial in (_trial(store, resumed.study_id, t.id) for t in in_flight):
        assert trial.status == "crashed" and "in flight, 2 times" in (trial.error or "")


class _Trickle(ReplayEvaluator):
    """Replay that hands back one result per collect, newest submitted first: a pool whose
    later trials overtake earlier ones."""

    def __init__(self, landscape: Landscape) -> None:
        super().__init__(landscape)
        self.waiting: list = []  # type: ignore[type-arg]

    def submit(self, requests) -> None:  # type: ignore[no-untyped-def]
        self.waiting += list(requests)

    def collect(self):  # type: ignore[no-untyped-def]
        return [self._answer(self.waiting.pop())] if self.waiting else []


@pytest.mark.parametrize("depth", [1, 2])
def test_pipelined_search_is_the_same_whatever_order_results_come_in(
    new_store: NewStore, landscape: Landscape, depth: int
) -> None:
    sequences = []
    for evaluator in (ReplayEvaluator(landscape), _Trickle(landscape)):
        store = new_store()
        summary = _search(
            store, evaluator, budget=60, seed=5, replay="synthetic", pipeline_depth=depth
        )
        assert summary.state == "finished" and summary.total_trials == 60
        trials = store.trials(summary.study_id)
        assert all(t.status != "running" for t in trials)
        sequences.append([(t.number, t.generation, t.config_hash) for t in trials])
    assert sequences[0] == sequences[1]


def test_asynchronous_search_finishes_with_every_trial_once(
    store: TrialStore, landscape: Landscape
) -> None:
    summary = _search(
        store, _Trickle(landscape), budget=60, seed=5, replay="synthetic", pipeline_depth=0
    )
    assert summary.state == "finished" and summary.total_trials == 60
    trials = store.trials(summary.study_id)
    assert len({t.config_hash for t in trials}) == 60
    assert all(t.status != "running" for t in trials)
    assert max(t.generation for t in trials) >= 4  # generations were asked as results came


def test_the_same_search_gives_the_same_trials_on_every_store(
    new_store: NewStore, landscape: Landscape
) -> None:
    options = {"budget": 30, "seed": 2, "finalists": 3}
    reference, store = MemoryTrialStore(), new_store()
    expected = _search(reference, _CountingEvaluator(landscape), **options)
    summary = _search(store, _CountingEvaluator(landscape), **options)

    def fields(trials: list[TrialRecord]) -> list[tuple[Any, ...]]:
        return [(t.number, t.config_hash, t.status, t.p50_us, t.shootout_p50_us) for t in trials]

    assert fields(store.trials(summary.study_id)) == fields(reference.trials(expected.study_id))
    assert replace(summary, wall_s=0, search_s=0) == replace(expected, wall_s=0, search_s=0)
