"""The runner over a replayed landscape: storage, dedup, resume, invalid handling, no publish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evotune.records import TrialResult, TrialStatus, config_hash
from evotune.replay import ReplayEvaluator
from evotune.runner import SearchOptions, run_search
from evotune.space import load_space
from evotune.storage import Trial, open_database, repository
from tests.search.synthetic import synthetic_landscape


@pytest.fixture(scope="module")
def landscape():  # type: ignore[no-untyped-def]
    return synthetic_landscape(shape="mission")


def test_replayed_search_stores_every_trial_once(tmp_path: Path, landscape) -> None:  # type: ignore[no-untyped-def]
    space = load_space("attention")
    shape = space.shape("mission")
    db = open_database(f"sqlite:///{tmp_path / 'r.db'}")
    options = SearchOptions(budget=40, seed=3, replay="synthetic")
    summary = run_search(db, space, shape, ReplayEvaluator(landscape), options)
    assert summary.total_trials == 40 and summary.state == "finished"
    with db.session() as s:
        study = repository.get_study(s, summary.study_id)
        trials = repository.study_trials(s, study)
        assert len({t.config_hash for t in trials}) == 40
        assert all(t.status != "running" for t in trials)
        for t in trials:
            recorded = landscape.lookup(t.config)
            assert recorded is not None and t.status == recorded.status.value
            assert t.p50_us == (recorded.p50_us if t.status == "ok" else None)
        assert {t.operator for t in trials} - {"seed"}, "lineage operators are stored"
        # The best of a replay is chosen but never published as a measured best config.
        assert study.best_trial_id is not None
        assert repository.best_config(s, "attention", shape.key, include_interpreted=True) is None

    resumed = run_search(
        db,
        space,
        shape,
        ReplayEvaluator(landscape),
        SearchOptions(budget=60, seed=3, replay="synthetic"),
    )
    assert resumed.study_id == summary.study_id and resumed.resumed
    assert resumed.total_trials == 60 and resumed.trials_run == 20
    with db.session() as s:
        hashes = [
            t.config_hash
            for t in repository.study_trials(s, repository.get_study(s, summary.study_id))
        ]
    assert len(set(hashes)) == 60


class _CountingEvaluator(ReplayEvaluator):
    """Replay that records which requests reached it, and publishes like a GPU would."""

    def __init__(self, landscape) -> None:  # type: ignore[no-untyped-def]
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


def _search_mission(tmp_path: Path, evaluator, db_name: str = "search", **options):  # type: ignore[no-untyped-def]
    """A search of shape mission into a fresh database; returns the database and summary."""
    space = load_space("attention")
    db = open_database(f"sqlite:///{tmp_path / db_name}.db")
    summary = run_search(db, space, space.shape("mission"), evaluator, SearchOptions(**options))
    return db, summary


def test_invalid_candidates_never_reach_the_evaluator_and_winner_is_published(
    tmp_path: Path, landscape
) -> None:  # type: ignore[no-untyped-def]
    space = load_space("attention")
    shape = space.shape("mission")
    db = open_database(f"sqlite:///{tmp_path / 'p.db'}")
    evaluator = _CountingEvaluator(landscape)
    summary = run_search(db, space, shape, evaluator, SearchOptions(budget=30, seed=1, finalists=3))
    with db.session() as s:
        trials = repository.study_trials(s, repository.get_study(s, summary.study_id))
        for t in trials:
            if space.violations(t.config, shape.dims):
                assert t.status == "invalid" and t.config_hash not in evaluator.seen
        best = repository.best_config(s, "attention", shape.key)
        assert best is not None
        # The shoot-out decides: its first finalist got the lowest shoot-out time.
        assert best.shootout_p50_us == 100.0
        assert summary.best_shootout_p50_us == 100.0
    assert evaluator.shootouts == 1


class _WrongInShootout(_CountingEvaluator):
    """The shoot-out finds the fastest finalists wrong (say, on their 40th launch)."""

    def __init__(self, landscape, wrong: int) -> None:  # type: ignore[no-untyped-def]
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


def test_a_finalist_the_shootout_finds_wrong_is_stored_wrong_and_never_published(
    tmp_path: Path, landscape
) -> None:  # type: ignore[no-untyped-def]
    evaluator = _WrongInShootout(landscape, wrong=1)
    db, summary = _search_mission(tmp_path, evaluator, budget=30, seed=1, finalists=3)
    (wrong_id,) = evaluator.wrong_ids
    with db.session() as s:
        wrong = s.get(Trial, wrong_id)
        assert wrong is not None and wrong.status == "wrong_result" and wrong.p50_us is None
        assert wrong.error == "shoot-out: wrong result: correct on launch 1, wrong on launch 40"
        best = repository.best_config(s, "attention", load_space("attention").shape("mission").key)
        assert best is not None and best.trial_id != wrong_id
        assert best.shootout_p50_us == 101.0  # the next finalist's shoot-out time
    assert summary.best_shootout_p50_us == 101.0 and summary.published


def test_nothing_is_published_when_every_finalist_is_wrong(tmp_path: Path, landscape) -> None:  # type: ignore[no-untyped-def]
    evaluator = _WrongInShootout(landscape, wrong=100)
    db, summary = _search_mission(tmp_path, evaluator, budget=30, seed=1, finalists=3)
    assert len(evaluator.wrong_ids) >= 2 and not summary.published
    with db.session() as s:
        shape = load_space("attention").shape("mission")
        assert repository.best_config(s, "attention", shape.key) is None
        assert repository.get_study(s, summary.study_id).best_trial_id is None
        statuses = {s.get(Trial, i).status for i in evaluator.wrong_ids}  # type: ignore[union-attr]
        assert statuses == {"wrong_result"}


class _SlowShootout(_CountingEvaluator):
    """Answers trials at once but takes its time over the shoot-out."""

    def shootout(self, requests, rounds):  # type: ignore[no-untyped-def]
        time.sleep(0.5)
        return super().shootout(requests, rounds)


def test_trials_per_min_counts_the_measuring_phase_not_the_shootout(
    tmp_path: Path, landscape
) -> None:  # type: ignore[no-untyped-def]
    _, summary = _search_mission(tmp_path, _SlowShootout(landscape), budget=30, seed=1)
    assert summary.wall_s >= summary.search_s + 0.5
    assert summary.trials_per_min == pytest.approx(summary.trials_run / summary.search_s * 60)
    assert summary.to_dict()["trials_per_min"] == summary.trials_per_min


class _Warmable(_CountingEvaluator):
    def __init__(self, landscape) -> None:  # type: ignore[no-untyped-def]
        super().__init__(landscape)
        self.warmed: list = []  # type: ignore[type-arg]

    def warm_up(self, request) -> None:  # type: ignore[no-untyped-def]
        self.warmed.append(request)


def test_the_runner_warms_the_evaluator_with_the_default_config_and_stores_nothing(
    tmp_path: Path, landscape
) -> None:  # type: ignore[no-untyped-def]
    evaluator = _Warmable(landscape)
    db, summary = _search_mission(tmp_path, evaluator, budget=12, seed=1)
    (request,) = evaluator.warmed
    space = load_space("attention")
    assert request.config == space.default_config()
    assert request.dims == dict(space.shape("mission").dims)
    assert request.trial_id < 0 and request.max_runs == 1
    assert summary.total_trials == 12
    with db.session() as s:
        ids = [t.id for t in repository.study_trials(s, repository.get_study(s, 1))]
        assert request.trial_id not in ids


class _TwoGpus(_CountingEvaluator):
    """A replay that says it measures on two workers and can hold 20 requests at once;
    records the most requests it ever held."""

    workers = 2
    capacity = 20

    def __init__(self, landscape) -> None:  # type: ignore[no-untyped-def]
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
    tmp_path: Path, landscape
) -> None:  # type: ignore[no-untyped-def]
    two = _TwoGpus(landscape)
    _search_mission(tmp_path, two, "two", budget=60, seed=1)
    # Population 12: a synchronous search never holds more than one generation.
    assert 12 < two.most_held <= 20 + 12
    one = _TwoGpus(landscape)
    one.workers = 1
    _search_mission(tmp_path, one, "one", budget=60, seed=1)
    assert one.most_held <= 12


def test_best_configs_stored_under_an_older_space_file_still_seed_nearby_shapes(
    tmp_path: Path, landscape
) -> None:  # type: ignore[no-untyped-def]
    space = load_space("attention")
    db = open_database(f"sqlite:///{tmp_path / 's.db'}")
    options = SearchOptions(budget=12, seed=1, finalists=2)
    llama = _CountingEvaluator(synthetic_landscape(shape="llama-d128"))
    run_search(db, space, space.shape("llama-d128"), llama, options)
    # A gluon best stored when PRODUCER_REGS still applied without a producer partition.
    current = {"impl": "gluon", "BLOCK_M": 64, "BLOCK_N": 64, "FAST_EXP": 0, "CTA_MULT": 0}
    current |= {"PRODUCER_WARPS": 0, "CONSUMER_WGS": 1, "KV_STAGES": 3, "TILE_ORDER": 1}
    legacy = {**current, "PRODUCER_REGS": 40}
    assert space.structural_problems(legacy) and not space.structural_problems(current)
    with db.session() as s:
        (stored,) = repository.best_configs_of_kernel(
            s, "attention", repository.get_study(s, 1).environment_id
        )
        stored.config = legacy
    summary = run_search(db, space, space.shape("mission"), _CountingEvaluator(landscape), options)
    with db.session() as s:
        trials = repository.study_trials(s, repository.get_study(s, summary.study_id))
        assert current in [t.config for t in trials if t.operator == "seed"]


def test_a_search_starts_from_the_default_and_the_space_seeds(tmp_path: Path, landscape) -> None:  # type: ignore[no-untyped-def]
    space = load_space("attention")
    shape = space.shape("mission")
    db = open_database(f"sqlite:///{tmp_path / 'seeds.db'}")
    summary = run_search(
        db, space, shape, _CountingEvaluator(landscape), SearchOptions(budget=12, seed=3)
    )
    expected = [space.default_config(), *space.seed_configs(shape.dims)]
    assert len(expected) == 4
    with db.session() as s:
        trials = repository.study_trials(s, repository.get_study(s, summary.study_id))
        seeded = [t.config for t in trials if t.operator == "seed"]
    assert sorted(map(config_hash, seeded)) == sorted(map(config_hash, expected))


def _count_finished(db_path: Path) -> int:
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        try:
            return conn.execute("SELECT count(*) FROM trials WHERE status != 'running'").fetchone()[
                0
            ]
        except sqlite3.OperationalError:
            return 0


@pytest.mark.slow
def test_sigkill_mid_search_then_resume_measures_the_trials_in_flight_again(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "k.db"
    env = {**os.environ, "EVOTUNE_DB": f"sqlite:///{db_path}", "TRITON_INTERPRET": "1"}
    cmd = [
        sys.executable,
        "-m",
        "evotune",
        "search",
        "--shape",
        "tiny",
        "--interpret",
        "--budget",
        "8",
        "--population",
        "4",
        "--json",
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while _count_finished(db_path) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the search ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the search and its workers, as an OOM kill would
    proc.wait()
    done_before = _count_finished(db_path)

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
    assert len(trials) == 8 >= done_before
    assert len({t["config_hash"] for t in trials}) == 8


def _stopped_mid_trial(db, space, shape, landscape, attempts: int) -> int:  # type: ignore[no-untyped-def]
    """A finished 8-trial replayed study whose trial 5 is put back `running`, as a search
    killed while measuring it leaves it (`attempts` times dispatched)."""
    summary = run_search(
        db, space, shape, ReplayEvaluator(landscape), SearchOptions(budget=8, replay="synthetic")
    )
    with db.session() as s:
        trial = repository.study_trials(s, repository.get_study(s, summary.study_id))[5]
        trial.status, trial.p50_us, trial.attempts = "running", None, attempts
        return trial.id


def test_a_trial_in_flight_when_the_search_stopped_is_measured_again_on_resume(
    tmp_path: Path, landscape
) -> None:  # type: ignore[no-untyped-def]
    space = load_space("attention")
    shape = space.shape("mission")
    db = open_database(f"sqlite:///{tmp_path / 'i.db'}")
    trial_id = _stopped_mid_trial(db, space, shape, landscape, attempts=1)
    evaluator = _CountingEvaluator(landscape)
    resumed = run_search(db, space, shape, evaluator, SearchOptions(budget=8, replay="synthetic"))
    assert resumed.resumed and resumed.rerun_trials == 1 and resumed.trials_run == 1
    with db.session() as s:
        trial = s.get(Trial, trial_id)
        assert trial is not None and trial.attempts == 2
        recorded = landscape.lookup(trial.config)
        assert trial.status == recorded.status.value and trial.error is None
    assert evaluator.seen == [config_hash(trial.config)]  # measured again, and only it


def test_a_trial_in_flight_at_two_stops_is_not_measured_a_third_time(
    tmp_path: Path, landscape
) -> None:  # type: ignore[no-untyped-def]
    space = load_space("attention")
    shape = space.shape("mission")
    db = open_database(f"sqlite:///{tmp_path / 'j.db'}")
    trial_id = _stopped_mid_trial(db, space, shape, landscape, attempts=2)
    evaluator = _CountingEvaluator(landscape)
    resumed = run_search(db, space, shape, evaluator, SearchOptions(budget=8, replay="synthetic"))
    assert resumed.rerun_trials == 0 and evaluator.seen == []
    with db.session() as s:
        trial = s.get(Trial, trial_id)
        assert trial is not None and trial.status == "crashed"
        assert "in flight, 2 times" in (trial.error or "")


class _Trickle(ReplayEvaluator):
    """Replay that hands back one result per collect, newest submitted first: a pool whose
    later trials overtake earlier ones."""

    def __init__(self, landscape) -> None:  # type: ignore[no-untyped-def]
        super().__init__(landscape)
        self.waiting: list = []  # type: ignore[type-arg]

    def submit(self, requests) -> None:  # type: ignore[no-untyped-def]
        self.waiting += list(requests)

    def collect(self):  # type: ignore[no-untyped-def]
        return [self._answer(self.waiting.pop())] if self.waiting else []


@pytest.mark.parametrize("depth", [1, 2])
def test_pipelined_search_is_the_same_whatever_order_results_come_in(
    tmp_path: Path, landscape, depth: int
) -> None:  # type: ignore[no-untyped-def]
    space = load_space("attention")
    shape = space.shape("mission")
    sequences = []
    for name, evaluator in (
        ("batch", ReplayEvaluator(landscape)),
        ("trickle", _Trickle(landscape)),
    ):
        db = open_database(f"sqlite:///{tmp_path / f'{name}.db'}")
        options = SearchOptions(budget=60, seed=5, replay="synthetic", pipeline_depth=depth)
        summary = run_search(db, space, shape, evaluator, options)
        assert summary.state == "finished" and summary.total_trials == 60
        with db.session() as s:
            trials = repository.study_trials(s, repository.get_study(s, summary.study_id))
            assert all(t.status != "running" for t in trials)
            sequences.append([(t.number, t.generation, t.config_hash) for t in trials])
        db.dispose()
    assert sequences[0] == sequences[1]


def test_asynchronous_search_finishes_with_every_trial_once(tmp_path: Path, landscape) -> None:  # type: ignore[no-untyped-def]
    space = load_space("attention")
    shape = space.shape("mission")
    db = open_database(f"sqlite:///{tmp_path / 'async.db'}")
    options = SearchOptions(budget=60, seed=5, replay="synthetic", pipeline_depth=0)
    summary = run_search(db, space, shape, _Trickle(landscape), options)
    assert summary.state == "finished" and summary.total_trials == 60
    with db.session() as s:
        trials = repository.study_trials(s, repository.get_study(s, summary.study_id))
        assert len({t.config_hash for t in trials}) == 60
        assert all(t.status != "running" for t in trials)
        assert max(t.generation for t in trials) >= 4  # generations were asked as results came
