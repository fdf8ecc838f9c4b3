"""One router per resource; `create_app` includes them all."""

from __future__ import annotations

from evotune.api.routes import best, dashboard, health, jobs, kernels, shapes, studies

__all__ = ["best", "dashboard", "health", "jobs", "kernels", "shapes", "studies"]
