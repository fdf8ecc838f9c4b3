"""RayEvaluator on a local Ray cluster: CPU-only actors, each hosting an interpreter pool.

Trials of the attention kernel (shape tiny) run on the actors; an actor killed mid-trial
makes the trial it had accepted `crashed` and the next one succeeds on its replacement; an
actor that died while idle loses no trial; a segfaulting config is caught by the actor's own pool (the actor
survives); close() kills the actors. Skipped where the `ray` package is not installed.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evotune.errors import UserError
from evotune.records import TrialRequest, TrialResult, TrialStatus
from evotune.runner import SearchOptions, run_search
from evotune.source_hash import kernel_source_hash
from evotune.space import load_space
from evotune.storage import SqlTrialStore, open_database, repository

from .helpers import FAULT_MODULE, fault_request

ray = pytest.importorskip(
    "ray", reason="the ray package is not installed (pip install 'evotune[ray]')"
)

from evotune.worker import ray_pool  # noqa: E402
from evotune.worker.ray_pool import RayEvaluator, import_ray  # noqa: E402

SPACE = load_space("attention")
SHAPE = SPACE.shape("tiny")
TOLERANCE = SPACE.tolerance(SHAPE.dims).model_dump()


def _request(trial_id: int, **config: Any) -> TrialRequest:
    return TrialRequest(
        trial_id=trial_id,
        kernel=SPACE.module,
        dims=dict(SHAPE.dims),
        config={**SPACE.default_config(), **config},
        seed=100 + trial_id,
        tolerance=dict(TOLERANCE),
        timeout_s=60.0,
        min_runs=3,
        max_runs=3,
    )


def _assert_ok(result: TrialResult) -> None:
    assert result.status is TrialStatus.OK, result.error
    assert result.p50_us is not None and result.p50_us > 0
    assert result.max_error is not None and result.max_error < TOLERANCE["atol"]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    # Three logical CPUs: the shared two-actor evaluator plus the one-actor fault evaluator.
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def evaluator(local_ray: None) -> Iterator[RayEvaluator]:
    ev = RayEvaluator(SPACE.module, interpreted=True, address=None, num_workers=2)
    try:
        yield ev
    finally:
        ev.close()


def _dies_within(actor: Any, seconds: float) -> bool:
    """The actor stops answering (ray.kill takes effect asynchronously)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ray.get(actor.ready.remote(), timeout=seconds)
        except ray.exceptions.RayActorError:
            return True
        time.sleep(0.2)
    return False


def _live_actors(ev: RayEvaluator) -> list[Any]:
    return [a for a in ev.actors if a is not None]


def test_attention_trials_run_on_the_actors(evaluator: RayEvaluator) -> None:
    env = evaluator.environment()
    assert env["interpreted"] is True
    assert env["kernel_source_hash"] == kernel_source_hash(SPACE.module)
    assert len(evaluator.hosts) == 2
    # Interpreter pools measure one trial at a time and have no compile processes.
    assert evaluator.workers == 2 and evaluator.capacity == 2
    requests = [_request(1), _request(2, BLOCK_M=64), _request(3, BLOCK_N=32)]
    results = list(evaluator.evaluate(requests))
    assert sorted(r.trial_id for r in results) == [1, 2, 3]
    for result in results:
        _assert_ok(result)


def test_actor_killed_mid_trial_crashes_that_trial_only(evaluator: RayEvaluator) -> None:
    killed: list[Any] = []

    def kill_when_started() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if 11 in evaluator.running():
                slot = next(s for s in evaluator._slots if 11 in s.pending)
                killed.append(slot.actor)
                ray.kill(slot.actor)
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_when_started)
    killer.start()
    (lost,) = list(evaluator.evaluate([_request(11)]))
    killer.join()
    assert killed, "the trial never showed as running"
    assert lost.status is TrialStatus.CRASHED
    assert lost.p50_us is None
    assert "lost during this trial" in (lost.error or "")
    # The search goes on: the next trials succeed, on a replacement and the other actor.
    results = list(evaluator.evaluate([_request(12, BLOCK_M=64), _request(13)]))
    for result in results:
        _assert_ok(result)
    live = _live_actors(evaluator)
    assert len(live) == 2 and killed[0] not in live


def test_each_actor_is_fed_as_many_requests_as_its_pool_takes(evaluator: RayEvaluator) -> None:
    # A GPU actor's pool reports its GPU worker plus compile processes; pretend to that here.
    for slot in evaluator._slots:
        slot.capacity = 3
    most: list[int] = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            most[0] = max([most[0]] + [len(s.pending) for s in list(evaluator._slots)])
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = list(
            evaluator.evaluate([_request(60 + i, BLOCK_N=32 * (1 + i % 2)) for i in range(6)])
        )
    finally:
        stop.set()
        watcher.join()
        for slot in evaluator._slots:
            slot.capacity = 1
    assert sorted(r.trial_id for r in results) == list(range(60, 66))
    for result in results:
        _assert_ok(result)
    assert most[0] == 3


def test_actor_dead_while_idle_loses_no_trial(evaluator: RayEvaluator) -> None:
    victim = _live_actors(evaluator)[0]
    ray.kill(victim)
    time.sleep(1.0)  # Ray knows it is dead before the next request reaches it
    (result,) = list(evaluator.evaluate([_request(21, BLOCK_N=32)]))
    _assert_ok(result)  # the request went back to the queue and ran elsewhere
    assert victim not in _live_actors(evaluator)


def test_shootout_returns_the_finalists_in_request_order(evaluator: RayEvaluator) -> None:
    requests = [_request(31), _request(32, BLOCK_M=64)]
    results = evaluator.shootout(requests, rounds=2)
    assert [r.trial_id for r in results] == [31, 32]
    for result in results:
        _assert_ok(result)


def test_run_search_through_ray(evaluator: RayEvaluator, tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'ray.db'}")
    options = SearchOptions(strategy="evolution", budget=3, seed=5, finalists=2, shootout_rounds=2)
    summary = run_search(SqlTrialStore(db), SPACE, SHAPE, evaluator, options)
    assert summary.state == "finished" and summary.total_trials == 3
    with db.session() as s:
        trials = repository.list_trials(s, summary.study_id)
        assert {t.status for t in trials} <= {"ok", "invalid"}
        assert any(t.status == "ok" and t.p50_us for t in trials)
        assert repository.get_study(s, summary.study_id).environment.interpreted is True
    db.dispose()


def test_pool_on_the_actor_isolates_a_crash_and_close_kills_the_actor(local_ray: None) -> None:
    ev = RayEvaluator(FAULT_MODULE, interpreted=True, address=None, num_workers=1)
    try:
        (actor,) = ev.actors
        crashed = next(iter(ev.evaluate([fault_request(41, "segfault")])))
        # The actor's own pool caught the worker's death; the actor itself lives on.
        assert crashed.status is TrialStatus.CRASHED
        assert "worker died" in (crashed.error or "")
        assert ev.actors == [actor]
        ok = next(iter(ev.evaluate([fault_request(42, "none")])))
        assert ok.status is TrialStatus.OK, ok.error
    finally:
        ev.close()
    assert ev.actors == [None]
    assert _dies_within(actor, 30.0)
    assert ray.is_initialized()  # this process started Ray, not the evaluator


def test_missing_ray_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UserError, match=r"pip install 'evotune\[ray\]'"):
        import_ray()


class _RecordingRay:
    """Stands in for the ray module: records what `init` was given, then fails to connect."""

    def __init__(self) -> None:
        self.init_kwargs: list[dict[str, Any]] = []

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs: Any) -> None:
        self.init_kwargs.append(kwargs)
        raise ConnectionError("no cluster here")


@pytest.mark.parametrize(("address", "dashboard"), [(None, False), ("auto", None)])
def test_a_private_local_ray_starts_without_a_dashboard(
    monkeypatch: pytest.MonkeyPatch, address: str | None, dashboard: bool | None
) -> None:
    fake = _RecordingRay()
    monkeypatch.setattr(ray_pool, "import_ray", lambda: fake)
    with pytest.raises(UserError, match="cannot connect to Ray"):
        RayEvaluator(SPACE.module, interpreted=True, address=address)
    assert fake.init_kwargs[0]["address"] == address
    assert fake.init_kwargs[0].get("include_dashboard") is dashboard
