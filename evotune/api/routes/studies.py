"""Studies: list, one study, its trials (filtered, paginated), and POST to start a search."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from evotune.api import openapi
from evotune.api.deps import JobsDep, SessionDep, SpacesDep, TokenDep
from evotune.api.params import resolve_kernel
from evotune.api.routes.jobs import job_out
from evotune.api.schemas import (
    ErrorOut,
    JobOut,
    SearchRequest,
    StudyDetailOut,
    StudyPage,
    TrialPage,
    study_detail_out,
    study_out,
    trial_out,
)
from evotune.api.search_jobs import JobsBusyError
from evotune.errors import StudyNotFoundError, UserError
from evotune.records import TrialStatus
from evotune.storage import Study, Trial, repository

router = APIRouter(prefix="/v1", tags=["studies"])

StudyId = Annotated[int, Path(ge=1, le=2**62, description="a study id")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no study with that id"}
}


@router.get("/studies", response_model=StudyPage)
def list_studies(
    session: SessionDep,
    spaces: SpacesDep,
    kernel: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> StudyPage:
    """Newest first, with trial counts by status and the best p50 so far."""
    if kernel is not None:
        kernel = resolve_kernel(spaces, kernel).kernel
    studies = repository.list_studies(session, kernel, limit=limit, offset=offset)
    stats = repository.trial_stats(session, [s.id for s in studies])
    return StudyPage(
        total=repository.count_studies(session, kernel),
        limit=limit,
        offset=offset,
        items=[study_out(s, *stats[s.id]) for s in studies],
    )


@router.get("/studies/{study_id}", response_model=StudyDetailOut, responses=_NOT_FOUND)
def get_study(session: SessionDep, spaces: SpacesDep, study_id: StudyId) -> StudyDetailOut:
    """One study with its winner (or fastest ok trial so far) and its published best."""
    study = _study(session, study_id)
    counts, best_p50 = repository.trial_stats(session, [study.id])[study.id]
    best = None
    if study.best_trial_id is not None:
        best = session.get(Trial, study.best_trial_id)
    if best is None:
        best = repository.fastest_trial(session, study.id)
    try:
        space = spaces.get(study.kernel.name)
    except UserError:  # the kernel's file went away: still show the study
        space = None
    published = repository.published_best_of_study(session, study.id)
    return study_detail_out(study, counts, best_p50, space, best, published)


@router.get("/studies/{study_id}/trials", response_model=TrialPage, responses=_NOT_FOUND)
def list_trials(
    session: SessionDep,
    study_id: StudyId,
    status_: Annotated[TrialStatus | None, Query(alias="status")] = None,
    generation: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    include_samples: Annotated[bool, Query(description="add raw timing samples")] = False,
) -> TrialPage:
    """Trials in trial-number order; `total` counts every trial matching the filters."""
    _study(session, study_id)
    status_value = None if status_ is None else status_.value
    trials = repository.list_trials(
        session, study_id, status=status_value, generation=generation, limit=limit, offset=offset
    )
    total = repository.count_trials_matching(session, study_id, status_value, generation)
    return TrialPage(
        total=total,
        limit=limit,
        offset=offset,
        items=[trial_out(t, include_samples) for t in trials],
    )


@router.post(
    "/studies",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    dependencies=[TokenDep],
    responses={
        400: {"model": ErrorOut, "description": "the body cannot be read as JSON"},
        401: {"model": ErrorOut, "description": "missing or wrong bearer token"},
        403: {"model": ErrorOut, "description": "the service has no token: POST is off"},
        409: {"model": ErrorOut, "description": "a search is already running"},
    },
)
def start_study(
    body: SearchRequest, response: Response, spaces: SpacesDep, jobs: JobsDep
) -> JobOut:
    """Start `evotune search` in a process the service owns; the study appears when it starts."""
    space = resolve_kernel(spaces, body.kernel)
    if body.shape not in space.shapes:
        known = ", ".join(space.shapes)
        raise _bad_body("shape", f"unknown shape {body.shape!r}; known shapes: {known}")
    strategies = _known_strategies()
    if strategies is not None and body.strategy not in strategies:
        raise _bad_body(
            "strategy", f"unknown strategy {body.strategy!r}; known: {', '.join(strategies)}"
        )
    try:
        job = jobs.start(
            kernel=space.kernel,
            shape=body.shape,
            strategy=body.strategy,
            budget=body.budget,
            seed=body.seed,
            interpret=body.interpret,
        )
    except JobsBusyError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job_out(job)


def _study(session: Session, study_id: int) -> Study:
    try:
        return repository.get_study(session, study_id)
    except StudyNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


def _bad_body(field: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": None}]
    )


def _known_strategies() -> list[str] | None:
    """Strategy names from the registry; None if it cannot be imported (the CLI will say)."""
    return openapi.known_strategies()
