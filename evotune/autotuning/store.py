"""The decorator's database work, through the same schema and repository as a search.

A decorated kernel is a `kernels` row named `<module>.<qualified name>`; a key's values are a
`shapes` row; the device and the kernel's source hash are an `environments` row. A launch
that finds no published best records a **pending** study (state `pending`, no trials), once
per (kernel, shape, environment); tuning in-process turns it into a `running` study with its
trials, and publishes the winner into `best_configs` as a search does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evotune.errors import UserError
from evotune.fingerprint import fingerprint_hash
from evotune.records import Config, TrialResult
from evotune.search.base import Candidate
from evotune.search.registry import default_settings
from evotune.space import Shape
from evotune.storage import Database, Study, Trial, heartbeat, open_database, repository
from evotune.storage.models import Environment, KernelRow, ShapeRow, utcnow

__all__ = ["PENDING", "STRATEGY", "Target", "TuningStore", "check_store", "open_store"]

PENDING = "pending"
STRATEGY = "evolution"
PENDING_NOTE = "evotune.autotune: a launch found no published best; not tuned yet"
TUNED_NOTE = "evotune.autotune: tuned in-process on the arguments of one call"


@dataclass(frozen=True)
class Target:
    """What is tuned: the kernel's name, the key's values, and the environment."""

    kernel: str
    shape: Shape
    environment: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return fingerprint_hash(self.environment)


def check_store(store: str | None) -> None:
    """Refuse what cannot be a store: the evotune service's URL (its REST API has no writes
    for trials, and `/v1/best` knows only the kernels of its space files)."""
    if store is not None and store.startswith(("http://", "https://")):
        raise UserError(
            f"store {store!r}: the evotune service cannot be a store for evotune.autotune yet; "
            "give the database URL it serves from (e.g. sqlite:///tune.db)"
        )


def open_store(store: str | None) -> Database:
    """The database of `store` (a SQLAlchemy URL or a file path; None: $EVOTUNE_DB or
    ./evotune.db), migrated to the newest schema."""
    check_store(store)
    return open_database(store)


class TuningStore:
    """The reads and writes of one decorated kernel."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def best(self, target: Target) -> Config | None:
        """The published best for exactly this kernel source, device and key."""
        with self.db.session() as session:
            row = repository.best_config(
                session,
                target.kernel,
                target.shape.key,
                fingerprint=target.fingerprint,
                include_interpreted=True,
            )
            return None if row is None else dict(row.config)

    def record_miss(self, target: Target, budget: int) -> None:
        """A pending study, unless this (kernel, shape, environment) has a study already."""
        with self.db.session() as session:
            repository.lock_searches(session)
            if _newest_study(session, target) is None:
                _add_study(session, target, budget, PENDING, PENDING_NOTE)

    def start_study(self, target: Target, budget: int, seed: int) -> int:
        """The study a tune stores its trials in: the pending one, else a new one."""
        with self.db.session() as session:
            repository.lock_searches(session)
            study = _newest_study(session, target)
            if study is None or study.state != PENDING:
                study = _add_study(session, target, budget, "running", TUNED_NOTE)
            study.state, study.note, study.budget, study.seed = "running", TUNED_NOTE, budget, seed
            heartbeat.stamp(study)
            return study.id

    def add_trial(self, study_id: int, number: int, candidate: Candidate) -> int:
        """Store a candidate as running before it is launched (a crash leaves it so)."""
        with self.db.session() as session:
            trial = repository.add_running_trial(
                session,
                repository.get_study(session, study_id),
                number=number,
                config=candidate.config,
                config_hash=candidate.config_hash,
                seed=0,  # a decorated kernel is tuned on the call's arguments, not on seeded inputs
                generation=candidate.generation,
                parents=candidate.parents,
                operator=candidate.operator,
            )
            return trial.id

    def finish_trial(self, result: TrialResult) -> None:
        with self.db.session() as session:
            trial = session.get(Trial, result.trial_id)
            assert trial is not None
            repository.finish_trial(session, trial, result)

    def beat(self, study_id: int) -> heartbeat.Heartbeat:
        """Beat while the tune runs, so the study reads as alive (evotune/storage/heartbeat.py)."""
        return heartbeat.start(self.db, study_id)

    def finish_study(self, study_id: int, state: str) -> Config | None:
        """Set the study's state; a finished one publishes its fastest `ok` trial (there is no
        shoot-out in-process). Returns that trial's config (a faster best of another study
        stays served: repository.publish_best), or None."""
        with self.db.session() as session:
            study = repository.get_study(session, study_id)
            study.state = state
            if state != "finished":
                return None
            study.finished_at = utcnow()
            winner = repository.fastest_trial(session, study_id)
            if winner is None:
                return None
            study.best_trial_id = winner.id
            repository.publish_best(session, study, winner, None, None)
            return dict(winner.config)


def _rows(session: Any, target: Target) -> tuple[KernelRow, ShapeRow, Environment]:
    kernel = repository.get_or_create_kernel(session, target.kernel)
    shape = repository.get_or_create_shape(session, kernel, target.shape)
    return kernel, shape, repository.get_or_create_environment(session, target.environment)


def _newest_study(session: Any, target: Target) -> Study | None:
    kernel, shape, environment = _rows(session, target)
    return repository.resumable_study(session, kernel, shape, environment, STRATEGY, None)


def _add_study(session: Any, target: Target, budget: int, state: str, note: str) -> Study:
    kernel, shape, environment = _rows(session, target)
    study = Study(
        kernel_id=kernel.id,
        shape_id=shape.id,
        environment_id=environment.id,
        strategy=STRATEGY,
        settings={**default_settings(STRATEGY), "restrict": None},
        seed=0,
        budget=budget,
        state=state,
        interpreted=bool(target.environment.get("interpreted")),
        note=note,
    )
    session.add(study)
    session.flush()
    return study
