"""The store a search writes through: the `TrialStore` protocol and the frozen records it
takes and returns.

The runner, the decorator's store (`evotune/autotuning/store.py`) and anything else that
runs a search talk to storage only through this interface, so that the same loop runs over the SQL store (SQLite, PostgreSQL:
`evotune/storage/sql_store.py`) and the in-memory one (`evotune/storage/memory_store.py`).
No ORM object crosses it: every read returns a record that holds its values and nothing else,
and every write names what it changes by id. tests/storage/test_trial_store.py is the
contract each implementation passes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from evotune.records import Config, Dims, TrialResult
from evotune.space import Shape

__all__ = [
    "MAX_ATTEMPTS",
    "PENDING",
    "BestRecord",
    "NewTrial",
    "OpenedStudy",
    "StudyRecord",
    "StudySpec",
    "TrialRecord",
    "TrialStore",
    "interrupted_error",
]

# Times a trial may be dispatched: one in flight when its search stopped this often may be
# what stops it, so it is given up (`crashed`) instead of measured again.
MAX_ATTEMPTS = 2

# The state of a study recorded to be run later (`TrialStore.record_pending`).
PENDING = "pending"


def interrupted_error(attempts: int) -> str:
    """The error a trial given up after `attempts` interrupted dispatches is stored with."""
    return (
        f"the search process stopped while this trial was in flight, {attempts} times: "
        "not measured again"
    )


@dataclass(frozen=True)
class StudySpec:
    """A search as it is opened: what identifies it (a rerun with the same kernel, shape,
    environment, strategy, replay and restriction resumes the newest such study) and what a
    new study starts with."""

    kernel: str
    shape: Shape
    environment: Mapping[str, Any]  # the fingerprint (evotune/fingerprint.py)
    strategy: str
    settings: Mapping[str, Any]  # the strategy's; the study stores `restrict` beside them
    seed: int
    budget: int
    replay: str | None = None
    restrict: str | None = None


@dataclass(frozen=True)
class StudyRecord:
    """One study as stored."""

    id: int
    kernel: str
    shape_key: str
    dims: Dims
    fingerprint: str  # the hash of the environment it runs in
    environment: dict[str, Any]  # that environment (evotune/fingerprint.py)
    strategy: str
    settings: dict[str, Any]  # as stored: the strategy's settings, `restrict`, and extras
    seed: int
    budget: int
    state: str  # pending (recorded to run later), running, finished, interrupted
    interpreted: bool
    replay: str | None = None
    best_trial_id: int | None = None
    shootout: list[dict[str, Any]] | None = None
    note: str | None = None
    finished_at: datetime | None = None

    @property
    def restrict(self) -> str | None:
        value = self.settings.get("restrict")
        return None if value is None else str(value)


@dataclass(frozen=True)
class NewTrial:
    """A candidate about to be stored as `running` (before it is dispatched, so that a death
    is pinned on it), or, when `refused` says why, as `invalid` at once (never dispatched)."""

    number: int
    config: Config
    config_hash: str
    seed: int
    generation: int = 0
    parents: tuple[str, ...] = ()
    operator: str = "seed"
    refused: str | None = None


@dataclass(frozen=True)
class TrialRecord:
    """One trial as stored. Only `ok` trials carry latencies; the evidence (samples, max
    error, compile and run seconds, error text) is kept whatever the status."""

    id: int
    study_id: int
    number: int
    config: Config
    config_hash: str
    status: str
    seed: int
    generation: int = 0
    parents: tuple[str, ...] = ()
    operator: str = "seed"
    p50_us: float | None = None
    p20_us: float | None = None
    p80_us: float | None = None
    n_runs: int = 0
    samples_us: tuple[float, ...] = ()
    max_error: float | None = None
    compile_s: float | None = None
    run_s: float | None = None
    error: str | None = None
    shootout_p50_us: float | None = None
    attempts: int = 1


@dataclass(frozen=True)
class BestRecord:
    """The published best of one (kernel, shape, environment): what `evotune best` serves."""

    kernel: str
    shape_key: str
    dims: Dims
    fingerprint: str
    study_id: int
    trial_id: int
    config: Config
    p50_us: float
    shootout_p50_us: float | None
    tflops: float | None
    max_error: float | None
    measured_at: datetime

    @property
    def ranked_p50_us(self) -> float:
        """What bests are compared by: the shoot-out's p50 where there was one."""
        return self.shootout_p50_us or self.p50_us


@dataclass(frozen=True)
class OpenedStudy:
    """What `TrialStore.open_study` hands back."""

    study: StudyRecord
    resumed: bool
    # Trials an earlier, stopped search left in flight, claimed to be measured again first
    # (their `attempts` counted); those in flight `MAX_ATTEMPTS` times are `crashed` instead.
    rerun: list[TrialRecord] = field(default_factory=list)


class TrialStore(Protocol):
    """Everything a search reads and writes. Errors: `StudyNotFoundError` for an unknown
    study id, `StudyBusyError` where another search runs the study, `KeyError` for an unknown
    trial id (an invariant of the caller: it only names trials it stored)."""

    def open_study(self, spec: StudySpec, fresh: bool = False) -> OpenedStudy:
        """Resume the newest study of `spec` (unless `fresh`), or create one; either way it
        is `running`, marked alive for this process, with `spec.budget`. Raises
        StudyBusyError if another search runs it now."""
        ...

    def keep_alive(self, study_id: int) -> AbstractContextManager[None]:
        """Keep the study marked alive while the `with` block runs (a heartbeat where other
        processes may look)."""
        ...

    def study(self, study_id: int) -> StudyRecord: ...

    def trials(self, study_id: int, status: str | None = None) -> list[TrialRecord]:
        """The study's trials (of one status) in number order."""
        ...

    def add_trials(self, study_id: int, trials: Sequence[NewTrial]) -> list[TrialRecord]:
        """Store a batch at once, in order: each `running`, or `invalid` with its `refused`
        reason. A config hash the study already has means another process searches it too:
        StudyBusyError, and nothing of the batch is stored."""
        ...

    def finish_trial(self, result: TrialResult) -> TrialRecord:
        """Store a result on its trial (`result.trial_id`); latencies only for `ok`."""
        ...

    def record_shootout(self, trial_id: int, p50_us: float) -> TrialRecord:
        """A finalist's p50 in the interleaved shoot-out."""
        ...

    def fail_finalist(self, result: TrialResult) -> TrialRecord:
        """A finalist the shoot-out found wrong takes that status and its error (prefixed
        `shoot-out: `); its search samples stay as evidence, its latencies stop counting."""
        ...

    def set_winner(
        self,
        study_id: int,
        trial_id: int | None,
        shootout: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """The study's chosen trial (None: none), and the shoot-out table it was chosen by
        (None: the stored table stays)."""
        ...

    def publish_best(
        self, study_id: int, trial_id: int, shootout_p50_us: float | None, tflops: float | None
    ) -> BestRecord:
        """Serve the trial as the best of its study's (kernel, shape, environment), unless
        another study published a faster one there (a study may always replace its own).
        Returns the best served afterwards."""
        ...

    def best(self, kernel: str, shape_key: str, fingerprint: str) -> BestRecord | None:
        """The published best of exactly this kernel, shape and environment."""
        ...

    def bests_of_kernel(self, kernel: str, fingerprint: str) -> list[BestRecord]:
        """Every published best of a kernel in one environment, any shape."""
        ...

    def end_study(self, study_id: int, state: str) -> StudyRecord:
        """Leave `running` for `state` (`finished` also stamps `finished_at`)."""
        ...

    # --- searches recorded now and run later (evotune.autotune's misses) ---------------------
    # "The newest study" of a spec is the one `open_study` would resume. A study has
    # *stopped* when it is `interrupted`, or `running` with no live process behind it.

    def record_pending(
        self, spec: StudySpec, note: str, extra_settings: Mapping[str, Any]
    ) -> StudyRecord:
        """Record `spec`'s search to be run later, without claiming it (not `running`, not
        alive, no trials). If the newest study of it is none, or one that stopped without
        every key of `extra_settings`: a new `pending` study with `note`, `spec`'s seed and
        budget, and `extra_settings` beside its settings. If it is `pending`: it gets the
        keys of `extra_settings` it lacks. Any other is left as it is. Returns the newest
        study afterwards."""
        ...

    def start_pending(self, spec: StudySpec, note: str, keep: Collection[str]) -> StudyRecord:
        """Run `spec`'s search now in its newest study if that is `pending` (it takes
        `spec`'s seed and budget, and `note`), else in a new study with `note` and the
        settings named in `keep` of the newest one (so that a run that stops can be resumed
        from them). Either way it is `running`, marked alive, and has no trials; never
        StudyBusyError (a live run of the newest study gets a new one beside it)."""
        ...

    def waiting_studies(self, strategy: str, kernel: str | None = None) -> list[StudyRecord]:
        """The newest study of each (kernel, shape, environment) of `strategy` (and
        `kernel`), where that one is `pending` or stopped; oldest first."""
        ...

    def has_kernel(self, kernel: str) -> bool:
        """Whether a study of `kernel` was ever stored."""
        ...
