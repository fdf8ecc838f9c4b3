"""`evotune serve`: the app under uvicorn, with bounds against slow clients and a quick stop.

- request headers must arrive within `header_timeout_s` (protocol.py), a body within
  `body_timeout_s` (middleware.py); idle keep-alive connections close after `keep_alive_s`;
- on SIGTERM or Ctrl-C, requests in flight get `graceful_shutdown_s`, then the searches the
  service started are interrupted and the process ends.
"""

from __future__ import annotations

import os
from typing import Any

import uvicorn
from fastapi import FastAPI

from evotune.api.app import create_app
from evotune.api.limits import HttpLimits
from evotune.api.protocol import GuardedHTTPProtocol
from evotune.storage.engine import normalize_url

__all__ = ["serve", "service_app", "uvicorn_settings"]


def service_app() -> FastAPI:
    """The app as a serving process runs it: database from $EVOTUNE_DB, token from
    $EVOTUNE_TOKEN (uvicorn's `--factory evotune.api.server:service_app`)."""
    return create_app(freeze_gc=True)


def uvicorn_settings(limits: HttpLimits) -> dict[str, Any]:
    """The uvicorn settings every serving process uses (also `loadtest`'s server)."""
    protocol: type[GuardedHTTPProtocol] = GuardedHTTPProtocol
    if limits.header_timeout_s != protocol.header_timeout_s:

        class Protocol(GuardedHTTPProtocol):
            header_timeout_s = limits.header_timeout_s

        protocol = Protocol
    return {
        "http": protocol,
        "timeout_keep_alive": limits.keep_alive_s,
        "timeout_graceful_shutdown": limits.graceful_shutdown_s,
        "backlog": 4096,
        "log_level": "info",
        "access_log": False,
    }


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    db_url: str | None = None,
    workers: int = 1,
    limits: HttpLimits | None = None,
) -> None:
    """Serve the API and dashboard until interrupted; the token comes from $EVOTUNE_TOKEN.

    The database is never created here: a missing one is reported by /healthz (503) until
    `evotune db upgrade` creates it. Raises UserError (one line for the CLI) for a URL that
    cannot be parsed or a token that is too short. With workers > 1, uvicorn runs that many
    processes, each with its own app.
    """
    limits = limits or HttpLimits()
    settings = uvicorn_settings(limits)
    if workers <= 1:
        app = create_app(db_url, freeze_gc=True, http_limits=limits)
        uvicorn.run(app, host=host, port=port, **settings)
        return
    probe = create_app(db_url)  # fail here, once, with one clear line
    probe.state.best_cache.close()
    probe.state.database.dispose()
    if db_url:
        os.environ["EVOTUNE_DB"] = normalize_url(db_url)
    settings["http"] = GuardedHTTPProtocol  # importable by name in the worker processes
    uvicorn.run(
        "evotune.api.server:service_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        **settings,
    )
