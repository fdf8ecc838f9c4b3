"""Stored records as JSON: studies, trials, bests and their environments, with their builders
from ORM rows; and the rows of `evotune bench`. The CLI's `--json` and the REST API both print these, so the two give the
same fields and always valid JSON.

Builders live here so every caller turns rows into JSON the same way: timestamps as UTC,
non-finite floats (an `inf` max error of a wrong result) as null, which JSON can carry.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from evotune.space import SearchSpace, Shape
from evotune.storage import heartbeat
from evotune.storage.models import BestConfig, Environment, ShapeRow, Study, Trial

if TYPE_CHECKING:
    from evotune.bench import BenchRow

__all__ = [
    "BenchRowOut",
    "BestOut",
    "EnvironmentOut",
    "FrozenModel",
    "PublishedBestOut",
    "ShapeRef",
    "StudyDetailOut",
    "StudyOut",
    "TrialOut",
    "UtcDatetime",
    "bench_row_out",
    "best_out",
    "environment_out",
    "finite",
    "shape_ref",
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


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True)


class ShapeRef(FrozenModel):
    name: str | None = Field(description="null for an ad-hoc shape")
    key: str = Field(description="canonical JSON of the dims: the shape's identity")
    dims: dict[str, Any]


class EnvironmentOut(FrozenModel):
    fingerprint: str = Field(description="hash of gpu, driver, cuda, torch, triton, kernel source")
    gpu: str
    driver: str | None
    cuda: str | None
    torch: str
    triton: str
    kernel_source_hash: str
    interpreted: bool = Field(description="true: Triton's CPU interpreter, not a GPU")


class BestOut(FrozenModel):
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


class TrialOut(FrozenModel):
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


class StudyOut(FrozenModel):
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


class PublishedBestOut(FrozenModel):
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


class BenchRowOut(FrozenModel):
    """One row of `evotune bench --json` (evotune/bench.py); null where not measured (the
    launch-cost fields under the interpreter, or for a row without a GPU time)."""

    label: str
    kind: str = Field(description="kernel or baseline")
    p50_us: float | None = Field(description="GPU time of one call, L2 flushed (the trial timer)")
    tflops: float | None
    ratio_to_best_baseline: float | None
    max_error: float | None
    n_runs: int
    error: str | None
    wall_us_per_call: float | None = Field(
        description="back-to-back calls, synchronized once at the end, per call"
    )
    host_us_per_call: float | None = Field(description="the same calls' enqueue time, per call")
    graph_us_per_call: float | None = Field(
        description="GPU time per call of the call captured in a CUDA graph and replayed"
    )
    graph_error: str | None = Field(description="why there is no graph time")


def bench_row_out(row: BenchRow) -> BenchRowOut:
    return BenchRowOut(
        label=row.label,
        kind=row.kind,
        p50_us=finite(row.p50_us),
        tflops=finite(row.tflops),
        ratio_to_best_baseline=finite(row.ratio_to_best_baseline),
        max_error=finite(row.max_error),
        n_runs=row.n_runs,
        error=row.error,
        wall_us_per_call=finite(row.wall_us_per_call),
        host_us_per_call=finite(row.host_us_per_call),
        graph_us_per_call=finite(row.graph_us_per_call),
        graph_error=row.graph_error,
    )


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
