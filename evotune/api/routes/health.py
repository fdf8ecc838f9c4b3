"""GET /healthz: the service is up and its database answers."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from evotune.api.deps import DatabaseDep
from evotune.api.schemas import ErrorOut, HealthOut

router = APIRouter(tags=["health"])


def _version() -> str:
    try:
        return version("evotune")
    except PackageNotFoundError:
        return "unknown"


@router.get(
    "/healthz",
    response_model=HealthOut,
    responses={503: {"model": ErrorOut, "description": "the database does not answer"}},
)
def healthz(database: DatabaseDep) -> HealthOut:
    """Liveness and readiness: 200 when a query on the database succeeds."""
    try:
        with database.session() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(exc).splitlines()[0]
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"database: {reason}") from None
    return HealthOut(status="ok", database=database.url, version=_version())
