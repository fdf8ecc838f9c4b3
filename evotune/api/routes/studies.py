"""Studies: list, one study, its trials (filtered, paginated, incremental), and POST to search.

Each read is one unit of work in `DatabaseGate`: query, build the models and their JSON in a
worker thread, then the event loop only sends bytes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from evotune.api import openapi
from evotune.api.deps import GateDep, JobsDep, SpacesDep, TokenDep
from evotune.api.errors import error_responses
from evotune.api.params import resolve_kernel
from evotune.api.responses import JSONBytes, dump
from evotune.api.routes.jobs import job_out
from evotune.api.schemas import JobOut, SearchRequest, StudyPage, TrialPage
from evotune.errors import JobsBusyError, StudyNotFoundError, UserError
from evotune.records import TrialStatus
from evotune.schemas import StudyDetailOut, study_detail_out, study_out, trial_out
from evotune.space import SearchSpace
from evotune.storage import Study, Trial, heartbeat, repository

router = APIRouter(prefix="/v1", tags=["studies"])

StudyId = Annotated[int, Path(ge=1, le=2**62, description="a study id")]
_READ_ERRORS = error_responses(422, 503)
_ONE_STUDY_ERRORS = error_responses(404, 422, 503, s404="no study with that id")


@router.get("/studies", response_model=StudyPage, responses=_READ_ERRORS)
async def list_studies(
    gate: GateDep,
    spaces: SpacesDep,
    kernel: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Response:
    """Newest first, with trial counts by status and the best p50 so far."""
    if kernel is not None:
        kernel = resolve_kernel(spaces, kernel).kernel

    def read(session: Session) -> bytes:
        studies = repository.list_studies(session, kernel, limit=limit, offset=offset)
        stats = repository.trial_stats(session, [s.id for s in studies])
        page = StudyPage(
            total=repository.count_studies(session, kernel),
            limit=limit,
            offset=offset,
            items=[study_out(s, *stats[s.id]) for s in studies],
        )
        return dump(page)

    return JSONBytes(await gate.read(read))


@router.get("/studies/{study_id}", response_model=StudyDetailOut, responses=_ONE_STUDY_ERRORS)
async def get_study(gate: GateDep, spaces: SpacesDep, study_id: StudyId) -> Response:
    """One study with its winner (or fastest ok trial so far) and its published best."""

    def read(session: Session) -> bytes:
        study = _study(session, study_id)
        counts, best_p50 = repository.trial_stats(session, [study.id])[study.id]
        best = None
        if study.best_trial_id is not None:
            best = session.get(Trial, study.best_trial_id)
        if best is None:
            best = repository.fastest_trial(session, study.id)
        space = _space_or_none(spaces, study.kernel.name)
        published = repository.published_best_of_study(session, study.id)
        return dump(study_detail_out(study, counts, best_p50, space, best, published))

    return JSONBytes(await gate.read(read))


@router.get("/studies/{study_id}/trials", response_model=TrialPage, responses=_ONE_STUDY_ERRORS)
async def list_trials(
    gate: GateDep,
    study_id: StudyId,
    status_: Annotated[TrialStatus | None, Query(alias="status")] = None,
    generation: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    after: Annotated[
        int | None,
        Query(
            ge=-1,
            le=2**31 - 1,
            description="only trials numbered above this one: a live view asks for what is "
            "new since the last trial it holds (and its still-running ones again)",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    include_samples: Annotated[bool, Query(description="add raw timing samples")] = False,
) -> Response:
    """Trials in trial-number order; `total` counts every trial matching the filters."""
    status_value = None if status_ is None else status_.value

    def read(session: Session) -> bytes:
        _study(session, study_id)
        trials = repository.list_trials(
            session, study_id, status_value, generation, limit, offset, after
        )
        total = repository.count_trials_matching(session, study_id, status_value, generation, after)
        page = TrialPage(
            total=total,
            limit=limit,
            offset=offset,
            items=[trial_out(t, include_samples) for t in trials],
        )
        return dump(page)

    return JSONBytes(await gate.read(read))


@router.post(
    "/studies",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    dependencies=[TokenDep],
    responses={
        **error_responses(400, 401, 403, 409, 413, 422, 503),
        202: {
            "description": "the search was started",
            "headers": {
                "Location": {"description": "the job: /v1/jobs/{id}", "schema": {"type": "string"}}
            },
        },
    },
)
async def start_study(
    body: SearchRequest, response: Response, spaces: SpacesDep, jobs: JobsDep, gate: GateDep
) -> JobOut:
    """Start `evotune search` in a process the service owns; the study appears when it starts.

    One search at a time on this host: a job of this service, or a search started from the
    CLI on the same database (seen by its heartbeat), is a 409. Without `fresh`, the newest
    study of the same kernel, shape and strategy is resumed, and a budget other than its own
    is a 409 rather than a silent change of that study.
    """
    space = resolve_kernel(spaces, body.kernel)
    if body.shape not in space.shapes:
        known = ", ".join(space.shapes)
        raise _bad_body("shape", f"unknown shape {body.shape!r}; known shapes: {known}")
    strategies = _known_strategies()
    if strategies is not None and body.strategy not in strategies:
        raise _bad_body(
            "strategy", f"unknown strategy {body.strategy!r}; known: {', '.join(strategies)}"
        )
    conflict = await gate.read(lambda session: _conflict(session, space, body))
    if conflict is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, conflict)
    try:
        job = jobs.start(
            kernel=space.kernel,
            shape=body.shape,
            strategy=body.strategy,
            budget=body.budget,
            seed=body.seed,
            interpret=body.interpret,
            fresh=body.fresh,
        )
    except JobsBusyError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job_out(job)


def _conflict(session: Session, space: SearchSpace, body: SearchRequest) -> str | None:
    """Why this search must not start now, or None."""
    here = heartbeat.host_name()
    for study in repository.running_studies(session, heartbeat.lease_start()):
        # Only this host's searches compete for its GPU; one killed since its last beat is
        # not running any more.
        if study.runner_host == here and heartbeat.is_alive(study):
            return (
                f"study {study.id} is being searched on this host (pid {study.runner_pid}); "
                "wait for it to finish, or stop that search (Ctrl-C in its terminal)"
            )
    if body.fresh:
        return None
    shape_key = space.shape(body.shape).key
    resumed = repository.newest_study_of(
        session, space.kernel, shape_key, body.strategy, body.interpret
    )
    if resumed is None or resumed.budget == body.budget:
        return None
    done = repository.count_trials(session, resumed.id)
    return (
        f"this would resume study {resumed.id} ({resumed.state}, budget {resumed.budget}, "
        f'{done} trials) and change its budget to {body.budget}; send "fresh": true for a '
        f'new study, or "budget": {resumed.budget} to resume it as it is'
    )


def _study(session: Session, study_id: int) -> Study:
    try:
        return repository.get_study(session, study_id)
    except StudyNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


def _space_or_none(spaces: SpacesDep, kernel: str) -> SearchSpace | None:
    try:
        return spaces.get(kernel)
    except UserError:  # the kernel's file went away: still show the study
        return None


def _bad_body(field: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": None}]
    )


def _known_strategies() -> list[str] | None:
    """Strategy names from the registry; None if it cannot be imported (the CLI will say)."""
    return openapi.known_strategies()
