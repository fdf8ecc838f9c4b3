"""Storage: SQLAlchemy models, engine/session setup and repository functions."""

from __future__ import annotations

from evotune.storage import heartbeat, repository
from evotune.storage.engine import Database, default_db_url, open_database, upgrade_schema
from evotune.storage.models import BestConfig, Environment, KernelRow, ShapeRow, Study, Trial

__all__ = [
    "BestConfig",
    "Database",
    "Environment",
    "KernelRow",
    "ShapeRow",
    "Study",
    "Trial",
    "default_db_url",
    "heartbeat",
    "open_database",
    "repository",
    "upgrade_schema",
]
