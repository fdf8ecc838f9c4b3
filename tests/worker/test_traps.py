"""Configs that are right on their first launch and wrong later, and configs that leave the
worker unfit: each ends with the right status, and the next correct config is measured by a
clean worker (CPU: the Triton interpreter)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from evotune.records import TrialResult, TrialStatus
from evotune.runner import SearchOptions, run_search
from evotune.space import load_space
from evotune.storage import SqlTrialStore, open_database, repository
from evotune.worker.pool import WorkerPool

from .helpers import FAULT_MODULE, fault_request

SPACES = Path(__file__).with_name("spaces")


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    with WorkerPool(FAULT_MODULE, interpreted=True, gpus=None, compile_timeout_s=30.0) as p:
        yield p


def _run(pool: WorkerPool, *requests) -> dict[int, TrialResult]:  # type: ignore[no-untyped-def]
    return {r.trial_id: r for r in pool.evaluate(list(requests))}


def _then_a_good_trial_on_a_fresh_worker(pool: WorkerPool, fault: str) -> TrialResult:
    """Run `fault`, then a correct config; the correct one is ok and ran in a new process."""
    pid = pool.worker_pids[0]
    first = _run(pool, fault_request(1, fault))[1]
    good = _run(pool, fault_request(2, "none"))[2]
    assert good.status is TrialStatus.OK, good.error
    assert pool.worker_pids[0] != pid, "the next config must get a clean worker"
    return first


def test_a_queue_that_is_never_reset_is_wrong_after_launch_one(pool: WorkerPool) -> None:
    result = _then_a_good_trial_on_a_fresh_worker(pool, "stale_queue")
    assert result.status is TrialStatus.WRONG_RESULT
    assert result.p50_us is None
    error = result.error or ""
    assert "correct on launch 1, wrong on launch 2" in error, error
    assert "unwritten" in error


def test_a_config_wrong_every_fourth_launch_is_caught_in_timing(pool: WorkerPool) -> None:
    result = _then_a_good_trial_on_a_fresh_worker(pool, "every_nth")
    assert result.status is TrialStatus.WRONG_RESULT
    error = result.error or ""
    assert "correct on launch 1, wrong on launch 4" in error, error
    assert "a timed run" in error and "state carried between launches?" in error


def test_a_config_right_on_its_first_inputs_only_fails_the_gate(pool: WorkerPool) -> None:
    result = _then_a_good_trial_on_a_fresh_worker(pool, "first_inputs_only")
    assert result.status is TrialStatus.WRONG_RESULT
    error = result.error or ""
    assert "wrong on launch 2 (input set 1, the gate)" in error, error
    assert "or right only on the inputs it saw first?" in error


def test_a_leak_fails_its_trial_and_the_next_config_gets_a_clean_worker(pool: WorkerPool) -> None:
    result = _then_a_good_trial_on_a_fresh_worker(pool, "leak")
    assert result.status is TrialStatus.OUT_OF_RESOURCES
    assert "leaked host memory" in (result.error or "")
    # Several correct configs after it: none is charged with the leak.
    later = _run(pool, *(fault_request(10 + i, "none") for i in range(3)))
    assert all(r.status is TrialStatus.OK for r in later.values())


def test_a_flood_of_output_neither_blocks_nor_kills_the_worker(pool: WorkerPool) -> None:
    pid = pool.worker_pids[0]
    start = time.monotonic()
    result = _run(pool, fault_request(1, "flood", timeout_s=60.0))[1]
    assert result.status is TrialStatus.OK, result.error
    assert time.monotonic() - start < 60
    assert pool.worker_pids[0] == pid  # a correct config that prints is no reason to go
    assert _run(pool, fault_request(2, "none"))[2].status is TrialStatus.OK


def test_an_ok_config_keeps_its_worker(pool: WorkerPool) -> None:
    _run(pool, fault_request(1, "none"))
    pid = pool.worker_pids[0]
    assert _run(pool, fault_request(2, "none"))[2].status is TrialStatus.OK
    assert pool.worker_pids[0] == pid


def test_a_search_among_traps_publishes_a_correct_config(tmp_path: Path) -> None:
    """Every trap is faster than the honest configs once it stops working; the search
    stores each as wrong (or leaking) and publishes an honest one."""
    space = load_space("faulty", SPACES)
    shape = space.shape("tiny")
    traps = ("stale_queue", "every_nth", "first_inputs_only", "leak")
    restrict = f"BLOCK == 1024 and fault in {[*traps, 'none', 'flood']}"
    db = open_database(f"sqlite:///{tmp_path / 'traps.db'}")
    with WorkerPool(FAULT_MODULE, interpreted=True, gpus=None) as pool:
        options = SearchOptions(strategy="grid", budget=6, restrict=restrict)
        summary = run_search(SqlTrialStore(db), space, shape, pool, options)
    assert summary.total_trials == 6 and summary.state == "finished"
    with db.session() as s:
        trials = repository.study_trials(s, repository.get_study(s, summary.study_id))
        status = {t.config["fault"]: t.status for t in trials}
        best = repository.best_config(s, "faulty", shape.key, include_interpreted=True)
        assert best is not None and best.config["fault"] in ("none", "flood")
    assert status == {
        "none": "ok",
        "flood": "ok",
        "stale_queue": "wrong_result",
        "every_nth": "wrong_result",
        "first_inputs_only": "wrong_result",
        "leak": "out_of_resources",
    }
