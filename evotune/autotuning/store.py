"""The decorator's storage work, through the `TrialStore` protocol a search uses
(evotune/storage/trial_store.py), so it follows the same rules on every store.

A decorated kernel is stored as the kernel `<module>.<qualified name>`; a key's values are its
shape; the device and the kernel's source hash are its environment. A launch that finds no
published best records a **pending** study (`TrialStore.record_pending`: no trials), once per
(kernel, shape, environment), with the recipe of its call in `settings["offline"]`
(evotune/autotuning/recipe.py); tuning, in-process or offline, turns it into a `running`
study with its trials (`TrialStore.start_pending`), and publishes the winner as a search does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from evotune.autotuning.recipe import RECIPE_KEY
from evotune.errors import UserError
from evotune.fingerprint import fingerprint_hash
from evotune.records import Config, Dims, TrialResult, TrialStatus
from evotune.search.base import Candidate
from evotune.search.registry import default_settings
from evotune.space import Shape
from evotune.storage import SqlTrialStore, open_database
from evotune.storage.trial_store import (
    PENDING,
    NewTrial,
    StudyRecord,
    StudySpec,
    TrialRecord,
    TrialStore,
)

__all__ = [
    "OFFLINE_NOTE",
    "STRATEGY",
    "TUNED_NOTE",
    "PendingMiss",
    "Target",
    "TuningStore",
    "check_store",
    "open_store",
]

STRATEGY = "evolution"
PENDING_NOTE = "evotune.autotune: a launch found no published best; not tuned yet"
TUNED_NOTE = "evotune.autotune: tuned in-process on the arguments of one call"
OFFLINE_NOTE = "evotune.autotune: tuned offline (evotune tune-pending) on synthesized arguments"


@dataclass(frozen=True)
class Target:
    """What is tuned: the kernel's name, the key's values, and the environment."""

    kernel: str
    shape: Shape
    environment: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return fingerprint_hash(self.environment)

    def spec(self, budget: int, seed: int) -> StudySpec:
        """The search that tunes it."""
        return StudySpec(
            kernel=self.kernel,
            shape=self.shape,
            environment=self.environment,
            strategy=STRATEGY,
            settings=default_settings(STRATEGY),
            seed=seed,
            budget=budget,
        )


def check_store(store: str | None) -> None:
    """Refuse what cannot be a store: the evotune service's URL (its REST API has no writes
    for trials, and `/v1/best` knows only the kernels of its space files)."""
    if store is not None and store.startswith(("http://", "https://")):
        raise UserError(
            f"store {store!r}: the evotune service cannot be a store for evotune.autotune yet; "
            "give the database URL it serves from (e.g. sqlite:///tune.db)"
        )


def open_store(store: str | None) -> TrialStore:
    """The store of `store` (a SQLAlchemy URL or a file path; None: $EVOTUNE_DB or
    ./evotune.db), its database migrated to the newest schema."""
    check_store(store)
    return SqlTrialStore(open_database(store))


class TuningStore:
    """The reads and writes of one decorated kernel."""

    def __init__(self, store: TrialStore) -> None:
        self.store = store

    def best(self, target: Target) -> Config | None:
        """The published best for exactly this kernel source, device and key."""
        best = self.store.best(target.kernel, target.shape.key, target.fingerprint)
        return None if best is None else dict(best.config)

    def record_miss(
        self, target: Target, budget: int, seed: int, recipe: Mapping[str, Any]
    ) -> None:
        """A pending study with the call's recipe, unless this (kernel, shape, environment)
        has one that is pending, running, finished, or stopped with a recipe to tune it
        again from (a pending one recorded without a recipe gets this one). A tune that
        stopped without a recipe (an in-process one) leaves the key to be recorded again."""
        spec = target.spec(budget, seed)
        self.store.record_pending(spec, PENDING_NOTE, {RECIPE_KEY: dict(recipe)})

    def start_study(self, target: Target, budget: int, seed: int, note: str = TUNED_NOTE) -> int:
        """The study a tune stores its trials in: the pending one, else a new one (which
        keeps the recipe of the newest, so that an interrupted tune can be tuned again)."""
        study = self.store.start_pending(target.spec(budget, seed), note, keep=(RECIPE_KEY,))
        return study.id

    def pending(self, kernel: str | None = None) -> list[PendingMiss]:
        """The misses waiting for a tune, oldest first: the newest study of each (kernel,
        shape, environment) if it is pending, or was being tuned from a recipe and stopped
        (interrupted, or `running` with no live process behind it)."""
        studies = self.store.waiting_studies(STRATEGY, kernel)
        return [
            PendingMiss.of(study)
            for study in studies
            if study.state == PENDING or RECIPE_KEY in study.settings  # not a search's study
        ]

    def knows_kernel(self, kernel: str) -> bool:
        return self.store.has_kernel(kernel)

    def add_trial(self, study_id: int, number: int, candidate: Candidate) -> int:
        """Store a candidate as running before it is launched (a crash leaves it so)."""
        new = NewTrial(
            number=number,
            config=candidate.config,
            config_hash=candidate.config_hash,
            seed=0,  # a decorated kernel is tuned on the call's arguments, not on seeded inputs
            generation=candidate.generation,
            parents=candidate.parents,
            operator=candidate.operator,
        )
        (trial,) = self.store.add_trials(study_id, [new])
        return trial.id

    def finish_trial(self, result: TrialResult) -> None:
        self.store.finish_trial(result)

    def keep_alive(self, study_id: int) -> AbstractContextManager[None]:
        """Keep the study marked alive while the tune runs."""
        return self.store.keep_alive(study_id)

    def finish_study(self, study_id: int, state: str) -> TrialRecord | None:
        """End the study in `state`; a finished one publishes its fastest `ok` trial (there
        is no shoot-out in-process) and returns it (a faster best of another study stays
        served: `TrialStore.publish_best`); else None."""
        winner = None
        if state == "finished":
            ok = self.store.trials(study_id, TrialStatus.OK.value)
            # The lowest p50; ties: the earlier trial (trials come in number order).
            winner = min(ok, key=lambda t: t.p50_us or math.inf, default=None)
            if winner is not None:
                self.store.set_winner(study_id, winner.id)
                self.store.publish_best(study_id, winner.id, None, None)
        self.store.end_study(study_id, state)
        return winner


@dataclass(frozen=True)
class PendingMiss:
    """A recorded miss as `evotune tune-pending` reads it."""

    study_id: int
    state: str
    kernel: str
    dims: Dims
    environment: dict[str, Any]
    fingerprint: str
    budget: int
    seed: int
    recipe: dict[str, Any] | None  # None: recorded by an evotune that kept no recipe

    @classmethod
    def of(cls, study: StudyRecord) -> PendingMiss:
        recipe = study.settings.get(RECIPE_KEY)
        return cls(
            study_id=study.id,
            state=study.state,
            kernel=study.kernel,
            dims=dict(study.dims),
            environment=dict(study.environment),
            fingerprint=study.fingerprint,
            budget=study.budget,
            seed=study.seed,
            recipe=None if recipe is None else dict(recipe),
        )
