"""`evotune serve`: the app under uvicorn."""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI

from evotune.api.app import create_app
from evotune.storage.engine import normalize_url

__all__ = ["serve", "service_app"]


def service_app() -> FastAPI:
    """The app as a serving process runs it: database from $EVOTUNE_DB, token from
    $EVOTUNE_TOKEN (uvicorn's `--factory evotune.api.server:service_app`)."""
    return create_app(freeze_gc=True)


def serve(
    host: str = "127.0.0.1", port: int = 8000, db_url: str | None = None, workers: int = 1
) -> None:
    """Serve the API and dashboard until interrupted; the token comes from $EVOTUNE_TOKEN.

    Raises UserError (one line for the CLI) if the database cannot be opened or the token is
    too short. With workers > 1, uvicorn runs that many processes, each with its own app.
    """
    if workers <= 1:
        app = create_app(db_url, freeze_gc=True)
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
        return
    probe = create_app(db_url)  # fail here, once, with one clear line
    probe.state.best_cache.close()
    probe.state.database.dispose()
    if db_url:
        os.environ["EVOTUNE_DB"] = normalize_url(db_url)
    uvicorn.run(
        "evotune.api.server:service_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
    )
