"""Repository functions: the only place that builds queries. Callers pass a Session."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from evotune.errors import StudyNotFoundError
from evotune.fingerprint import fingerprint_hash
from evotune.records import TrialResult, TrialStatus
from evotune.space import SearchSpace, Shape
from evotune.storage.models import (
    BestConfig,
    Environment,
    KernelRow,
    ShapeRow,
    Study,
    Trial,
    utcnow,
)
from evotune.storage.trial_store import MAX_ATTEMPTS, interrupted_error

__all__ = [
    "add_missing_settings",
    "add_running_trial",
    "add_study",
    "best_config",
    "best_configs_of_kernel",
    "claim_interrupted",
    "claim_pending",
    "count_trials",
    "end_study",
    "fingerprint_hash",
    "finish_trial",
    "get_or_create_environment",
    "get_or_create_kernel",
    "get_or_create_shape",
    "get_study",
    "get_trial",
    "list_studies",
    "list_trials",
    "lock_searches",
    "nearest_tuned_shape",
    "publish_best",
    "record_shootout",
    "restart_study",
    "resumable_study",
    "served_bests",
    "set_winner",
    "study_trials",
]


_Row = TypeVar("_Row")


def _insert_or_fetch(session: Session, row: _Row, fetch: Callable[[], _Row | None]) -> _Row:
    """Insert `row`; if another writer inserted the same unique key first, return theirs.

    Several hosts sharing a PostgreSQL database may create the same kernel, shape or
    environment at once. The insert runs in a savepoint so that losing the race costs
    only that statement, not the caller's transaction. (SQLite has one writer at a time
    and pysqlite's savepoints are unreliable, so it inserts plainly.)
    """
    if session.get_bind().dialect.name == "sqlite":
        session.add(row)
        session.flush()
        return row
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        existing = fetch()
        if existing is None:
            raise
        return existing
    return row


# PostgreSQL advisory lock that processes starting or resuming a search take in turn (any fixed
# 64-bit number; not the migration lock's).
SEARCH_START_LOCK_KEY = 0x65766F74756E66


def lock_searches(session: Session) -> None:
    """Hold, to the end of this transaction, the lock that every process starting or resuming
    a search takes first, so that two of them never pick or create the same study at once.
    SQLite: the database's write lock (BEGIN IMMEDIATE, so the first statement of its session
    that writes); PostgreSQL: an advisory lock."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEARCH_START_LOCK_KEY})


def get_or_create_kernel(session: Session, name: str) -> KernelRow:
    query = select(KernelRow).where(KernelRow.name == name)
    row = session.scalar(query)
    if row is None:
        row = _insert_or_fetch(session, KernelRow(name=name), lambda: session.scalar(query))
    return row


def get_or_create_shape(session: Session, kernel: KernelRow, shape: Shape) -> ShapeRow:
    query = select(ShapeRow).where(ShapeRow.kernel_id == kernel.id, ShapeRow.key == shape.key)
    row = session.scalar(query)
    if row is None:
        new = ShapeRow(kernel_id=kernel.id, name=shape.name, key=shape.key, dims=dict(shape.dims))
        row = _insert_or_fetch(session, new, lambda: session.scalar(query))
    elif row.name is None and shape.name is not None:
        row.name = shape.name
    return row


def get_or_create_environment(session: Session, environment: dict[str, Any]) -> Environment:
    digest = fingerprint_hash(environment)
    query = select(Environment).where(Environment.fingerprint_hash == digest)
    row = session.scalar(query)
    if row is None:
        new = Environment(
            fingerprint_hash=digest,
            gpu=str(environment.get("gpu") or "unknown"),
            driver=_opt_str(environment.get("driver")),
            cuda=_opt_str(environment.get("cuda")),
            torch=str(environment.get("torch") or "unknown"),
            triton=str(environment.get("triton") or "unknown"),
            kernel_source_hash=str(environment.get("kernel_source_hash") or "unknown"),
            interpreted=bool(environment.get("interpreted")),
            data=dict(environment),
        )
        row = _insert_or_fetch(session, new, lambda: session.scalar(query))
    return row


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def resumable_study(
    session: Session,
    kernel: KernelRow,
    shape: ShapeRow,
    environment: Environment,
    strategy: str,
    replay: str | None,
    restrict: str | None = None,
) -> Study | None:
    """The newest study of the same search (same sub-space too), if any: a rerun continues it."""
    query = (
        select(Study)
        .where(
            Study.kernel_id == kernel.id,
            Study.shape_id == shape.id,
            Study.environment_id == environment.id,
            Study.strategy == strategy,
            Study.replay.is_(None) if replay is None else Study.replay == replay,
        )
        .order_by(Study.id.desc())
    )
    return next((s for s in session.scalars(query) if s.settings.get("restrict") == restrict), None)


def add_study(
    session: Session,
    kernel: KernelRow,
    shape: ShapeRow,
    environment: Environment,
    strategy: str,
    settings: dict[str, Any],
    seed: int,
    budget: int,
    replay: str | None = None,
    *,
    state: str = "running",
    note: str | None = None,
) -> Study:
    """A new study, `running` (or `pending`: recorded to run later)."""
    study = Study(
        kernel_id=kernel.id,
        shape_id=shape.id,
        environment_id=environment.id,
        strategy=strategy,
        settings=dict(settings),
        seed=seed,
        budget=budget,
        state=state,
        interpreted=environment.interpreted,
        replay=replay,
        note=note,
    )
    session.add(study)
    session.flush()
    return study


def restart_study(session: Session, study: Study, budget: int) -> None:
    """A study a rerun resumes: `running` again, up to the rerun's budget."""
    study.budget = budget
    study.state = "running"


def claim_pending(session: Session, study: Study, seed: int, budget: int, note: str) -> None:
    """A `pending` study that starts now: `running`, with the run's seed, budget and note."""
    study.state, study.seed, study.budget, study.note = "running", seed, budget, note


def add_missing_settings(session: Session, study: Study, settings: dict[str, Any]) -> None:
    """The settings the study lacks, added (those it has keep their values)."""
    study.settings = {**settings, **study.settings}  # a new dict: JSON columns see reassignment


def end_study(session: Session, study: Study, state: str) -> None:
    """Leave `running` for `state`; `finished` stamps the time."""
    study.state = state
    if state == "finished":
        study.finished_at = utcnow()


def set_winner(
    session: Session, study: Study, trial_id: int | None, shootout: list[Any] | None
) -> None:
    """The study's chosen trial, and (unless None) the shoot-out table it was chosen by."""
    study.best_trial_id = trial_id
    if shootout is not None:
        study.shootout = shootout


def get_study(session: Session, study_id: int) -> Study:
    study = session.get(Study, study_id)
    if study is None:
        raise StudyNotFoundError(f"no study with id {study_id}; `evotune studies` lists them")
    return study


def get_trial(session: Session, trial_id: int) -> Trial:
    """The trial of that id; KeyError if there is none (callers name trials they stored)."""
    trial = session.get(Trial, trial_id)
    if trial is None:
        raise KeyError(f"no trial with id {trial_id}")
    return trial


def list_studies(
    session: Session, kernel: str | None = None, limit: int = 100, offset: int = 0
) -> list[Study]:
    query = select(Study).order_by(Study.id.desc()).limit(limit).offset(offset)
    if kernel is not None:
        query = query.join(KernelRow).where(KernelRow.name == kernel)
    return list(session.scalars(query))


def study_trials(session: Session, study: Study) -> list[Trial]:
    return list(
        session.scalars(select(Trial).where(Trial.study_id == study.id).order_by(Trial.number))
    )


def list_trials(
    session: Session,
    study_id: int,
    status: str | None = None,
    generation: int | None = None,
    limit: int | None = 1000,
    offset: int = 0,
    after: int | None = None,
) -> list[Trial]:
    """Trials in number order (at most `limit`; None: all); `after`: only those numbered
    above it (incremental reads)."""
    query = _trials_matching(select(Trial), study_id, status, generation, after)
    return list(session.scalars(query.order_by(Trial.number).limit(limit).offset(offset)))


def _trials_matching(
    query: Any, study_id: int, status: str | None, generation: int | None, after: int | None
) -> Any:
    query = query.where(Trial.study_id == study_id)
    if status is not None:
        query = query.where(Trial.status == status)
    if generation is not None:
        query = query.where(Trial.generation == generation)
    if after is not None:
        query = query.where(Trial.number > after)
    return query


def count_trials(session: Session, study_id: int, status: str | None = None) -> int:
    query = select(func.count()).select_from(Trial).where(Trial.study_id == study_id)
    if status is not None:
        query = query.where(Trial.status == status)
    return int(session.scalar(query) or 0)


def claim_interrupted(session: Session, study: Study) -> tuple[list[Trial], int]:
    """Trials left `running` by a search that stopped: each is to be measured again (its
    attempts counted), except one that was in flight `MAX_ATTEMPTS` times already, which
    becomes `crashed` (it may be what stopped the search). Returns (to re-run, given up)."""
    stale = session.scalars(
        select(Trial)
        .where(Trial.study_id == study.id, Trial.status == TrialStatus.RUNNING.value)
        .order_by(Trial.number)
    ).all()
    rerun: list[Trial] = []
    for trial in stale:
        if trial.attempts >= MAX_ATTEMPTS:
            trial.status = TrialStatus.CRASHED.value
            trial.error = interrupted_error(trial.attempts)
            trial.finished_at = utcnow()
        else:
            trial.attempts += 1
            rerun.append(trial)
    return rerun, len(stale) - len(rerun)


def add_running_trial(
    session: Session,
    study: Study,
    number: int,
    config: dict[str, Any],
    config_hash: str,
    seed: int,
    generation: int,
    parents: Sequence[str],
    operator: str,
) -> Trial:
    """Store a trial as `running` before dispatch, so a death is pinned on it."""
    trial = Trial(
        study_id=study.id,
        number=number,
        config=dict(config),
        config_hash=config_hash,
        status=TrialStatus.RUNNING.value,
        samples_us=[],
        parents=list(parents),
        generation=generation,
        operator=operator,
        seed=seed,
    )
    session.add(trial)
    session.flush()
    return trial


def finish_trial(session: Session, trial: Trial, result: TrialResult) -> None:
    ok = result.status is TrialStatus.OK
    trial.status = result.status.value
    trial.p50_us = result.p50_us if ok else None
    trial.p20_us = result.p20_us if ok else None
    trial.p80_us = result.p80_us if ok else None
    trial.n_runs = result.n_runs
    trial.samples_us = list(result.samples_us)
    trial.max_error = result.max_error
    trial.compile_s = result.compile_s
    trial.run_s = result.run_s
    # PostgreSQL's text refuses NUL bytes, which a dead worker's stderr may hold.
    trial.error = None if result.error is None else result.error.replace("\x00", "\\x00")
    trial.finished_at = utcnow()


def fail_finalist(session: Session, trial: Trial, result: TrialResult) -> None:
    """A finalist the shoot-out found wrong: it takes that status and error; its search
    samples stay as evidence, its p50 stops counting."""
    trial.status = result.status.value
    trial.p50_us = trial.p20_us = trial.p80_us = None
    if result.max_error is not None:
        trial.max_error = result.max_error
    error = f"shoot-out: {result.error or result.status.value}"
    trial.error = error.replace("\x00", "\\x00")


def record_shootout(session: Session, trial: Trial, p50_us: float) -> None:
    """A finalist's p50 in the interleaved shoot-out."""
    trial.shootout_p50_us = p50_us


def publish_best(
    session: Session,
    study: Study,
    trial: Trial,
    shootout_p50_us: float | None,
    tflops: float | None,
) -> BestConfig:
    """Make a trial the served best of its (kernel, shape, environment), unless another
    study published a faster one there: a short or restricted search never replaces a
    faster best. Returns the row served afterwards."""
    row = session.scalar(
        select(BestConfig).where(
            BestConfig.kernel_id == study.kernel_id,
            BestConfig.shape_id == study.shape_id,
            BestConfig.environment_id == study.environment_id,
        )
    )
    assert trial.p50_us is not None
    ranked = shootout_p50_us or trial.p50_us
    if (
        row is not None
        and row.study_id != study.id
        and (row.shootout_p50_us or row.p50_us) < ranked
    ):
        return row
    if row is None:
        row = BestConfig(
            kernel_id=study.kernel_id, shape_id=study.shape_id, environment_id=study.environment_id
        )
        session.add(row)
    row.study_id = study.id
    row.trial_id = trial.id
    row.config = dict(trial.config)
    row.p50_us = trial.p50_us
    row.shootout_p50_us = shootout_p50_us
    row.tflops = tflops
    row.max_error = trial.max_error
    row.measured_at = utcnow()
    session.flush()
    return row


def best_config(
    session: Session,
    kernel: str,
    shape_key: str,
    fingerprint: str | None = None,
    gpu: str | None = None,
    include_interpreted: bool = False,
    kernel_source_hash: str | None = None,
) -> BestConfig | None:
    """The served best for a shape: for one fingerprint, else the newest (then fastest) on
    that GPU kind; only measured under `kernel_source_hash` when one is given."""
    query = _served(
        select(BestConfig), kernel, fingerprint, gpu, include_interpreted, kernel_source_hash
    ).where(ShapeRow.key == shape_key)
    ranked = func.coalesce(BestConfig.shootout_p50_us, BestConfig.p50_us)
    return session.scalars(query.order_by(BestConfig.measured_at.desc(), ranked)).first()


def nearest_tuned_shape(
    session: Session,
    space: SearchSpace,
    dims: dict[str, Any],
    fingerprint: str | None = None,
    gpu: str | None = None,
    include_interpreted: bool = False,
    kernel_source_hash: str | None = None,
) -> ShapeRow | None:
    """The shape of `space`'s kernel nearest to `dims` (`space.shape_distance`; ties: by key)
    among those with a best that `best_config` with the same filters would serve."""
    query = _served(
        select(ShapeRow), space.kernel, fingerprint, gpu, include_interpreted, kernel_source_hash
    ).distinct()
    shapes = list(session.scalars(query))
    return min(shapes, key=lambda s: (space.shape_distance(dims, s.dims), s.key), default=None)


def served_bests(
    session: Session,
    kernel: str,
    gpu: str | None = None,
    include_interpreted: bool = False,
    kernel_source_hash: str | None = None,
) -> list[BestConfig]:
    """Every best of a kernel that `best_config` could serve with these filters (shape and
    environment loaded), in its order: newest first, then fastest."""
    query = _served(
        select(BestConfig), kernel, None, gpu, include_interpreted, kernel_source_hash
    ).options(joinedload(BestConfig.shape), joinedload(BestConfig.environment))
    ranked = func.coalesce(BestConfig.shootout_p50_us, BestConfig.p50_us)
    return list(session.scalars(query.order_by(BestConfig.measured_at.desc(), ranked)))


def _served(
    query: Select[Any],
    kernel: str,
    fingerprint: str | None,
    gpu: str | None,
    include_interpreted: bool,
    kernel_source_hash: str | None,
) -> Select[Any]:
    """`query` over the published bests of a kernel that pass these filters."""
    query = (
        query.select_from(BestConfig)
        .join(KernelRow, BestConfig.kernel_id == KernelRow.id)
        .join(ShapeRow, BestConfig.shape_id == ShapeRow.id)
        .join(Environment, BestConfig.environment_id == Environment.id)
        .where(KernelRow.name == kernel)
    )
    if fingerprint is not None:
        query = query.where(Environment.fingerprint_hash == fingerprint)
    if gpu is not None:
        query = query.where(Environment.gpu == gpu)
    if kernel_source_hash is not None:
        query = query.where(Environment.kernel_source_hash == kernel_source_hash)
    if not include_interpreted:
        query = query.where(Environment.interpreted.is_(False))
    return query


def best_configs_of_kernel(session: Session, kernel: str, fingerprint: str) -> list[BestConfig]:
    """Every published best of a kernel in one environment (seeds for nearby shapes), with
    its shape and environment loaded."""
    query = (
        select(BestConfig)
        .join(KernelRow, BestConfig.kernel_id == KernelRow.id)
        .join(Environment, BestConfig.environment_id == Environment.id)
        .where(KernelRow.name == kernel, Environment.fingerprint_hash == fingerprint)
        .options(joinedload(BestConfig.shape), joinedload(BestConfig.environment))
        .order_by(BestConfig.id)
    )
    return list(session.scalars(query))


# --- read-only queries for the REST service and dashboard (evotune/api) ---------------------


def count_studies(session: Session, kernel: str | None = None) -> int:
    """How many studies exist (of one kernel); the total of a paginated study list."""
    query = select(func.count()).select_from(Study)
    if kernel is not None:
        query = query.join(KernelRow, Study.kernel_id == KernelRow.id).where(
            KernelRow.name == kernel
        )
    return int(session.scalar(query) or 0)


def trial_stats(
    session: Session, study_ids: Sequence[int]
) -> dict[int, tuple[dict[str, int], float | None]]:
    """Per study: trial counts by status and the best `ok` p50, in one grouped query."""
    out: dict[int, tuple[dict[str, int], float | None]] = {i: ({}, None) for i in study_ids}
    if not study_ids:
        return out
    query = (
        select(Trial.study_id, Trial.status, func.count(), func.min(Trial.p50_us))
        .where(Trial.study_id.in_(list(study_ids)))
        .group_by(Trial.study_id, Trial.status)
    )
    for study_id, status, count, best in session.execute(query):
        counts, best_p50 = out[study_id]
        counts[status] = int(count)
        if status == TrialStatus.OK.value and best is not None:
            best_p50 = float(best) if best_p50 is None else min(best_p50, float(best))
        out[study_id] = (counts, best_p50)
    return out


def count_trials_matching(
    session: Session,
    study_id: int,
    status: str | None = None,
    generation: int | None = None,
    after: int | None = None,
) -> int:
    """The total behind `list_trials` with the same filters (for pagination)."""
    query = select(func.count()).select_from(Trial)
    query = _trials_matching(query, study_id, status, generation, after)
    return int(session.scalar(query) or 0)


def fastest_trial(session: Session, study_id: int) -> Trial | None:
    """The `ok` trial of a study with the lowest p50 (ties: the earlier trial)."""
    query = (
        select(Trial)
        .where(
            Trial.study_id == study_id,
            Trial.status == TrialStatus.OK.value,
            Trial.p50_us.is_not(None),
        )
        .order_by(Trial.p50_us, Trial.number)
    )
    return session.scalars(query.limit(1)).first()


def published_best_of_study(session: Session, study_id: int) -> BestConfig | None:
    """The served best config that this study published, if any."""
    query = select(BestConfig).where(BestConfig.study_id == study_id)
    return session.scalars(query.order_by(BestConfig.measured_at.desc()).limit(1)).first()


def shapes_in_database(session: Session, kernel: str | None = None) -> list[ShapeRow]:
    """Every shape the database knows (named or ad hoc), optionally of one kernel."""
    query = select(ShapeRow).join(KernelRow, ShapeRow.kernel_id == KernelRow.id)
    if kernel is not None:
        query = query.where(KernelRow.name == kernel)
    return list(session.scalars(query.order_by(ShapeRow.id)))


def tuned_gpus_by_shape(
    session: Session, kernel: str | None = None
) -> dict[tuple[str, str], list[str]]:
    """(kernel, shape key) -> GPU names with a published, GPU-measured best config."""
    query = (
        select(KernelRow.name, ShapeRow.key, Environment.gpu)
        .select_from(BestConfig)
        .join(KernelRow, BestConfig.kernel_id == KernelRow.id)
        .join(ShapeRow, BestConfig.shape_id == ShapeRow.id)
        .join(Environment, BestConfig.environment_id == Environment.id)
        .where(Environment.interpreted.is_(False))
        .distinct()
    )
    if kernel is not None:
        query = query.where(KernelRow.name == kernel)
    out: dict[tuple[str, str], list[str]] = {}
    for kernel_name, key, gpu in session.execute(query):
        out.setdefault((kernel_name, key), []).append(gpu)
    return {k: sorted(v) for k, v in out.items()}


def running_studies(session: Session, beat_since: Any) -> list[Study]:
    """Studies in state `running` whose search stamped a heartbeat at or after `beat_since`."""
    query = select(Study).where(Study.state == "running", Study.heartbeat_at >= beat_since)
    return list(session.scalars(query.order_by(Study.id)))


def newest_study_of(
    session: Session, kernel: str, shape_key: str, strategy: str, interpreted: bool
) -> Study | None:
    """The newest plain study (no replay, no sub-space) of a search: what a rerun of
    `evotune search` would resume (in the same environment)."""
    query = (
        select(Study)
        .join(KernelRow, Study.kernel_id == KernelRow.id)
        .join(ShapeRow, Study.shape_id == ShapeRow.id)
        .where(
            KernelRow.name == kernel,
            ShapeRow.key == shape_key,
            Study.strategy == strategy,
            Study.interpreted.is_(interpreted),
            Study.replay.is_(None),
        )
        .order_by(Study.id.desc())
    )
    return next((s for s in session.scalars(query) if not s.settings.get("restrict")), None)


def published_bests(
    session: Session, kernel: str | None = None, include_interpreted: bool = False
) -> list[BestConfig]:
    """Every published best (with kernel, shape and environment loaded), newest first."""
    query = (
        select(BestConfig)
        .join(KernelRow, BestConfig.kernel_id == KernelRow.id)
        .join(Environment, BestConfig.environment_id == Environment.id)
        .options(
            joinedload(BestConfig.kernel),
            joinedload(BestConfig.shape),
            joinedload(BestConfig.environment),
        )
    )
    if kernel is not None:
        query = query.where(KernelRow.name == kernel)
    if not include_interpreted:
        query = query.where(Environment.interpreted.is_(False))
    ranked = func.coalesce(BestConfig.shootout_p50_us, BestConfig.p50_us)
    return list(session.scalars(query.order_by(BestConfig.measured_at.desc(), ranked)))


def trials_by_hash(
    session: Session, study_ids: Sequence[int], config_hashes: Sequence[str]
) -> list[Trial]:
    """The `ok` trials of these studies whose config hash is one of these."""
    if not study_ids or not config_hashes:
        return []
    query = select(Trial).where(
        Trial.study_id.in_(list(study_ids)),
        Trial.config_hash.in_(list(config_hashes)),
        Trial.status == TrialStatus.OK.value,
    )
    return list(session.scalars(query))


def ok_trial_points(session: Session, study_id: int) -> list[tuple[dict[str, Any], float]]:
    """(config, p50) of a study's `ok` trials, in trial order."""
    query = (
        select(Trial.config, Trial.p50_us)
        .where(
            Trial.study_id == study_id,
            Trial.status == TrialStatus.OK.value,
            Trial.p50_us.is_not(None),
        )
        .order_by(Trial.number)
    )
    return [(dict(config), float(p50)) for config, p50 in session.execute(query)]


__all__ += [
    "count_studies",
    "count_trials_matching",
    "fastest_trial",
    "newest_study_of",
    "ok_trial_points",
    "published_best_of_study",
    "published_bests",
    "running_studies",
    "shapes_in_database",
    "trial_stats",
    "trials_by_hash",
    "tuned_gpus_by_shape",
]


def newest_studies(
    session: Session, strategy: str, states: Sequence[str], kernel: str | None = None
) -> list[Study]:
    """The newest study of each (kernel, shape, environment) of a strategy, where that one is
    in one of `states`; oldest first, with kernel, shape and environment loaded."""
    newest = (
        select(func.max(Study.id))
        .where(Study.strategy == strategy)
        .group_by(Study.kernel_id, Study.shape_id, Study.environment_id)
    )
    query = (
        select(Study)
        .join(KernelRow, Study.kernel_id == KernelRow.id)
        .where(Study.id.in_(newest), Study.state.in_(list(states)))
        .options(joinedload(Study.kernel), joinedload(Study.shape), joinedload(Study.environment))
        .order_by(Study.id)
    )
    if kernel is not None:
        query = query.where(KernelRow.name == kernel)
    return list(session.scalars(query))


def has_kernel(session: Session, name: str) -> bool:
    """Whether the database has a kernel of that name (a study of it was ever stored)."""
    return session.scalar(select(KernelRow.id).where(KernelRow.name == name)) is not None


def newest_study_by_shape(
    session: Session, kernel: str | None = None
) -> dict[tuple[str, str], int]:
    """(kernel, shape key) -> the id of the newest study of that shape, in any environment."""
    query = (
        select(KernelRow.name, ShapeRow.key, func.max(Study.id))
        .select_from(Study)
        .join(KernelRow, Study.kernel_id == KernelRow.id)
        .join(ShapeRow, Study.shape_id == ShapeRow.id)
        .group_by(KernelRow.name, ShapeRow.key)
    )
    if kernel is not None:
        query = query.where(KernelRow.name == kernel)
    return {(name, key): study_id for name, key, study_id in session.execute(query)}


__all__ += ["has_kernel", "newest_studies", "newest_study_by_shape"]
