"""`MemoryTrialStore`: a `TrialStore` in this process's memory, for searches that leave no
trace (a replay of a landscape, a simulation, a test).

It keeps the rules of the SQL store (tests/storage/test_trial_store.py runs both through the
same contract): studies resumed by the same key, trials unique per config hash within a
study, interrupted trials claimed for a rerun once, a slower study never replacing a faster
published best. It is not shared between processes, so "another search runs this study"
means a study of this store still `running`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from evotune.errors import StudyBusyError, StudyNotFoundError
from evotune.fingerprint import fingerprint_hash
from evotune.records import TrialResult, TrialStatus
from evotune.storage.trial_store import (
    MAX_ATTEMPTS,
    PENDING,
    BestRecord,
    NewTrial,
    OpenedStudy,
    StudyRecord,
    StudySpec,
    TrialRecord,
    interrupted_error,
)

__all__ = ["MemoryTrialStore"]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _stopped(study: StudyRecord) -> bool:
    """Interrupted: in this store, a `running` study's process is this one, alive."""
    return study.state == "interrupted"


class MemoryTrialStore:
    """Implements `evotune.storage.trial_store.TrialStore` with dicts of records."""

    def __init__(self) -> None:
        self._studies: dict[int, StudyRecord] = {}
        self._trials: dict[int, TrialRecord] = {}
        # The served best per (kernel, shape key, fingerprint).
        self._bests: dict[tuple[str, str, str], BestRecord] = {}

    def open_study(self, spec: StudySpec, fresh: bool = False) -> OpenedStudy:
        fingerprint = fingerprint_hash(dict(spec.environment))
        study = None if fresh else self._resumable(spec, fingerprint)
        resumed = study is not None
        if study is None:
            study = self._new_study(spec, {})
        else:
            if study.state == "running":
                raise StudyBusyError(
                    f"study {study.id} is being searched in this process already; wait for it "
                    "to finish, or start a separate study with --fresh"
                )
            study = replace(study, budget=spec.budget, state="running")
        self._studies[study.id] = study
        return OpenedStudy(study, resumed, self._claim_interrupted(study.id))

    def _new_study(
        self,
        spec: StudySpec,
        extra_settings: Mapping[str, Any],
        state: str = "running",
        note: str | None = None,
    ) -> StudyRecord:
        study = StudyRecord(
            id=len(self._studies) + 1,
            kernel=spec.kernel,
            shape_key=spec.shape.key,
            dims=dict(spec.shape.dims),
            fingerprint=fingerprint_hash(dict(spec.environment)),
            environment=dict(spec.environment),
            strategy=spec.strategy,
            settings={**spec.settings, "restrict": spec.restrict, **extra_settings},
            seed=spec.seed,
            budget=spec.budget,
            state=state,
            interpreted=bool(spec.environment.get("interpreted")),
            replay=spec.replay,
            note=note,
        )
        self._studies[study.id] = study
        return study

    def _resumable(self, spec: StudySpec, fingerprint: str) -> StudyRecord | None:
        for study in sorted(self._studies.values(), key=lambda s: -s.id):
            if (
                (study.kernel, study.shape_key, study.fingerprint, study.strategy)
                == (spec.kernel, spec.shape.key, fingerprint, spec.strategy)
                and study.replay == spec.replay
                and study.restrict == spec.restrict
            ):
                return study
        return None

    def _claim_interrupted(self, study_id: int) -> list[TrialRecord]:
        rerun: list[TrialRecord] = []
        for trial in self.trials(study_id, TrialStatus.RUNNING.value):
            if trial.attempts >= MAX_ATTEMPTS:
                self._put(
                    replace(
                        trial,
                        status=TrialStatus.CRASHED.value,
                        error=interrupted_error(trial.attempts),
                    )
                )
            else:
                rerun.append(self._put(replace(trial, attempts=trial.attempts + 1)))
        return rerun

    def keep_alive(self, study_id: int) -> AbstractContextManager[None]:
        return nullcontext()  # nothing outside this process can see it

    def study(self, study_id: int) -> StudyRecord:
        study = self._studies.get(study_id)
        if study is None:
            raise StudyNotFoundError(f"no study with id {study_id} in this memory store")
        return study

    def trials(self, study_id: int, status: str | None = None) -> list[TrialRecord]:
        self.study(study_id)
        found = [
            t
            for t in self._trials.values()
            if t.study_id == study_id and (status is None or t.status == status)
        ]
        return sorted(found, key=lambda t: t.number)

    def add_trials(self, study_id: int, trials: Sequence[NewTrial]) -> list[TrialRecord]:
        self.study(study_id)
        taken = {t.config_hash for t in self.trials(study_id)}
        hashes = [new.config_hash for new in trials]
        if taken.intersection(hashes) or len(set(hashes)) < len(hashes):
            # Checked before anything is stored: the batch is stored whole or not at all.
            raise StudyBusyError(
                f"study {study_id} already has a trial of one of these configs; "
                "another search of it is running"
            )
        stored: list[TrialRecord] = []
        for new in trials:
            trial = TrialRecord(
                id=len(self._trials) + 1,
                study_id=study_id,
                number=new.number,
                config=dict(new.config),
                config_hash=new.config_hash,
                status=TrialStatus.RUNNING.value,
                seed=new.seed,
                generation=new.generation,
                parents=tuple(new.parents),
                operator=new.operator,
            )
            self._put(trial)
            if new.refused is not None:
                trial = self.finish_trial(
                    TrialResult(trial.id, TrialStatus.INVALID, error=new.refused)
                )
            stored.append(trial)
        return stored

    def finish_trial(self, result: TrialResult) -> TrialRecord:
        trial = self._trial(result.trial_id)
        ok = result.status is TrialStatus.OK
        return self._put(
            replace(
                trial,
                status=result.status.value,
                p50_us=result.p50_us if ok else None,
                p20_us=result.p20_us if ok else None,
                p80_us=result.p80_us if ok else None,
                n_runs=result.n_runs,
                samples_us=tuple(result.samples_us),
                max_error=result.max_error,
                compile_s=result.compile_s,
                run_s=result.run_s,
                error=result.error,
            )
        )

    def record_shootout(self, trial_id: int, p50_us: float) -> TrialRecord:
        return self._put(replace(self._trial(trial_id), shootout_p50_us=p50_us))

    def fail_finalist(self, result: TrialResult) -> TrialRecord:
        trial = self._trial(result.trial_id)
        return self._put(
            replace(
                trial,
                status=result.status.value,
                p50_us=None,
                p20_us=None,
                p80_us=None,
                max_error=trial.max_error if result.max_error is None else result.max_error,
                error=f"shoot-out: {result.error or result.status.value}",
            )
        )

    def set_winner(
        self,
        study_id: int,
        trial_id: int | None,
        shootout: Sequence[Mapping[str, object]] | None = None,
    ) -> None:
        study = self.study(study_id)
        table = study.shootout if shootout is None else [dict(row) for row in shootout]
        self._studies[study_id] = replace(study, best_trial_id=trial_id, shootout=table)

    def publish_best(
        self, study_id: int, trial_id: int, shootout_p50_us: float | None, tflops: float | None
    ) -> BestRecord:
        study = self.study(study_id)
        trial = self._trial(trial_id)
        assert trial.p50_us is not None, "only an ok trial is published"
        key = (study.kernel, study.shape_key, study.fingerprint)
        served = self._bests.get(key)
        ranked = shootout_p50_us or trial.p50_us
        if served is not None and served.study_id != study_id and served.ranked_p50_us < ranked:
            return served  # a short or restricted search never replaces a faster best
        best = BestRecord(
            kernel=study.kernel,
            shape_key=study.shape_key,
            dims=dict(study.dims),
            fingerprint=study.fingerprint,
            study_id=study_id,
            trial_id=trial_id,
            config=dict(trial.config),
            p50_us=trial.p50_us,
            shootout_p50_us=shootout_p50_us,
            tflops=tflops,
            max_error=trial.max_error,
            measured_at=_now(),
        )
        self._bests[key] = best
        return best

    def best(self, kernel: str, shape_key: str, fingerprint: str) -> BestRecord | None:
        return self._bests.get((kernel, shape_key, fingerprint))

    def bests_of_kernel(self, kernel: str, fingerprint: str) -> list[BestRecord]:
        return [
            best
            for (name, _, env), best in self._bests.items()
            if name == kernel and env == fingerprint
        ]

    def end_study(self, study_id: int, state: str) -> StudyRecord:
        study = self.study(study_id)
        finished_at = _now() if state == "finished" else study.finished_at
        self._studies[study_id] = replace(study, state=state, finished_at=finished_at)
        return self._studies[study_id]

    def record_pending(
        self, spec: StudySpec, note: str, extra_settings: Mapping[str, Any]
    ) -> StudyRecord:
        study = self._resumable(spec, fingerprint_hash(dict(spec.environment)))
        if study is None or (
            _stopped(study) and not extra_settings.keys() <= study.settings.keys()
        ):
            return self._new_study(spec, extra_settings, PENDING, note)
        if study.state == PENDING:
            study = replace(study, settings={**extra_settings, **study.settings})
            self._studies[study.id] = study
        return study

    def start_pending(self, spec: StudySpec, note: str, keep: Collection[str]) -> StudyRecord:
        newest = self._resumable(spec, fingerprint_hash(dict(spec.environment)))
        if newest is None or newest.state != PENDING:
            old = {} if newest is None else newest.settings
            return self._new_study(spec, {key: old[key] for key in keep if key in old}, note=note)
        study = replace(newest, state="running", seed=spec.seed, budget=spec.budget, note=note)
        self._studies[study.id] = study
        return study

    def waiting_studies(self, strategy: str, kernel: str | None = None) -> list[StudyRecord]:
        newest: dict[tuple[str, str, str], StudyRecord] = {}
        for study in sorted(self._studies.values(), key=lambda s: s.id):
            if study.strategy == strategy:
                newest[(study.kernel, study.shape_key, study.fingerprint)] = study
        waiting = [
            s
            for s in newest.values()
            if (s.state == PENDING or _stopped(s)) and (kernel is None or s.kernel == kernel)
        ]
        return sorted(waiting, key=lambda s: s.id)

    def has_kernel(self, kernel: str) -> bool:
        return any(study.kernel == kernel for study in self._studies.values())

    def _trial(self, trial_id: int) -> TrialRecord:
        trial = self._trials.get(trial_id)
        if trial is None:
            raise KeyError(f"no trial with id {trial_id}")
        return trial

    def _put(self, trial: TrialRecord) -> TrialRecord:
        self._trials[trial.id] = trial
        return trial
