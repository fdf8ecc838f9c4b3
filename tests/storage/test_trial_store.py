"""The `TrialStore` contract: every store (memory, SQLite, PostgreSQL) passes these alike.

PostgreSQL runs when EVOTUNE_TEST_POSTGRES_URL names a server (tests/storage/conftest.py);
what only PostgreSQL does (its types, its locks, concurrent hosts) is in test_postgres.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import pytest

from evotune.errors import StudyBusyError, StudyNotFoundError
from evotune.fingerprint import fingerprint_hash
from evotune.records import TrialRequest, TrialResult, TrialStatus, config_hash
from evotune.runner import SearchOptions, run_search
from evotune.space import Shape, load_space
from evotune.storage import (
    MemoryTrialStore,
    SqlTrialStore,
    StudySpec,
    TrialRecord,
    TrialStore,
)
from evotune.storage.trial_store import interrupted_error
from evotune.worker.evaluator import BatchSubmission
from tests.storage.samples import ENV, FINGERPRINT, SHAPE, SPEC, new_trial


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> TrialStore:
    """Each store in turn; PostgreSQL is skipped without a server (conftest.py)."""
    if request.param == "memory":
        return MemoryTrialStore()
    return SqlTrialStore(
        request.getfixturevalue(f"{'pg' if request.param == 'postgres' else 'sqlite'}_db")
    )


def _ok(trial_id: int, p50: float) -> TrialResult:
    return TrialResult(
        trial_id, TrialStatus.OK, p50_us=p50, p20_us=p50 - 1, p80_us=p50 + 1, n_runs=3,
        samples_us=[p50 - 1, p50, p50 + 1], max_error=1.5e-3, compile_s=2.0, run_s=0.5,
    )  # fmt: skip


def _study_with_ok_trials(store: TrialStore, p50s: Sequence[float], spec: StudySpec = SPEC) -> int:
    study_id = store.open_study(spec, fresh=True).study.id
    trials = store.add_trials(study_id, [new_trial(i) for i in range(len(p50s))])
    for trial, p50 in zip(trials, p50s, strict=True):
        store.finish_trial(_ok(trial.id, p50))
    return study_id


# --- studies ---------------------------------------------------------------------------------


def test_a_new_study_is_running_with_what_the_spec_says(store: TrialStore) -> None:
    opened = store.open_study(replace(SPEC, restrict="impl == 'triton'", replay="toy.json"))
    study = opened.study
    assert not opened.resumed and opened.rerun == []
    assert (study.kernel, study.shape_key, study.dims) == ("attention", SHAPE.key, SHAPE.dims)
    assert study.fingerprint == FINGERPRINT and study.interpreted is False
    assert (study.strategy, study.seed, study.budget, study.state) == (
        "evolution",
        7,
        10,
        "running",
    )
    assert study.settings == {**SPEC.settings, "restrict": "impl == 'triton'"}
    assert study.restrict == "impl == 'triton'" and study.replay == "toy.json"
    assert study.best_trial_id is None and study.shootout is None and study.finished_at is None
    assert store.study(study.id) == study
    assert store.trials(study.id) == []


def test_a_rerun_resumes_the_newest_study_of_the_same_search(store: TrialStore) -> None:
    first = store.open_study(SPEC).study
    store.end_study(first.id, "interrupted")
    again = store.open_study(replace(SPEC, budget=25, seed=99))
    assert again.resumed and again.study.id == first.id
    # The rerun's budget applies; the study keeps its own seed and settings.
    assert (again.study.budget, again.study.seed, again.study.state) == (25, 7, "running")
    store.end_study(first.id, "finished")
    fresh = store.open_study(SPEC, fresh=True)
    assert not fresh.resumed and fresh.study.id != first.id
    store.end_study(fresh.study.id, "finished")
    assert store.open_study(SPEC).study.id == fresh.study.id  # the newest


@pytest.mark.parametrize(
    "other",
    [
        {"strategy": "random"},
        {"replay": "toy.json"},
        {"restrict": "impl == 'triton'"},
        {"shape": Shape("tiny", {"B": 2, "S": 128, "causal": True, "dtype": "float16"})},
        {"environment": {**ENV, "gpu": "NVIDIA H200"}},
        {"kernel": "matmul"},
    ],
)
def test_another_search_gets_its_own_study(store: TrialStore, other: dict[str, Any]) -> None:
    first = store.open_study(SPEC).study
    store.end_study(first.id, "finished")
    opened = store.open_study(replace(SPEC, **other))
    assert not opened.resumed and opened.study.id != first.id


def test_a_study_being_searched_cannot_be_opened_again(store: TrialStore) -> None:
    study = store.open_study(SPEC).study
    with pytest.raises(StudyBusyError, match=f"study {study.id}"):
        store.open_study(SPEC)
    assert store.open_study(SPEC, fresh=True).study.id != study.id  # a separate study may


def test_end_study_sets_the_state_and_finished_stamps_the_time(store: TrialStore) -> None:
    study_id = store.open_study(SPEC).study.id
    assert store.end_study(study_id, "interrupted").finished_at is None
    store.open_study(SPEC)
    ended = store.end_study(study_id, "finished")
    assert ended.state == "finished" and ended.finished_at is not None
    assert store.study(study_id) == ended


def test_unknown_ids(store: TrialStore) -> None:
    with pytest.raises(StudyNotFoundError, match="no study with id 99"):
        store.study(99)
    with pytest.raises(StudyNotFoundError):
        store.trials(99)
    with pytest.raises(KeyError):
        store.finish_trial(_ok(12345, 1.0))


# --- trials ----------------------------------------------------------------------------------


def test_trials_are_stored_running_or_refused_and_read_in_number_order(store: TrialStore) -> None:
    study_id = store.open_study(SPEC).study.id
    batch = [
        new_trial(2),
        new_trial(0, refused="BLOCK_M * 2 > 96 (too many registers)"),
        new_trial(1),
    ]
    stored = store.add_trials(study_id, batch)
    assert [t.number for t in stored] == [2, 0, 1]  # as given
    running, refused = stored[0], stored[1]
    assert running.status == "running" and running.attempts == 1
    assert running.config == batch[0].config and running.config_hash == batch[0].config_hash
    assert (running.seed, running.generation, running.operator) == (2, 1, "crossover")
    assert running.parents == ("p0", "p1") and running.study_id == study_id
    assert refused.status == "invalid" and refused.error == batch[1].refused
    assert refused.p50_us is None
    assert [t.number for t in store.trials(study_id)] == [0, 1, 2]
    assert [t.number for t in store.trials(study_id, "running")] == [1, 2]
    assert store.trials(study_id, "ok") == []
    assert len({t.id for t in stored}) == 3


def test_a_config_the_study_has_means_another_search_runs_it(store: TrialStore) -> None:
    study_id = store.open_study(SPEC).study.id
    store.add_trials(study_id, [new_trial(0)])
    with pytest.raises(StudyBusyError):
        store.add_trials(study_id, [new_trial(1), replace(new_trial(0), number=2)])
    # Nothing of the refused batch was stored.
    assert [t.number for t in store.trials(study_id)] == [0]


def test_an_ok_result_keeps_its_latencies_and_evidence(store: TrialStore) -> None:
    study_id = store.open_study(SPEC).study.id
    (trial,) = store.add_trials(study_id, [new_trial(0)])
    finished = store.finish_trial(_ok(trial.id, 41.25))
    assert finished.status == "ok"
    assert (finished.p50_us, finished.p20_us, finished.p80_us, finished.n_runs) == (
        41.25, 40.25, 42.25, 3,
    )  # fmt: skip
    assert finished.samples_us == (40.25, 41.25, 42.25)
    assert (finished.max_error, finished.compile_s, finished.run_s) == (1.5e-3, 2.0, 0.5)
    assert store.trials(study_id) == [finished]


def test_a_failed_result_keeps_its_evidence_but_no_latency(store: TrialStore) -> None:
    study_id = store.open_study(SPEC).study.id
    (trial,) = store.add_trials(study_id, [new_trial(0)])
    result = TrialResult(
        trial.id, TrialStatus.WRONG_RESULT, p50_us=12.0, p20_us=11.0, p80_us=13.0, n_runs=2,
        samples_us=[11.0, 13.0], max_error=0.5, compile_s=1.0, run_s=0.25,
        error="max error 0.5 over tolerance",
    )  # fmt: skip
    finished = store.finish_trial(result)
    assert finished.status == "wrong_result"
    assert (finished.p50_us, finished.p20_us, finished.p80_us) == (None, None, None)
    assert finished.samples_us == (11.0, 13.0) and finished.max_error == 0.5
    assert (finished.compile_s, finished.run_s) == (1.0, 0.25)
    assert finished.error == "max error 0.5 over tolerance"


def test_trials_left_in_flight_are_claimed_for_a_rerun_once(store: TrialStore) -> None:
    study_id = store.open_study(SPEC).study.id
    stuck, done = store.add_trials(study_id, [new_trial(0), new_trial(1)])
    store.finish_trial(_ok(done.id, 30.0))
    store.end_study(study_id, "interrupted")  # stopped while trial 0 ran

    opened = store.open_study(SPEC)
    assert [(t.id, t.status, t.attempts) for t in opened.rerun] == [(stuck.id, "running", 2)]
    store.end_study(study_id, "interrupted")  # stopped again while it ran

    # In flight at two stops: it may be what stops the search; given up, not measured again.
    assert store.open_study(SPEC).rerun == []
    given_up = store.trials(study_id)[0]
    assert given_up.status == "crashed" and given_up.error == interrupted_error(2)
    assert store.trials(study_id, "ok")[0].id == done.id


# --- shoot-out, winner, published best -------------------------------------------------------


def test_shootout_results_and_a_finalist_found_wrong(store: TrialStore) -> None:
    study_id = _study_with_ok_trials(store, [41.0, 42.0])
    first, second = store.trials(study_id)
    assert store.record_shootout(first.id, 40.5).shootout_p50_us == 40.5
    wrong = TrialResult(second.id, TrialStatus.WRONG_RESULT, max_error=0.75,
                        error="wrong result: correct on launch 1, wrong on launch 40")  # fmt: skip
    failed = store.fail_finalist(wrong)
    assert failed.status == "wrong_result" and failed.p50_us is None and failed.p20_us is None
    assert failed.error == "shoot-out: wrong result: correct on launch 1, wrong on launch 40"
    assert failed.max_error == 0.75 and failed.samples_us == (41.0, 42.0, 43.0)  # evidence kept
    assert [t.id for t in store.trials(study_id, "ok")] == [first.id]
    crashed = store.fail_finalist(TrialResult(first.id, TrialStatus.CRASHED))
    assert crashed.error == "shoot-out: crashed" and crashed.max_error == 1.5e-3


def test_set_winner(store: TrialStore) -> None:
    study_id = _study_with_ok_trials(store, [41.0, 42.0])
    first, second = store.trials(study_id)
    table = [{"trial_id": first.id, "p50_us": 41.0, "shootout_p50_us": 40.0}]
    store.set_winner(study_id, first.id, table)
    study = store.study(study_id)
    assert study.best_trial_id == first.id and study.shootout == table
    store.set_winner(study_id, second.id)  # no table: the stored one stays
    assert store.study(study_id).shootout == table
    store.set_winner(study_id, None)
    assert store.study(study_id).best_trial_id is None


def test_a_published_best_is_served_for_its_kernel_shape_and_environment(store: TrialStore) -> None:
    study_id = _study_with_ok_trials(store, [41.0])
    (trial,) = store.trials(study_id)
    best = store.publish_best(study_id, trial.id, shootout_p50_us=40.0, tflops=3.5)
    assert (best.study_id, best.trial_id, best.config) == (study_id, trial.id, trial.config)
    assert (best.p50_us, best.shootout_p50_us, best.tflops) == (41.0, 40.0, 3.5)
    assert best.max_error == 1.5e-3 and best.ranked_p50_us == 40.0
    assert (best.kernel, best.shape_key, best.dims, best.fingerprint) == (
        "attention", SHAPE.key, SHAPE.dims, FINGERPRINT,
    )  # fmt: skip
    assert store.best("attention", SHAPE.key, FINGERPRINT) == best
    assert store.best("attention", SHAPE.key, fingerprint_hash({**ENV, "gpu": "H200"})) is None
    assert store.best("matmul", SHAPE.key, FINGERPRINT) is None
    assert store.bests_of_kernel("attention", FINGERPRINT) == [best]
    assert store.bests_of_kernel("attention", "another-environment") == []


def test_a_slower_study_never_replaces_a_faster_published_best(store: TrialStore) -> None:
    fast_study = _study_with_ok_trials(store, [50.0])
    slow_study = _study_with_ok_trials(store, [40.0, 70.0])
    (fast,) = store.trials(fast_study)
    slow, slower = store.trials(slow_study)

    def served_after(study_id: int, trial: TrialRecord, shootout: float | None) -> int:
        returned = store.publish_best(study_id, trial.id, shootout, 1.0)
        served = store.best("attention", SHAPE.key, FINGERPRINT)
        assert served is not None and served == returned
        return served.trial_id

    assert served_after(fast_study, fast, 45.0) == fast.id
    # The other study's winner is ranked by its shoot-out p50 (60 µs): 45 µs stays served.
    assert served_after(slow_study, slow, 60.0) == fast.id
    assert served_after(slow_study, slower, None) == fast.id
    # Faster than what is served: replaces it; a study may always replace its own best.
    assert served_after(slow_study, slow, 44.0) == slow.id
    assert served_after(slow_study, slower, None) == slower.id


def test_bests_of_kernel_list_every_shape_of_one_environment(store: TrialStore) -> None:
    wide = Shape(None, {"B": 4, "S": 128, "causal": True, "dtype": "float16"})
    for spec in (SPEC, replace(SPEC, shape=wide), replace(SPEC, environment={**ENV, "gpu": "B"})):
        study_id = _study_with_ok_trials(store, [10.0], spec)
        store.publish_best(study_id, store.trials(study_id)[0].id, None, None)
    bests = store.bests_of_kernel("attention", FINGERPRINT)
    assert sorted((b.shape_key, b.tflops) for b in bests) == sorted(
        [(SHAPE.key, None), (wide.key, None)]
    )
    assert {b.dims["B"] for b in bests} == {1, 4}


# --- searches recorded now and run later ----------------------------------------------------

RECIPE = {"recipe": {"args": {"n": 300}, "nested": [1, 2]}}


def test_a_search_recorded_to_run_later_is_pending_until_started(store: TrialStore) -> None:
    pending = store.record_pending(SPEC, "recorded, not run yet", RECIPE)
    assert (pending.state, pending.note, pending.seed, pending.budget) == (
        "pending", "recorded, not run yet", 7, 10,
    )  # fmt: skip
    assert pending.settings == {**SPEC.settings, "restrict": None, **RECIPE}
    assert (pending.kernel, pending.dims, pending.environment) == ("attention", SHAPE.dims, ENV)
    assert pending.fingerprint == FINGERPRINT and pending.finished_at is None
    assert store.study(pending.id) == pending and store.trials(pending.id) == []
    # Recorded once: a pending study with the extra settings is left as it is.
    again = store.record_pending(replace(SPEC, seed=1), "again", {"recipe": {"other": 1}})
    assert again == pending
    assert store.waiting_studies("evolution") == [pending]

    started = store.start_pending(replace(SPEC, seed=3, budget=5), "run now", keep=())
    assert started.id == pending.id and store.trials(started.id) == []
    assert (started.state, started.seed, started.budget, started.note) == (
        "running",
        3,
        5,
        "run now",
    )
    assert started.settings == pending.settings
    with pytest.raises(StudyBusyError):  # marked alive
        store.open_study(SPEC)
    assert store.waiting_studies("evolution") == []
    assert store.record_pending(SPEC, "missed meanwhile", RECIPE) == started  # it runs


def test_a_pending_study_gets_the_extra_settings_it_lacks(store: TrialStore) -> None:
    bare = store.record_pending(SPEC, "recorded", {})
    assert "recipe" not in bare.settings
    completed = store.record_pending(SPEC, "recorded", RECIPE)
    assert completed.id == bare.id and completed.settings == {**bare.settings, **RECIPE}
    kept = store.record_pending(SPEC, "recorded", {"recipe": "newer"})
    assert kept.settings["recipe"] == RECIPE["recipe"]  # what it has keeps its value
    assert store.study(bare.id) == kept


def test_a_stopped_search_waits_and_keeps_what_start_pending_keeps(store: TrialStore) -> None:
    pending = store.record_pending(SPEC, "recorded", {**RECIPE, "other": 1})
    store.start_pending(SPEC, "run", keep=("recipe",))
    stopped = store.end_study(pending.id, "interrupted")
    assert store.waiting_studies("evolution") == [stopped]
    # Stopped with the extra settings: it waits as it is; nothing new is recorded.
    assert store.record_pending(SPEC, "missed again", RECIPE) == stopped

    rerun = store.start_pending(replace(SPEC, seed=4), "run again", keep=("recipe", "absent"))
    assert rerun.id != stopped.id and (rerun.state, rerun.seed, rerun.note) == (
        "running", 4, "run again",
    )  # fmt: skip
    assert rerun.settings == {**SPEC.settings, "restrict": None, **RECIPE}  # not "other"
    assert store.study(stopped.id) == stopped
    store.end_study(rerun.id, "finished")
    assert store.waiting_studies("evolution") == []
    assert store.record_pending(SPEC, "missed", RECIPE).id == rerun.id  # finished: left


def test_a_search_stopped_without_the_extra_settings_is_recorded_again(store: TrialStore) -> None:
    started = store.start_pending(SPEC, "run without recording first", keep=("recipe",))
    assert started.state == "running" and "recipe" not in started.settings
    stopped = store.end_study(started.id, "interrupted")
    assert store.waiting_studies("evolution") == [stopped]
    pending = store.record_pending(SPEC, "recorded", RECIPE)
    assert pending.id != stopped.id and pending.state == "pending"
    assert pending.settings["recipe"] == RECIPE["recipe"]
    assert store.waiting_studies("evolution") == [pending]  # the newest of its search
    assert store.start_pending(SPEC, "run", keep=()).id == pending.id


def test_waiting_studies_are_the_newest_of_each_search_oldest_first(store: TrialStore) -> None:
    wide = replace(SPEC, shape=Shape(None, {"B": 4, "S": 128, "causal": True, "dtype": "float16"}))
    matmul = replace(SPEC, kernel="matmul")
    first = store.record_pending(wide, "recorded", {})
    second = store.record_pending(matmul, "recorded", {})
    third = store.record_pending(SPEC, "recorded", {})
    store.record_pending(replace(SPEC, strategy="random"), "recorded", {})
    finished = store.open_study(replace(SPEC, environment={**ENV, "gpu": "B"})).study
    store.end_study(finished.id, "finished")
    assert store.waiting_studies("evolution") == [first, second, third]
    assert store.waiting_studies("evolution", "matmul") == [second]
    assert store.waiting_studies("evolution", "unknown") == []
    assert store.has_kernel("matmul") and not store.has_kernel("unknown")


# --- a whole search --------------------------------------------------------------------------


class CostModelEvaluator(BatchSubmission):
    """A test double of the Evaluator protocol: nothing is compiled or run.

    Each config's latency is a made-up, deterministic function of the config (its hash),
    configs with BLOCK_N == 128 and 4 warps are reported `wrong_result`, and results come
    back in reverse order, as a pool finishing out of order would yield them.
    """

    def environment(self) -> dict[str, Any]:
        return {
            "gpu": "test double (no device)",
            "driver": None,
            "cuda": None,
            "torch": "n/a",
            "triton": "n/a",
            "kernel_source_hash": "test-double",
            "interpreted": True,
        }

    def _answer(self, request: TrialRequest, scale: float = 1.0) -> TrialResult:
        config = request.config
        if config.get("BLOCK_N") == 128 and config.get("num_warps") == 4:
            return TrialResult(request.trial_id, TrialStatus.WRONG_RESULT, max_error=0.5,
                               error="max error 0.5 over tolerance")  # fmt: skip
        p50 = (20.0 + int(config_hash(config)[:4], 16) / 1000.0) * scale
        return TrialResult(
            request.trial_id, TrialStatus.OK, p50_us=p50, p20_us=p50 * 0.98, p80_us=p50 * 1.02,
            n_runs=3, samples_us=[p50 * 0.98, p50, p50 * 1.02], max_error=1e-3,
            compile_s=0.01, run_s=0.01,
        )  # fmt: skip

    def evaluate(self, requests: Sequence[TrialRequest]) -> Iterator[TrialResult]:
        for request in reversed(list(requests)):
            yield self._answer(request)

    def shootout(self, requests: Sequence[TrialRequest], rounds: int) -> list[TrialResult]:
        return [self._answer(r, scale=0.99) for r in requests]

    def close(self) -> None:
        return None


def _history(store: TrialStore, study_id: int) -> list[tuple[int, str, str, float | None]]:
    return [(t.number, t.config_hash, t.status, t.p50_us) for t in store.trials(study_id)]


def test_a_search_stores_and_resumes_the_same_on_every_store(store: TrialStore) -> None:
    space = load_space("attention")
    shape = space.shape("tiny")
    options = SearchOptions(strategy="random", budget=10, seed=3, shootout_rounds=2)
    reference = MemoryTrialStore()
    expected = run_search(reference, space, shape, CostModelEvaluator(), options)
    summary = run_search(store, space, shape, CostModelEvaluator(), options)

    assert summary.state == "finished" and summary.total_trials == 10 and summary.published
    # Same strategy, seed and evaluator: the same trials, outcomes and winner on every store.
    history = _history(store, summary.study_id)
    assert history == _history(reference, expected.study_id)
    assert {status for _, _, status, _ in history} <= {"ok", "wrong_result", "invalid"}
    assert summary.best_config == expected.best_config
    assert summary.best_shootout_p50_us == pytest.approx(expected.best_shootout_p50_us)
    fingerprint = fingerprint_hash(CostModelEvaluator().environment())
    best = store.best("attention", shape.key, fingerprint)
    assert best is not None and best.config == summary.best_config
    assert best.study_id == summary.study_id
    assert store.study(summary.study_id).state == "finished"

    # A rerun with a larger budget resumes the study and adds to it.
    more = run_search(store, space, shape, CostModelEvaluator(), replace(options, budget=14))
    assert more.resumed and more.study_id == summary.study_id
    assert more.trials_run == 4 and more.total_trials == 14
    assert [n for n, *_ in _history(store, summary.study_id)] == list(range(14))
    assert more.published  # a study may replace its own best
