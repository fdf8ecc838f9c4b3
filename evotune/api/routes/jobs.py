"""Jobs: the searches this service started (POST /v1/studies); behind the token, since a job
shows its command line, pid and log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from evotune.api.deps import JobsDep, TokenDep
from evotune.api.errors import error_responses
from evotune.api.schemas import JobOut
from evotune.api.search_jobs import SearchJob, SearchJobs

router = APIRouter(prefix="/v1", tags=["jobs"], dependencies=[TokenDep])

JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]
_ONE_JOB = error_responses(401, 403, 404, 422, s404="no job with that id")


def job_out(job: SearchJob) -> JobOut:
    return JobOut(
        id=job.id,
        pid=job.pid,
        state=job.state,
        returncode=job.poll(),
        command=list(job.command),
        request=dict(job.request),
        started_at=job.started_at,
        finished_at=job.finished_at,
        log_tail=job.log_tail(),
    )


@router.get("/jobs", response_model=list[JobOut], responses=error_responses(401, 403))
async def list_jobs(jobs: JobsDep) -> list[JobOut]:
    """Newest first; jobs are remembered until the service restarts."""
    return [job_out(job) for job in jobs.all()]


@router.get("/jobs/{job_id}", response_model=JobOut, responses=_ONE_JOB)
async def get_job(jobs: JobsDep, job_id: JobId) -> JobOut:
    return job_out(_job(jobs, job_id))


@router.delete(
    "/jobs/{job_id}",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=_ONE_JOB,
)
async def stop_job(jobs: JobsDep, job_id: JobId) -> JobOut:
    """Stop a search and forget its job: the search is interrupted (its study is marked so,
    and stays), killed if it has not ended 10 s later. The answer is the job's last view
    (`stopping`, or how it had ended); afterwards GET answers 404."""
    job = _job(jobs, job_id)
    jobs.stop(job)
    return job_out(job)


def _job(jobs: SearchJobs, job_id: str) -> SearchJob:
    job = jobs.get(job_id)
    if job is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no job {job_id!r}; GET /v1/jobs lists them"
        )
    return job
