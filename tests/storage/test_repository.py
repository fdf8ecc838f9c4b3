"""Repository queries beyond the `TrialStore` contract (test_trial_store.py): get-or-create,
the served-best filters and the service's read queries, on SQLite and on PostgreSQL when a
server is given (tests/storage/conftest.py)."""

from __future__ import annotations

import pytest

from evotune.errors import DatabaseError
from evotune.records import TrialResult, TrialStatus
from evotune.space import Shape
from evotune.storage import Database, open_database, repository

ENV = {
    "gpu": "NVIDIA H100",
    "driver": "580",
    "cuda": "13.0",
    "torch": "2.11",
    "triton": "3.6.0",
    "kernel_source_hash": "abc",
    "interpreted": False,
}
MISSION = Shape("mission", {"S": 512})


@pytest.fixture
def db(sql_db: Database) -> Database:
    """SQLite, and PostgreSQL when a server is given (tests/storage/conftest.py)."""
    return sql_db


def _study(db: Database, env: dict = ENV, shape: Shape = MISSION) -> int:
    with db.session() as s:
        kernel = repository.get_or_create_kernel(s, "attention")
        shape_row = repository.get_or_create_shape(s, kernel, shape)
        environment = repository.get_or_create_environment(s, env)
        return repository.add_study(s, kernel, shape_row, environment, "evolution", {}, 0, 10).id


def _trial(
    db: Database,
    study_id: int,
    number: int,
    p50: float | None,
    status: TrialStatus = TrialStatus.OK,
) -> int:
    with db.session() as s:
        study = repository.get_study(s, study_id)
        trial = repository.add_running_trial(
            s, study, number, {"BLOCK": number}, f"h{number}", seed=number, generation=0,
            parents=[], operator="seed",
        )  # fmt: skip
        result = TrialResult(
            trial.id, status, p50_us=p50, p20_us=p50, p80_us=p50, n_runs=3,
            samples_us=[p50] * 3 if p50 else [],
        )  # fmt: skip
        repository.finish_trial(s, trial, result)
        return trial.id


def _publish(db: Database, study_id: int, trial_id: int, shootout: float | None = None) -> None:
    with db.session() as s:
        study = repository.get_study(s, study_id)
        trial = repository.get_trial(s, trial_id)
        repository.publish_best(s, study, trial, shootout_p50_us=shootout, tflops=1.0)


def test_get_or_create_is_idempotent(db: Database) -> None:
    with db.session() as s:
        a = repository.get_or_create_environment(s, ENV)
        b = repository.get_or_create_environment(s, dict(ENV))
        assert a.id == b.id
        c = repository.get_or_create_environment(s, {**ENV, "driver": "581"})
        assert c.id != a.id
        kernel = repository.get_or_create_kernel(s, "attention")
        assert repository.get_or_create_kernel(s, "attention").id == kernel.id
        adhoc = repository.get_or_create_shape(s, kernel, Shape(None, {"S": 512}))
        # The same dims under a name: the same shape, which now has that name.
        named = repository.get_or_create_shape(s, kernel, MISSION)
        assert named.id == adhoc.id and named.name == "mission"


def test_best_config_is_per_fingerprint_and_never_interpreted_by_default(db: Database) -> None:
    gpu_study = _study(db)
    cpu_study = _study(db, {**ENV, "gpu": "cpu", "interpreted": True})
    gpu_trial = _trial(db, gpu_study, 0, 50.0)
    cpu_trial = _trial(db, cpu_study, 0, 9000.0)
    _publish(db, gpu_study, gpu_trial)
    _publish(db, cpu_study, cpu_trial)
    with db.session() as s:
        best = repository.best_config(s, "attention", MISSION.key)
        assert best is not None and best.trial_id == gpu_trial
        assert repository.best_config(s, "attention", MISSION.key, gpu="NVIDIA H200") is None
        fp = repository.fingerprint_hash(ENV)
        assert repository.best_config(s, "attention", MISSION.key, fingerprint=fp) is not None
        assert repository.best_config(s, "attention", MISSION.key, fingerprint="nope") is None
        only_cpu = repository.best_config(
            s, "attention", MISSION.key, gpu="cpu", include_interpreted=True
        )
        assert only_cpu is not None and only_cpu.trial_id == cpu_trial
        assert repository.tuned_gpus_by_shape(s) == {("attention", MISSION.key): [ENV["gpu"]]}
        source = repository.best_config(s, "attention", MISSION.key, kernel_source_hash="old")
        assert source is None


def test_the_services_read_queries(db: Database) -> None:
    study_id = _study(db)
    ok_id = _trial(db, study_id, 0, 41.25)
    _trial(db, study_id, 1, 12.0, TrialStatus.WRONG_RESULT)
    _trial(db, study_id, 2, 45.0)
    other_study = _study(db, shape=Shape(None, {"S": 128}))
    with db.session() as s:
        assert repository.count_trials(s, study_id) == 3
        assert repository.count_trials(s, study_id, status="ok") == 2
        assert repository.count_trials_matching(s, study_id, after=0) == 2
        assert [t.number for t in repository.list_trials(s, study_id, after=0, limit=1)] == [1]
        fastest = repository.fastest_trial(s, study_id)
        assert fastest is not None and fastest.id == ok_id
        counts, best_p50 = repository.trial_stats(s, [study_id, other_study])[study_id]
        assert counts == {"ok": 2, "wrong_result": 1} and best_p50 == 41.25
        assert repository.trial_stats(s, [other_study])[other_study] == ({}, None)
        listed = repository.list_studies(s, kernel="attention")
        assert [st.id for st in listed] == [other_study, study_id]  # newest first
        assert repository.list_studies(s, kernel="other") == []
        assert repository.count_studies(s, "attention") == 2
        assert repository.ok_trial_points(s, study_id) == [({"BLOCK": 0}, 41.25),
                                                          ({"BLOCK": 2}, 45.0)]  # fmt: skip
        assert repository.published_best_of_study(s, study_id) is None
    _publish(db, study_id, ok_id, shootout=40.0)
    with db.session() as s:
        published = repository.published_best_of_study(s, study_id)
        assert published is not None and published.shootout_p50_us == 40.0
        (served,) = repository.served_bests(s, "attention")
        assert served.trial_id == ok_id and served.shape.key == MISSION.key


@pytest.mark.parametrize(
    "url", ["sqlite:////nonexistent-dir/x.db", "nosuchdriver://x", "postgresql+nodriver://u@h/d"]
)
def test_bad_database_urls_are_user_errors(url: str) -> None:
    with pytest.raises(DatabaseError, match="cannot"):
        open_database(url)
