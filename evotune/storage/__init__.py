"""Storage: the `TrialStore` a search writes through (SQL and in-memory), and under the SQL
one the SQLAlchemy models, engine/session setup and repository functions."""

from __future__ import annotations

from evotune.storage import heartbeat, repository
from evotune.storage.engine import Database, default_db_url, open_database, upgrade_schema
from evotune.storage.memory_store import MemoryTrialStore
from evotune.storage.models import BestConfig, Environment, KernelRow, ShapeRow, Study, Trial
from evotune.storage.sql_store import SqlTrialStore
from evotune.storage.trial_store import (
    BestRecord,
    NewTrial,
    OpenedStudy,
    StudyRecord,
    StudySpec,
    TrialRecord,
    TrialStore,
)

__all__ = [
    "BestConfig",
    "BestRecord",
    "Database",
    "Environment",
    "KernelRow",
    "MemoryTrialStore",
    "NewTrial",
    "OpenedStudy",
    "ShapeRow",
    "SqlTrialStore",
    "Study",
    "StudyRecord",
    "StudySpec",
    "Trial",
    "TrialRecord",
    "TrialStore",
    "default_db_url",
    "heartbeat",
    "open_database",
    "repository",
    "upgrade_schema",
]
