from __future__ import annotations

from pathlib import Path

import pytest

from evotune.errors import DatabaseError, StudyNotFoundError
from evotune.records import TrialResult, TrialStatus
from evotune.space import Shape
from evotune.storage import Database, Study, open_database, repository

ENV = {
    "gpu": "NVIDIA H100",
    "driver": "580",
    "cuda": "13.0",
    "torch": "2.11",
    "triton": "3.6.0",
    "kernel_source_hash": "abc",
    "interpreted": False,
}


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return open_database(f"sqlite:///{tmp_path / 'r.db'}")


def _study(db: Database, env: dict = ENV, name: str = "mission") -> int:
    with db.session() as s:
        kernel = repository.get_or_create_kernel(s, "attention")
        shape = repository.get_or_create_shape(
            s, kernel, Shape(name, {"S": 512 if name == "mission" else 128})
        )
        environment = repository.get_or_create_environment(s, env)
        study = Study(
            kernel_id=kernel.id,
            shape_id=shape.id,
            environment_id=environment.id,
            strategy="evolution",
            settings={},
            seed=0,
            budget=10,
            interpreted=bool(env["interpreted"]),
        )
        s.add(study)
        s.flush()
        return study.id


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
            s,
            study,
            number,
            {"BLOCK": number},
            f"h{number}",
            seed=number,
            generation=0,
            parents=[],
            operator="seed",
        )
        repository.finish_trial(
            s,
            trial,
            TrialResult(
                trial.id,
                status,
                p50_us=p50,
                p20_us=p50,
                p80_us=p50,
                n_runs=3,
                samples_us=[p50] * 3 if p50 else [],
            ),
        )
        return trial.id


def test_get_or_create_is_idempotent(db: Database) -> None:
    with db.session() as s:
        a = repository.get_or_create_environment(s, ENV)
        b = repository.get_or_create_environment(s, dict(ENV))
        assert a.id == b.id
        c = repository.get_or_create_environment(s, {**ENV, "driver": "581"})
        assert c.id != a.id


def test_failed_trials_store_no_latency(db: Database) -> None:
    study_id = _study(db)
    _trial(db, study_id, 0, 12.0, TrialStatus.WRONG_RESULT)
    with db.session() as s:
        (trial,) = repository.list_trials(s, study_id)
        assert trial.status == "wrong_result"
        assert trial.p50_us is None


def test_interrupted_running_trials_are_claimed_for_a_rerun_once(db: Database) -> None:
    study_id = _study(db)
    with db.session() as s:
        study = repository.get_study(s, study_id)
        repository.add_running_trial(s, study, 0, {"BLOCK": 1}, "h0", 0, 0, [], "seed")
    with db.session() as s:
        rerun, gave_up = repository.claim_interrupted(s, repository.get_study(s, study_id))
        assert [t.attempts for t in rerun] == [2] and gave_up == 0
        assert rerun[0].status == "running"
    with db.session() as s:  # stopped again while it ran: the second stop gives it up
        rerun, gave_up = repository.claim_interrupted(s, repository.get_study(s, study_id))
        assert rerun == [] and gave_up == 1
    with db.session() as s:
        (trial,) = repository.list_trials(s, study_id)
        assert trial.status == "crashed"
        assert "in flight, 2 times" in (trial.error or "")


def test_best_config_is_per_fingerprint_and_never_interpreted_by_default(db: Database) -> None:
    gpu_study = _study(db)
    cpu_study = _study(db, {**ENV, "gpu": "cpu", "interpreted": True})
    gpu_trial = _trial(db, gpu_study, 0, 50.0)
    cpu_trial = _trial(db, cpu_study, 0, 9000.0)
    with db.session() as s:
        for study_id, trial_id in ((gpu_study, gpu_trial), (cpu_study, cpu_trial)):
            study = repository.get_study(s, study_id)
            from evotune.storage import Trial

            repository.publish_best(
                s, study, s.get(Trial, trial_id), shootout_p50_us=None, tflops=1.0
            )
    key = Shape("mission", {"S": 512}).key
    with db.session() as s:
        best = repository.best_config(s, "attention", key)
        assert best is not None and best.trial_id == gpu_trial
        assert repository.best_config(s, "attention", key, gpu="NVIDIA H200") is None
        fp = repository.fingerprint_hash(ENV)
        assert repository.best_config(s, "attention", key, fingerprint=fp) is not None
        assert repository.best_config(s, "attention", key, fingerprint="nope") is None
        only_cpu = repository.best_config(s, "attention", key, gpu="cpu", include_interpreted=True)
        assert only_cpu is not None and only_cpu.trial_id == cpu_trial


def test_a_slower_search_never_replaces_a_faster_published_best(db: Database) -> None:
    from evotune.storage import Trial

    def publish(study_id: int, trial_id: int, shootout: float | None) -> int:
        with db.session() as s:
            study = repository.get_study(s, study_id)
            trial = s.get(Trial, trial_id)
            return repository.publish_best(s, study, trial, shootout, 1.0).trial_id

    fast_study, slow_study = _study(db), _study(db)
    fast = _trial(db, fast_study, 0, 50.0)
    slow, slower = _trial(db, slow_study, 0, 40.0), _trial(db, slow_study, 1, 70.0)
    assert publish(fast_study, fast, 45.0) == fast
    # The other study's winner is ranked by its shoot-out p50 (60 µs): 45 µs stays served.
    assert publish(slow_study, slow, 60.0) == fast
    assert publish(slow_study, slower, None) == fast
    # Faster than what is served: replaces it; a study may always replace its own best.
    assert publish(slow_study, slow, 44.0) == slow
    assert publish(slow_study, slower, None) == slower


def test_unknown_study(db: Database) -> None:
    with db.session() as s, pytest.raises(StudyNotFoundError, match="no study with id 99"):
        repository.get_study(s, 99)


@pytest.mark.parametrize(
    "url", ["sqlite:////nonexistent-dir/x.db", "nosuchdriver://x", "postgresql+nodriver://u@h/d"]
)
def test_bad_database_urls_are_user_errors(url: str) -> None:
    with pytest.raises(DatabaseError, match="cannot"):
        open_database(url)
