"""Models and Alembic revisions must describe the same schema."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from evotune.storage import open_database
from evotune.storage.engine import alembic_config, head_revision
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
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version == head_revision()


def test_a_database_of_the_first_schema_upgrades_with_its_trials(tmp_path: Path) -> None:
    """0001 -> head: trials stored before `attempts` existed count as dispatched once."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0001")
    engine = create_engine(url)
    with engine.begin() as connection:
        for sql in (
            "INSERT INTO kernels (id, name, created_at) VALUES (1, 'k', '2026-11-30')",
            "INSERT INTO shapes (id, kernel_id, key, dims) VALUES (1, 1, '{}', '{}')",
            "INSERT INTO environments (id, fingerprint_hash, gpu, torch, triton, "
            "kernel_source_hash, interpreted, data, created_at) VALUES (1, 'f', 'g', 't', 't', "
            "'h', 0, '{}', '2026-11-30')",
            "INSERT INTO studies (id, kernel_id, shape_id, environment_id, strategy, settings, "
            "seed, budget, state, interpreted, created_at, updated_at) VALUES (1, 1, 1, 1, "
            "'random', '{}', 0, 1, 'running', 0, '2026-11-30', '2026-11-30')",
            "INSERT INTO trials (id, study_id, number, config, config_hash, status, n_runs, "
            "samples_us, generation, parents, operator, seed, created_at) VALUES (1, 1, 0, "
            "'{}', 'c', 'running', 0, '[]', 0, '[]', 'seed', 0, '2026-11-30')",
        ):
            connection.execute(text(sql))
    engine.dispose()
    db = open_database(url)  # upgrades to head
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT attempts FROM trials")).scalar() == 1
