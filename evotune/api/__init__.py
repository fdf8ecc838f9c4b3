"""The REST service and dashboard: `create_app` builds it, `serve` runs it under uvicorn."""

from __future__ import annotations

from evotune.api.app import create_app
from evotune.api.server import serve

__all__ = ["create_app", "serve"]
