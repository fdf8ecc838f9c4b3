"""Pydantic models of the REST API's own requests and responses (errors, health, pages,
jobs, the overview). The stored records they carry (studies, trials, bests) are
`evotune.schemas`, which the CLI prints as well.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from evotune.schemas import FrozenModel, ShapeRef, StudyOut, TrialOut, UtcDatetime

__all__ = [
    "BaselineOut",
    "ErrorOut",
    "FieldError",
    "HealthOut",
    "ImportanceOut",
    "JobOut",
    "KernelOut",
    "OverviewRow",
    "ParamImportance",
    "ParameterOut",
    "SearchRequest",
    "ShapeOut",
    "StudyPage",
    "TrialPage",
]


class FieldError(FrozenModel):
    """One rejected part of a request: where (e.g. ["query", "limit"]) and why."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(FrozenModel):
    """The body of every 4xx and 5xx answer, whatever raised it."""

    status: int = Field(description="the HTTP status, repeated for logs and scripts")
    code: str = Field(description="a stable machine-readable name, e.g. not_found, busy")
    detail: str = Field(description="what went wrong and what to do, in one line")
    errors: list[FieldError] = Field(
        default_factory=list, description="the rejected fields of a 422; empty otherwise"
    )


class HealthOut(FrozenModel):
    status: Literal["ok"]
    backend: str = Field(description="the database's kind: sqlite or postgresql")
    schema_revision: str = Field(description="the Alembic revision the database is at")
    version: str


class ParameterOut(FrozenModel):
    name: str
    kind: str
    choices: list[Any]
    default: Any
    when: str | None
    doc: str


class KernelOut(FrozenModel):
    name: str
    description: str
    dims: dict[str, str] = Field(description="dimension name -> type (int, bool, str)")
    parameters: list[ParameterOut]
    shapes: list[str] = Field(description="named shapes declared in the search space")


class ShapeOut(ShapeRef):
    kernel: str
    source: Literal["space", "database"] = Field(
        description="declared in the search space, or known only from studies (ad hoc, or "
        "a kernel decorated with evotune.autotune, which has no search-space file)"
    )
    tuned_on: list[str] = Field(
        default_factory=list, description="GPUs with a published, GPU-measured best config"
    )
    newest_study_id: int | None = Field(
        default=None, description="the newest study of this shape, in any environment"
    )


class TrialPage(FrozenModel):
    total: int
    limit: int
    offset: int
    items: list[TrialOut]


class StudyPage(FrozenModel):
    total: int
    limit: int
    offset: int
    items: list[StudyOut]


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


class JobOut(FrozenModel):
    id: str
    pid: int
    state: Literal["running", "stopping", "succeeded", "failed", "stopped"]
    returncode: int | None
    command: list[str]
    request: dict[str, Any]
    started_at: UtcDatetime
    finished_at: UtcDatetime | None
    log_tail: str = Field(description="the end of the search's combined stdout and stderr")


class BaselineOut(FrozenModel):
    name: str = Field(description="what the plug-in compares with, e.g. cuBLAS or cuDNN")
    p50_us: float
    speedup: float = Field(description="baseline p50 / best p50: above 1, the best is faster")


class OverviewRow(FrozenModel):
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


class ParamImportance(FrozenModel):
    param: str
    importance: float = Field(description="share of the p50's variation, 0..1 (sums to 1)")


class ImportanceOut(FrozenModel):
    study_id: int
    evaluator: str
    trials: int = Field(description="ok trials the evaluator saw")
    importances: list[ParamImportance] = Field(description="most important first")
    skipped: list[str] = Field(
        description="parameters not assessed: one value in every trial, or not set in all"
    )
    note: str | None = None
