"""FastAPI dependencies: the database gate, the search spaces, the search jobs, the bearer guard.

Everything lives on `app.state` (set by `create_app`), so one process can serve several apps
(tests do) without globals. Every dependency is `async def`: FastAPI runs a plain `def`
dependency in its thread pool, a hop per request that nothing here needs. No dependency holds
a database connection: routes hand whole units of work to `DatabaseGate` (database.py).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from evotune.api.database import DatabaseGate
from evotune.api.search_jobs import SearchJobs
from evotune.api.spaces import SpaceCatalog

__all__ = [
    "GateDep",
    "JobsDep",
    "SpacesDep",
    "TokenDep",
    "get_gate",
    "get_jobs",
    "get_spaces",
    "require_token",
]


async def get_gate(request: Request) -> DatabaseGate:
    gate: DatabaseGate = request.app.state.gate
    return gate


async def get_spaces(request: Request) -> SpaceCatalog:
    spaces: SpaceCatalog = request.app.state.spaces
    return spaces


async def get_jobs(request: Request) -> SearchJobs:
    jobs: SearchJobs = request.app.state.jobs
    return jobs


_bearer = HTTPBearer(auto_error=False, description="the service's EVOTUNE_TOKEN")


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """`Authorization: Bearer <EVOTUNE_TOKEN>`; with no token set these operations are off."""
    expected: str | None = request.app.state.token
    if not expected:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "this operation is disabled: the service has no token; "
            "restart it with EVOTUNE_TOKEN set to enable it",
        )
    given = credentials.credentials if credentials is not None else ""
    if not given or not secrets.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong bearer token; send `Authorization: Bearer <EVOTUNE_TOKEN>`",
            headers={"WWW-Authenticate": "Bearer"},
        )


GateDep = Annotated[DatabaseGate, Depends(get_gate)]
SpacesDep = Annotated[SpaceCatalog, Depends(get_spaces)]
JobsDep = Annotated[SearchJobs, Depends(get_jobs)]
TokenDep = Depends(require_token)
