"""FastAPI dependencies: the database session, the search spaces, the search jobs, the bearer guard.

Everything lives on `app.state` (set by `create_app`), so one process can serve several apps
(tests do) without globals.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from evotune.api.search_jobs import SearchJobs
from evotune.api.spaces import SpaceCatalog
from evotune.storage import Database

__all__ = [
    "DatabaseDep",
    "JobsDep",
    "SessionDep",
    "SpacesDep",
    "TokenDep",
    "get_database",
    "get_jobs",
    "get_session",
    "get_spaces",
    "require_token",
]


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def get_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    """One short session per request: WAL readers never block the search that writes."""
    with database.session() as session:
        yield session


def get_spaces(request: Request) -> SpaceCatalog:
    spaces: SpaceCatalog = request.app.state.spaces
    return spaces


def get_jobs(request: Request) -> SearchJobs:
    jobs: SearchJobs = request.app.state.jobs
    return jobs


_bearer = HTTPBearer(auto_error=False, description="the service's EVOTUNE_TOKEN")


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Writes need `Authorization: Bearer <EVOTUNE_TOKEN>`; with no token set they are off."""
    expected: str | None = request.app.state.token
    if not expected:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "starting searches is disabled: the service has no token; "
            "restart it with EVOTUNE_TOKEN set to enable POST",
        )
    given = credentials.credentials if credentials is not None else ""
    if not given or not secrets.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong bearer token; send `Authorization: Bearer <EVOTUNE_TOKEN>`",
            headers={"WWW-Authenticate": "Bearer"},
        )


DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[Session, Depends(get_session)]
SpacesDep = Annotated[SpaceCatalog, Depends(get_spaces)]
JobsDep = Annotated[SearchJobs, Depends(get_jobs)]
TokenDep = Depends(require_token)
