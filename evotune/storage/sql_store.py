"""`SqlTrialStore`: the `TrialStore` of a SQLAlchemy database (SQLite, PostgreSQL).

Each call is one transaction through the repository functions (the only code that builds
queries or edits rows); rows are turned into frozen records before the session closes, so no
ORM object leaves this module.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from typing import Any, overload

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from evotune.errors import StudyBusyError
from evotune.records import TrialResult, TrialStatus
from evotune.storage import heartbeat, repository
from evotune.storage.engine import Database
from evotune.storage.models import BestConfig, Environment, KernelRow, ShapeRow, Study, Trial
from evotune.storage.trial_store import (
    PENDING,
    BestRecord,
    NewTrial,
    OpenedStudy,
    StudyRecord,
    StudySpec,
    TrialRecord,
)

__all__ = ["SqlTrialStore", "best_record", "study_record", "trial_record"]


class SqlTrialStore:
    """Implements `evotune.storage.trial_store.TrialStore` over a `Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def open_study(self, spec: StudySpec, fresh: bool = False) -> OpenedStudy:
        with self.db.session() as session:
            # Two processes starting the same search at once must not both pick or create it.
            repository.lock_searches(session)
            rows = _search_rows(session, spec)
            study = None if fresh else _newest(session, spec, rows)
            resumed = study is not None
            if study is None:
                study = _add_study(session, spec, rows, {})
            else:
                _refuse_if_busy(study)
                repository.restart_study(session, study, spec.budget)
            heartbeat.stamp(study)  # alive from now on, before the beating thread's first beat
            rerun, _gave_up = repository.claim_interrupted(session, study)
            return OpenedStudy(study_record(study), resumed, [trial_record(t) for t in rerun])

    def keep_alive(self, study_id: int) -> AbstractContextManager[None]:
        return _beating(self.db, study_id)

    def study(self, study_id: int) -> StudyRecord:
        with self.db.session() as session:
            return study_record(repository.get_study(session, study_id))

    def trials(self, study_id: int, status: str | None = None) -> list[TrialRecord]:
        with self.db.session() as session:
            repository.get_study(session, study_id)  # an unknown id is an error, not no trials
            rows = repository.list_trials(session, study_id, status=status, limit=None)
            return [trial_record(t) for t in rows]

    def add_trials(self, study_id: int, trials: Sequence[NewTrial]) -> list[TrialRecord]:
        with self.db.session() as session:
            study = repository.get_study(session, study_id)
            stored: list[Trial] = []
            for new in trials:
                try:
                    trial = repository.add_running_trial(
                        session, study, new.number, new.config, new.config_hash, new.seed,
                        new.generation, new.parents, new.operator,
                    )  # fmt: skip
                except IntegrityError:
                    # Another process stored this config first: it took the study over while
                    # this one ran (from another host, after the heartbeat's lease ran out).
                    # The batch is rolled back with this session.
                    raise StudyBusyError(
                        f"study {study_id} is being searched by another process as well; "
                        "stopping this one (its stored trials stay)"
                    ) from None
                if new.refused is not None:
                    refusal = TrialResult(trial.id, TrialStatus.INVALID, error=new.refused)
                    repository.finish_trial(session, trial, refusal)
                stored.append(trial)
            return [trial_record(t) for t in stored]

    def finish_trial(self, result: TrialResult) -> TrialRecord:
        with self.db.session() as session:
            trial = repository.get_trial(session, result.trial_id)
            repository.finish_trial(session, trial, result)
            return trial_record(trial)

    def record_shootout(self, trial_id: int, p50_us: float) -> TrialRecord:
        with self.db.session() as session:
            trial = repository.get_trial(session, trial_id)
            repository.record_shootout(session, trial, p50_us)
            return trial_record(trial)

    def fail_finalist(self, result: TrialResult) -> TrialRecord:
        with self.db.session() as session:
            trial = repository.get_trial(session, result.trial_id)
            repository.fail_finalist(session, trial, result)
            return trial_record(trial)

    def set_winner(
        self,
        study_id: int,
        trial_id: int | None,
        shootout: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        table = None if shootout is None else [dict(row) for row in shootout]
        with self.db.session() as session:
            study = repository.get_study(session, study_id)
            repository.set_winner(session, study, trial_id, table)

    def publish_best(
        self, study_id: int, trial_id: int, shootout_p50_us: float | None, tflops: float | None
    ) -> BestRecord:
        with self.db.session() as session:
            study = repository.get_study(session, study_id)
            trial = repository.get_trial(session, trial_id)
            return best_record(
                repository.publish_best(session, study, trial, shootout_p50_us, tflops)
            )

    def best(self, kernel: str, shape_key: str, fingerprint: str) -> BestRecord | None:
        with self.db.session() as session:
            row = repository.best_config(
                session, kernel, shape_key, fingerprint=fingerprint, include_interpreted=True
            )
            return None if row is None else best_record(row)

    def bests_of_kernel(self, kernel: str, fingerprint: str) -> list[BestRecord]:
        with self.db.session() as session:
            rows = repository.best_configs_of_kernel(session, kernel, fingerprint)
            return [best_record(row) for row in rows]

    def end_study(self, study_id: int, state: str) -> StudyRecord:
        with self.db.session() as session:
            study = repository.get_study(session, study_id)
            repository.end_study(session, study, state)
            return study_record(study)

    def record_pending(
        self, spec: StudySpec, note: str, extra_settings: Mapping[str, Any]
    ) -> StudyRecord:
        extra = dict(extra_settings)
        with self.db.session() as session:
            # Two processes missing the same search at once must record it once.
            repository.lock_searches(session)
            rows = _search_rows(session, spec)
            study = _newest(session, spec, rows)
            if study is None or (_stopped(study) and not extra.keys() <= study.settings.keys()):
                study = _add_study(session, spec, rows, extra, state=PENDING, note=note)
            elif study.state == PENDING:
                repository.add_missing_settings(session, study, extra)
            return study_record(study)

    def start_pending(self, spec: StudySpec, note: str, keep: Collection[str]) -> StudyRecord:
        with self.db.session() as session:
            repository.lock_searches(session)
            rows = _search_rows(session, spec)
            newest = _newest(session, spec, rows)
            if newest is not None and newest.state == PENDING:
                study = newest
                repository.claim_pending(session, study, spec.seed, spec.budget, note)
            else:
                old = {} if newest is None else newest.settings
                kept = {key: old[key] for key in keep if key in old}
                study = _add_study(session, spec, rows, kept, note=note)
            heartbeat.stamp(study)  # alive from now on, before the beating thread's first beat
            return study_record(study)

    def waiting_studies(self, strategy: str, kernel: str | None = None) -> list[StudyRecord]:
        states = (PENDING, "interrupted", "running")
        with self.db.session() as session:
            studies = repository.newest_studies(session, strategy, states, kernel)
            return [study_record(s) for s in studies if s.state == PENDING or _stopped(s)]

    def has_kernel(self, kernel: str) -> bool:
        with self.db.session() as session:
            return repository.has_kernel(session, kernel)


_SearchRows = tuple[KernelRow, ShapeRow, Environment]


def _search_rows(session: Session, spec: StudySpec) -> _SearchRows:
    """The kernel, shape and environment rows of a search (created where missing)."""
    kernel = repository.get_or_create_kernel(session, spec.kernel)
    shape = repository.get_or_create_shape(session, kernel, spec.shape)
    return kernel, shape, repository.get_or_create_environment(session, dict(spec.environment))


def _newest(session: Session, spec: StudySpec, rows: _SearchRows) -> Study | None:
    """The study a rerun of `spec` resumes."""
    kernel, shape, environment = rows
    return repository.resumable_study(
        session, kernel, shape, environment, spec.strategy, spec.replay, spec.restrict
    )


def _add_study(
    session: Session,
    spec: StudySpec,
    rows: _SearchRows,
    extra_settings: Mapping[str, Any],
    state: str = "running",
    note: str | None = None,
) -> Study:
    kernel, shape, environment = rows
    settings = {**spec.settings, "restrict": spec.restrict, **extra_settings}
    return repository.add_study(
        session, kernel, shape, environment, spec.strategy, settings, spec.seed, spec.budget,
        spec.replay, state=state, note=note,
    )  # fmt: skip


def _stopped(study: Study) -> bool:
    """Interrupted, or `running` with no live process behind it."""
    return study.state == "interrupted" or (
        study.state == "running" and not heartbeat.is_alive(study)
    )


def _refuse_if_busy(study: Study) -> None:
    if not heartbeat.is_alive(study):
        return
    raise StudyBusyError(
        f"study {study.id} is being searched by process {study.runner_pid} on "
        f"{study.runner_host}; wait for it to finish, or start a separate study with --fresh"
    )


@contextmanager
def _beating(db: Database, study_id: int) -> Iterator[None]:
    beat = heartbeat.start(db, study_id)
    try:
        yield
    finally:
        beat.stop()


@overload
def _utc(value: datetime) -> datetime: ...
@overload
def _utc(value: None) -> None: ...
def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; evotune stores UTC, so records say so."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def study_record(study: Study) -> StudyRecord:
    return StudyRecord(
        id=study.id,
        kernel=study.kernel.name,
        shape_key=study.shape.key,
        dims=dict(study.shape.dims),
        fingerprint=study.environment.fingerprint_hash,
        environment=dict(study.environment.data),
        strategy=study.strategy,
        settings=dict(study.settings),
        seed=study.seed,
        budget=study.budget,
        state=study.state,
        interpreted=study.interpreted,
        replay=study.replay,
        best_trial_id=study.best_trial_id,
        shootout=None if study.shootout is None else [dict(row) for row in study.shootout],
        note=study.note,
        finished_at=_utc(study.finished_at),
    )


def trial_record(trial: Trial) -> TrialRecord:
    return TrialRecord(
        id=trial.id,
        study_id=trial.study_id,
        number=trial.number,
        config=dict(trial.config),
        config_hash=trial.config_hash,
        status=trial.status,
        seed=trial.seed,
        generation=trial.generation,
        parents=tuple(str(p) for p in trial.parents),
        operator=trial.operator,
        p50_us=trial.p50_us,
        p20_us=trial.p20_us,
        p80_us=trial.p80_us,
        n_runs=trial.n_runs,
        # PostgreSQL's json stores NaN and infinities as null (engine._json_finite).
        samples_us=tuple(math.nan if s is None else float(s) for s in trial.samples_us),
        max_error=trial.max_error,
        compile_s=trial.compile_s,
        run_s=trial.run_s,
        error=trial.error,
        shootout_p50_us=trial.shootout_p50_us,
        attempts=trial.attempts,
    )


def best_record(row: BestConfig) -> BestRecord:
    return BestRecord(
        kernel=row.kernel.name,
        shape_key=row.shape.key,
        dims=dict(row.shape.dims),
        fingerprint=row.environment.fingerprint_hash,
        study_id=row.study_id,
        trial_id=row.trial_id,
        config=dict(row.config),
        p50_us=row.p50_us,
        shootout_p50_us=row.shootout_p50_us,
        tflops=row.tflops,
        max_error=row.max_error,
        measured_at=_utc(row.measured_at),
    )
