"""GET /v1/jobs: the searches this service started (POST /v1/studies) and how they ended."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from evotune.api.deps import JobsDep
from evotune.api.schemas import ErrorOut, JobOut
from evotune.api.search_jobs import SearchJob

router = APIRouter(prefix="/v1", tags=["jobs"])


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


@router.get("/jobs", response_model=list[JobOut])
def list_jobs(jobs: JobsDep) -> list[JobOut]:
    """Newest first; jobs are remembered until the service restarts."""
    return [job_out(job) for job in jobs.all()]


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    responses={404: {"model": ErrorOut, "description": "no job with that id"}},
)
def get_job(jobs: JobsDep, job_id: Annotated[str, Path(max_length=64)]) -> JobOut:
    job = jobs.get(job_id)
    if job is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no job {job_id!r}; GET /v1/jobs lists them"
        )
    return job_out(job)
