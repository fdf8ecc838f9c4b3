"""The FastAPI application: JSON API under /v1, OpenAPI at /openapi.json, dashboard at /."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from evotune.api.best_cache import BestCache, BestCacheMiddleware
from evotune.api.dashboard import STATIC_DIR
from evotune.api.openapi import install_openapi
from evotune.api.routes import best, dashboard, health, jobs, kernels, shapes, studies
from evotune.api.search_jobs import DEFAULT_LAUNCHER, SearchJobs
from evotune.api.spaces import SpaceCatalog
from evotune.errors import UserError
from evotune.storage import default_db_url, open_database
from evotune.storage.engine import normalize_url

__all__ = ["MIN_TOKEN_LENGTH", "create_app"]

MIN_TOKEN_LENGTH = 16


def _token(token: str | None) -> str | None:
    """The POST token: the argument, else $EVOTUNE_TOKEN; None (POST off) when neither is set."""
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
    yield
    app.state.jobs.shutdown()
    app.state.best_cache.close()
    app.state.database.dispose()


def create_app(
    db_url: str | None = None,
    token: str | None = None,
    *,
    launcher: Sequence[str] = DEFAULT_LAUNCHER,
    job_log_dir: Path | None = None,
    spaces_dir: Path | None = None,
    freeze_gc: bool = False,
) -> FastAPI:
    """Build the service over one database; raises UserError if it cannot be opened.

    `launcher` is the command that `search ...` is appended to for POST /v1/studies.
    `freeze_gc` (for a process that only serves, as `serve` runs it) moves every object alive
    at startup out of the garbage collector's reach: a process-wide effect.
    """
    url = normalize_url(db_url or default_db_url())
    database = open_database(url)
    app = FastAPI(
        title="evotune",
        summary="Best Triton launch configs per shape, and the trial history behind them.",
        version="1",
        lifespan=_lifespan,
        docs_url=None,  # Swagger UI loads from a CDN; the service works offline
        redoc_url=None,
    )
    app.state.database = database
    app.state.freeze_gc = freeze_gc
    app.state.token = _token(token)
    app.state.spaces = SpaceCatalog(spaces_dir)
    app.state.jobs = SearchJobs(url, launcher=launcher, log_dir=job_log_dir)
    app.state.best_cache = BestCache(database.engine)
    app.state.environments = {}  # id -> EnvironmentOut; rows never change once written
    app.add_middleware(BestCacheMiddleware, cache=app.state.best_cache)
    for module in (health, kernels, shapes, best, studies, jobs, dashboard):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(StarletteHTTPException, _http_error)
    install_openapi(app)
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's handler, but a 405 lists every method the path allows, not one route's."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        allowed = sorted(
            method
            for method in ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
            if any(
                route.matches({**request.scope, "method": method})[0] is Match.FULL
                for route in request.app.router.routes
            )
        )
        if allowed:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
    return await http_exception_handler(request, exc)
