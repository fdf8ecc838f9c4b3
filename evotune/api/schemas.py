"""Pydantic response (and request) models of the REST API, and their builders from ORM rows.

Builders live here so every route turns rows into JSON the same way: timestamps as UTC,
non-finite floats (an `inf` max error of a wrong result) as null, which JSON can carry.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from evotune.records import TrialStatus
from evotune.space import SearchSpace, Shape
from evotune.storage import heartbeat
from evotune.storage.models import BestConfig, Environment, ShapeRow, Study, Trial

__all__ = [
    "BestOut",
    "EnvironmentOut",
    "ErrorOut",
    "FieldError",
    "HealthOut",
    "ImportanceOut",
    "JobOut",
    "KernelOut",
    "OverviewRow",
    "ParameterOut",
    "PublishedBestOut",
    "SearchRequest",
    "ShapeOut",
    "ShapeRef",
    "StudyDetailOut",
    "StudyOut",
    "StudyPage",
    "TrialOut",
    "TrialPage",
    "best_out",
    "environment_out",
    "study_detail_out",
    "study_out",
    "trial_out",
]


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; evotune stores UTC, so say so on the wire.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


def finite(value: float | None) -> float | None:
    """A float JSON can carry: NaN and infinities become None."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class FieldError(_Out):
    """One rejected part of a request: where (e.g. ["query", "limit"]) and why."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(_Out):
    """The body of every 4xx and 5xx answer, whatever raised it."""

    status: int = Field(description="the HTTP status, repeated for logs and scripts")
    code: str = Field(description="a stable machine-readable name, e.g. not_found, busy")
    detail: str = Field(description="what went wrong and what to do, in one line")
    errors: list[FieldError] = Field(
        default_factory=list, description="the rejected fields of a 422; empty otherwise"
    )


class HealthOut(_Out):
    status: Literal["ok"]
    backend: str = Field(description="the database's kind: sqlite or postgresql")
    schema_revision: str = Field(description="the Alembic revision the database is at")
    version: str


class ParameterOut(_Out):
    name: str
    kind: str
    choices: list[Any]
    default: Any
    when: str | None
    doc: str


class KernelOut(_Out):
    name: str
    description: str
    dims: dict[str, str] = Field(description="dimension name -> type (int, bool, str)")
    parameters: list[ParameterOut]
    shapes: list[str] = Field(description="named shapes declared in the search space")


class ShapeRef(_Out):
    name: str | None = Field(description="null for an ad-hoc shape")
    key: str = Field(description="canonical JSON of the dims: the shape's identity")
    dims: dict[str, Any]


class ShapeOut(ShapeRef):
    kernel: str
    source: Literal["space", "database"] = Field(
        description="declared in the search space, or known only from studies (ad hoc)"
    )
    tuned_on: list[str] = Field(
        default_factory=list, description="GPUs with a published, GPU-measured best config"
    )


class EnvironmentOut(_Out):
    fingerprint: str = Field(description="hash of gpu, driver, cuda, torch, triton, kernel source")
    gpu: str
    driver: str | None
    cuda: str | None
    torch: str
    triton: str
    kernel_source_hash: str
    interpreted: bool = Field(description="true: Triton's CPU interpreter, not a GPU")


class BestOut(_Out):
    kernel: str
    shape: ShapeRef = Field(description="the shape this config was tuned for")
    config: dict[str, Any]
    p50_us: float = Field(description="median latency from the search, microseconds")
    shootout_p50_us: float | None = Field(
        description="median latency in the final interleaved re-measurement, microseconds"
    )
    tflops: float | None
    max_error: float | None
    trial_id: int
    study_id: int
    measured_at: UtcDatetime
    environment: EnvironmentOut
    stale: bool = Field(
        description="measured under another kernel source than the one asked for (only "
        "served with stale=true): the kernel changed since; re-tune"
    )
    kernel_source_hash: str | None = Field(
        description="the kernel source asked for: the client's, or the one installed beside "
        "the service; null when neither is known"
    )
    exact: bool = Field(
        description="false: the shape asked for is not tuned, and with nearest=true this is "
        "the best of the nearest tuned shape, `shape`"
    )
    requested: ShapeRef = Field(description="the shape asked for")


class TrialOut(_Out):
    id: int
    number: int
    generation: int
    status: str
    config: dict[str, Any]
    config_hash: str
    p50_us: float | None
    p20_us: float | None
    p80_us: float | None
    n_runs: int
    max_error: float | None
    compile_s: float | None
    run_s: float | None
    error: str | None
    parents: list[str]
    operator: str
    seed: int
    shootout_p50_us: float | None
    created_at: UtcDatetime
    finished_at: UtcDatetime | None
    samples_us: list[float] | None = Field(
        default=None, description="raw timing samples; only with include_samples=true"
    )


class TrialPage(_Out):
    total: int
    limit: int
    offset: int
    items: list[TrialOut]


class StudyOut(_Out):
    id: int
    kernel: str
    shape: ShapeRef
    strategy: str
    settings: dict[str, Any]
    seed: int
    budget: int
    state: str
    interpreted: bool
    replay: str | None
    best_trial_id: int | None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    finished_at: UtcDatetime | None
    heartbeat_at: UtcDatetime | None = Field(
        description="when the search process last said it is alive (null: never)"
    )
    alive: bool = Field(
        description="running, and its search's heartbeat is recent: not abandoned by a "
        "killed process"
    )
    environment: EnvironmentOut
    trials: int = Field(description="trials stored so far, any status")
    status_counts: dict[str, int]
    best_p50_us: float | None = Field(description="lowest p50 among ok trials")


class StudyPage(_Out):
    total: int
    limit: int
    offset: int
    items: list[StudyOut]


class PublishedBestOut(_Out):
    trial_id: int
    config: dict[str, Any]
    p50_us: float
    shootout_p50_us: float | None
    tflops: float | None
    measured_at: UtcDatetime


class StudyDetailOut(StudyOut):
    note: str | None
    shootout: list[Any] | None
    parameters: list[str] = Field(description="the kernel's tunable parameters, in order")
    best_trial: TrialOut | None = Field(description="the study's winner, else its fastest ok trial")
    published_best: PublishedBestOut | None = Field(
        description="the best config this study published for serving, if any"
    )


def _integral_float(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


JsonInt = Annotated[int, BeforeValidator(_integral_float)]


class SearchRequest(BaseModel):
    """What POST /v1/studies starts: `evotune search` with these arguments."""

    # JSON types exactly as documented: no "8" for 8 nor 0 for false (8.0 is an integer in JSON).
    model_config = ConfigDict(extra="forbid", strict=True)

    kernel: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    shape: str = Field(
        min_length=1, max_length=100, description="a named shape of the kernel's space"
    )
    strategy: str = Field(
        default="evolution", min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_-]+$"
    )
    budget: JsonInt = Field(ge=1, le=100_000, description="trials to measure")
    seed: JsonInt = Field(default=0, ge=0, le=2**31 - 1)
    interpret: bool = Field(default=False, description="run under Triton's CPU interpreter")
    fresh: bool = Field(
        default=False,
        description="start a new study; without it the newest study of the same kernel, "
        "shape and strategy is resumed, and only if the budget is the same as its own",
    )


class JobOut(_Out):
    id: str
    pid: int
    state: Literal["running", "stopping", "succeeded", "failed", "stopped"]
    returncode: int | None
    command: list[str]
    request: dict[str, Any]
    started_at: UtcDatetime
    finished_at: UtcDatetime | None
    log_tail: str = Field(description="the end of the search's combined stdout and stderr")


class BaselineOut(_Out):
    name: str = Field(description="what the plug-in compares with, e.g. cuBLAS or cuDNN")
    p50_us: float
    speedup: float = Field(description="baseline p50 / best p50: above 1, the best is faster")


class OverviewRow(_Out):
    """The served best of one kernel x shape x GPU, and how much it gains."""

    kernel: str
    shape: ShapeRef
    gpu: str
    interpreted: bool
    environments: int = Field(description="environments (driver, versions) with a best here")
    study_id: int
    trial_id: int
    config: dict[str, Any]
    p50_us: float = Field(description="the best's p50: the shoot-out's when there was one")
    tflops: float | None
    measured_at: UtcDatetime
    default_p50_us: float | None = Field(
        description="the space's default config in the same study (shoot-out p50 if measured)"
    )
    speedup_over_default: float | None
    baseline: BaselineOut | None = Field(
        description="the plug-in's baseline, when the study recorded one in its shoot-out"
    )


class ParamImportance(_Out):
    param: str
    importance: float = Field(description="share of the p50's variation, 0..1 (sums to 1)")


class ImportanceOut(_Out):
    study_id: int
    evaluator: str
    trials: int = Field(description="ok trials the evaluator saw")
    importances: list[ParamImportance] = Field(description="most important first")
    skipped: list[str] = Field(
        description="parameters not assessed: one value in every trial, or not set in all"
    )
    note: str | None = None


# --- builders ----------------------------------------------------------------------------


def environment_out(env: Environment) -> EnvironmentOut:
    return EnvironmentOut(
        fingerprint=env.fingerprint_hash,
        gpu=env.gpu,
        driver=env.driver,
        cuda=env.cuda,
        torch=env.torch,
        triton=env.triton,
        kernel_source_hash=env.kernel_source_hash,
        interpreted=env.interpreted,
    )


def shape_ref(row: ShapeRow | Shape) -> ShapeRef:
    return ShapeRef(name=row.name, key=row.key, dims=dict(row.dims))


def best_out(
    kernel: str,
    shape: Shape,
    row: BestConfig,
    env: EnvironmentOut,
    source_hash: str | None,
    requested: Shape | None = None,
) -> BestOut:
    """The answer of /v1/best: `row`, the best of `shape`, asked for as `requested` (default:
    `shape` itself)."""
    asked = requested or shape
    return BestOut(
        kernel=kernel,
        shape=shape_ref(shape),
        config=dict(row.config),
        p50_us=row.p50_us,
        shootout_p50_us=finite(row.shootout_p50_us),
        tflops=finite(row.tflops),
        max_error=finite(row.max_error),
        trial_id=row.trial_id,
        study_id=row.study_id,
        measured_at=row.measured_at,
        environment=env,
        stale=env.kernel_source_hash != source_hash,
        kernel_source_hash=source_hash,
        exact=asked.key == shape.key,
        requested=shape_ref(asked),
    )


def trial_out(trial: Trial, include_samples: bool = False) -> TrialOut:
    samples = None
    if include_samples:
        samples = [s for s in (finite(x) for x in trial.samples_us) if s is not None]
    return TrialOut(
        id=trial.id,
        number=trial.number,
        generation=trial.generation,
        status=trial.status,
        config=dict(trial.config),
        config_hash=trial.config_hash,
        p50_us=finite(trial.p50_us),
        p20_us=finite(trial.p20_us),
        p80_us=finite(trial.p80_us),
        n_runs=trial.n_runs,
        max_error=finite(trial.max_error),
        compile_s=finite(trial.compile_s),
        run_s=finite(trial.run_s),
        error=trial.error,
        parents=[str(p) for p in trial.parents],
        operator=trial.operator,
        seed=trial.seed,
        shootout_p50_us=finite(trial.shootout_p50_us),
        created_at=trial.created_at,
        finished_at=trial.finished_at,
        samples_us=samples,
    )


def _study_fields(study: Study, counts: dict[str, int], best_p50: float | None) -> dict[str, Any]:
    kernel = study.kernel.name
    return {
        "id": study.id,
        "kernel": kernel,
        "shape": shape_ref(study.shape),
        "strategy": study.strategy,
        "settings": dict(study.settings),
        "seed": study.seed,
        "budget": study.budget,
        "state": study.state,
        "interpreted": study.interpreted,
        "replay": study.replay,
        "best_trial_id": study.best_trial_id,
        "created_at": study.created_at,
        "updated_at": study.updated_at,
        "finished_at": study.finished_at,
        "heartbeat_at": study.heartbeat_at,
        "alive": heartbeat.is_alive(study),
        "environment": environment_out(study.environment),
        "trials": sum(counts.values()),
        "status_counts": dict(sorted(counts.items())),
        "best_p50_us": finite(best_p50),
    }


def study_out(study: Study, counts: dict[str, int], best_p50: float | None) -> StudyOut:
    return StudyOut(**_study_fields(study, counts, best_p50))


def study_detail_out(
    study: Study,
    counts: dict[str, int],
    best_p50: float | None,
    space: SearchSpace | None,
    best_trial: Trial | None,
    published: BestConfig | None,
) -> StudyDetailOut:
    published_out = None
    if published is not None:
        published_out = PublishedBestOut(
            trial_id=published.trial_id,
            config=dict(published.config),
            p50_us=published.p50_us,
            shootout_p50_us=finite(published.shootout_p50_us),
            tflops=finite(published.tflops),
            measured_at=published.measured_at,
        )
    return StudyDetailOut(
        **_study_fields(study, counts, best_p50),
        note=study.note,
        shootout=None if study.shootout is None else list(study.shootout),
        parameters=list(space.parameters) if space is not None else [],
        best_trial=None if best_trial is None else trial_out(best_trial),
        published_best=published_out,
    )


TRIAL_STATUSES: tuple[str, ...] = tuple(s.value for s in TrialStatus)
