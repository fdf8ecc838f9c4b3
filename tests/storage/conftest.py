"""Databases for the storage tests: SQLite in a temporary folder, and PostgreSQL when
EVOTUNE_TEST_POSTGRES_URL names a server (`.ci/postgres.sh` starts one and prints its URL).

Each PostgreSQL test works in a fresh schema of that database (through the connection's
search_path) in a session time zone far from UTC, and drops it afterwards, so runs never see
each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from evotune.storage import Database, open_database

POSTGRES_URL = os.environ.get("EVOTUNE_TEST_POSTGRES_URL")

needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="EVOTUNE_TEST_POSTGRES_URL is not set (.ci/postgres.sh starts a server and prints one)",
)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose connections work in a new, empty schema (dropped after the test), in a
    session time zone other than UTC."""
    if not POSTGRES_URL:
        pytest.skip("EVOTUNE_TEST_POSTGRES_URL is not set (.ci/postgres.sh starts a server)")
    schema = f"evotune_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    # A session time zone far from UTC: evotune's engine must still hand back UTC.
    options = f"-csearch_path={schema} -ctimezone=Asia/Kolkata"
    url = make_url(POSTGRES_URL).update_query_dict({"options": options})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    db = open_database(pg_url)
    yield db
    db.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = open_database(f"sqlite:///{tmp_path / 'store.db'}")
    yield db
    db.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def sql_db(request: pytest.FixtureRequest) -> Database:
    """Each SQL backend in turn (PostgreSQL skipped without a server)."""
    return request.getfixturevalue(f"{'pg' if request.param == 'postgres' else 'sqlite'}_db")
