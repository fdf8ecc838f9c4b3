"""`evotune serve`: the app under uvicorn."""

from __future__ import annotations

import uvicorn

from evotune.api.app import create_app

__all__ = ["serve"]


def serve(host: str = "127.0.0.1", port: int = 8000, db_url: str | None = None) -> None:
    """Serve the API and dashboard until interrupted; the token comes from $EVOTUNE_TOKEN.

    Raises UserError (one line for the CLI) if the database cannot be opened or the token is
    too short.
    """
    app = create_app(db_url)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
