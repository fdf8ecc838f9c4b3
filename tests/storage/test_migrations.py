"""Models and Alembic revisions must describe the same schema."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from evotune.storage import open_database
from evotune.storage.models import Base


def test_migrations_match_models(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'm.db'}")
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], f"models and migrations disagree; add a revision: {diff}"
    tables = set(inspect(db.engine).get_table_names())
    assert {"kernels", "shapes", "environments", "studies", "trials", "best_configs"} <= tables


def test_sqlite_runs_in_wal_mode_with_busy_timeout(tmp_path: Path) -> None:
    db = open_database(str(tmp_path / "w.db"))  # a bare path is a SQLite file
    with db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30_000


def test_upgrade_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'i.db'}"
    open_database(url).dispose()
    db = open_database(url)
    with db.engine.connect() as connection:
        assert (
            connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
        )
