"""The FastAPI application: JSON API under /v1, OpenAPI at /openapi.json, dashboard at /.

The app never creates or migrates its database (`evotune db upgrade` does): a missing,
unreadable or unmigrated one makes /healthz and every database route a JSON 503 saying why.
"""

from __future__ import annotations

import gc
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from anyio import to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from evotune.api.best_cache import BestCache, BestCacheMiddleware
from evotune.api.dashboard import STATIC_DIR
from evotune.api.database import DatabaseGate, open_service_database
from evotune.api.errors import install_error_handlers
from evotune.api.limits import DbLimits, HttpLimits
from evotune.api.middleware import BodyLimit, SecurityHeaders, ShedWhenBusy
from evotune.api.openapi import install_openapi
from evotune.api.routes import (
    best,
    dashboard,
    health,
    importance,
    jobs,
    kernels,
    overview,
    shapes,
    studies,
)
from evotune.api.search_jobs import DEFAULT_LAUNCHER, SearchJobs
from evotune.api.spaces import SpaceCatalog
from evotune.errors import UserError
from evotune.storage import default_db_url
from evotune.storage.engine import normalize_url

__all__ = ["MIN_TOKEN_LENGTH", "create_app"]

MIN_TOKEN_LENGTH = 16


def _token(token: str | None) -> str | None:
    """The token: the argument, else $EVOTUNE_TOKEN; None (writes and jobs off) when neither."""
    value = token if token is not None else os.environ.get("EVOTUNE_TOKEN")
    if not value:
        return None
    if len(value) < MIN_TOKEN_LENGTH:
        raise UserError(
            f"EVOTUNE_TOKEN is too short ({len(value)} characters); use at least "
            f"{MIN_TOKEN_LENGTH}, e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`"
        )
    return value


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    if app.state.freeze_gc:
        # The ~10^6 objects of the imports and the app live as long as the process: keep
        # the collector from rescanning them, whose full passes stall requests in flight.
        gc.collect()
        gc.freeze()
    await to_thread.run_sync(app.state.guard.refresh)
    yield
    app.state.jobs.shutdown()
    app.state.best_cache.close()
    app.state.database.dispose()
    app.state.guard.checks.dispose()


def create_app(
    db_url: str | None = None,
    token: str | None = None,
    *,
    launcher: Sequence[str] = DEFAULT_LAUNCHER,
    job_log_dir: Path | None = None,
    spaces_dir: Path | None = None,
    freeze_gc: bool = False,
    db_limits: DbLimits | None = None,
    http_limits: HttpLimits | None = None,
) -> FastAPI:
    """Build the service over one database (which may not exist yet: then it says so).

    `launcher` is the command that `search ...` is appended to for POST /v1/studies.
    `freeze_gc` (for a process that only serves, as `serve` runs it) moves every object alive
    at startup out of the garbage collector's reach: a process-wide effect.
    Raises UserError for a database URL that cannot be parsed or a token that is too short.
    """
    url = normalize_url(db_url or default_db_url())
    db_limits = db_limits or DbLimits()
    http_limits = http_limits or HttpLimits()
    database, guard = open_service_database(url, db_limits)
    app = FastAPI(
        title="evotune",
        summary="Best Triton launch configs per shape, and the trial history behind them.",
        version="1",
        lifespan=_lifespan,
        docs_url=None,  # Swagger UI loads from a CDN; the service works offline
        redoc_url=None,
    )
    app.state.database = database
    app.state.guard = guard
    app.state.gate = DatabaseGate(database, guard, db_limits)
    app.state.freeze_gc = freeze_gc
    app.state.token = _token(token)
    app.state.spaces = SpaceCatalog(spaces_dir)
    app.state.jobs = SearchJobs(url, launcher=launcher, log_dir=job_log_dir)
    app.state.best_cache = BestCache(database.engine)
    app.state.environments = {}  # id -> EnvironmentOut; rows never change once written
    app.state.importance_cache = OrderedDict()  # (study, evaluator, ok trials) -> JSON
    guard.on_replaced(app.state.best_cache.reset)
    guard.on_replaced(app.state.environments.clear)
    guard.on_replaced(app.state.importance_cache.clear)
    # Outermost last: security headers on everything, shedding, the body bound, the cache.
    app.add_middleware(
        BestCacheMiddleware,
        cache=app.state.best_cache,
        healthy=lambda: guard.problem() is None,
    )
    app.add_middleware(
        BodyLimit, max_bytes=http_limits.max_body_bytes, timeout_s=http_limits.body_timeout_s
    )
    app.add_middleware(
        ShedWhenBusy,
        saturated=app.state.gate.gate.saturated,
        prefixes=("/v1/studies", "/v1/shapes", "/v1/overview"),
    )
    app.add_middleware(SecurityHeaders)
    for module in (health, kernels, shapes, best, overview, studies, importance, jobs, dashboard):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_error_handlers(app)
    install_openapi(app)
    return app
