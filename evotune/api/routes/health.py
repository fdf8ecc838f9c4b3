"""GET /healthz: 200 when the database answers at the schema revision this service needs.

Answered apart from the other routes' queue (a thread of its own, a second at most), so a
load balancer sees the truth while the service is busy; it never shows the database's URL.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from importlib.metadata import PackageNotFoundError, version

from anyio import CapacityLimiter, move_on_after, to_thread
from fastapi import APIRouter, Request

from evotune.api.database import DatabaseGuard
from evotune.api.errors import error_responses
from evotune.api.responses import JSONBytes, dump
from evotune.api.schemas import HealthOut
from evotune.errors import ServiceUnavailableError

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 1.0
_LIMITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


def _version() -> str:
    try:
        return version("evotune")
    except PackageNotFoundError:
        return "unknown"


def _limiter() -> CapacityLimiter:
    loop = asyncio.get_running_loop()
    limiter = _LIMITERS.get(loop)
    if limiter is None:
        limiter = _LIMITERS[loop] = CapacityLimiter(1)
    return limiter


@router.get(
    "/healthz",
    response_model=HealthOut,
    responses=error_responses(503, s503="the database is missing, unreadable, unmigrated or slow"),
)
async def healthz(request: Request) -> JSONBytes:
    """Liveness and readiness, with the reason when not ready."""
    guard: DatabaseGuard = request.app.state.guard
    problem = guard.problem()
    if problem is None:
        problem = await _checked(guard)
    if problem is not None:
        raise ServiceUnavailableError(problem, code="database_unavailable", retry_after=5)
    health = HealthOut(
        status="ok",
        backend=guard.backend,
        schema_revision=guard.revision or "unknown",
        version=_version(),
    )
    return JSONBytes(dump(health))


async def _checked(guard: DatabaseGuard) -> str | None:
    """Read the revision at most every `recheck_s` (one check at a time, for all callers)."""
    if not guard.stale():
        return guard.problem()
    started = time.monotonic()
    with move_on_after(CHECK_TIMEOUT_S):
        return await to_thread.run_sync(
            _refresh_if_stale, guard, limiter=_limiter(), abandon_on_cancel=True
        )
    return f"the database did not answer within {time.monotonic() - started:.1f} s"


def _refresh_if_stale(guard: DatabaseGuard) -> str | None:
    return guard.refresh() if guard.stale() else guard.problem()
