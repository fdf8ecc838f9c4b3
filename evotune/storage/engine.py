"""Engine and session setup; the schema is brought to the newest Alembic revision on open.

SQLite (the default, `./evotune.db`) runs in WAL mode with a busy timeout so the API can
read while a search writes. Any other SQLAlchemy URL (PostgreSQL for several hosts) works.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import sqlite3
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache, partial
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.exc import DatabaseError as DBAPIDatabaseError
from sqlalchemy.orm import Session, sessionmaker

from evotune.errors import DatabaseError

__all__ = [
    "Database",
    "alembic_config",
    "default_db_url",
    "display_url",
    "head_revision",
    "make_engine",
    "open_database",
    "upgrade_schema",
]

DEFAULT_DB_URL = "sqlite:///evotune.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# PostgreSQL advisory lock held while migrating: hosts opening a fresh shared database at
# once take turns (any fixed 64-bit number; this one spells "evotune" in ASCII).
MIGRATION_LOCK_KEY = 0x65766F74756E65


def default_db_url() -> str:
    """The database URL from $EVOTUNE_DB, else ./evotune.db."""
    return os.environ.get("EVOTUNE_DB") or DEFAULT_DB_URL


def normalize_url(url: str) -> str:
    """Accept a bare file path as a SQLite database."""
    if "://" not in url:
        return f"sqlite:///{url}"
    return url


def alembic_config(url: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(Path(str(resources.files("evotune.migrations")))))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest Alembic revision this code knows: what `upgrade_schema` brings a database to."""
    return ScriptDirectory.from_config(alembic_config(DEFAULT_DB_URL)).get_current_head()


def display_url(url: str) -> str:
    """The URL with its password masked: what error messages and logs may show."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _json_finite(value: Any) -> str:
    """JSON for PostgreSQL, whose json type refuses NaN and Infinity: those become null."""

    def clean(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {k: clean(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [clean(v) for v in item]
        return item

    return json.dumps(clean(value))


def _postgres_session(dbapi_connection: Any, _record: Any) -> None:
    # timestamptz values come back in the session's time zone: UTC, as evotune writes them.
    cursor = dbapi_connection.cursor()
    cursor.execute("SET TIME ZONE 'UTC'")
    cursor.close()
    dbapi_connection.commit()


def make_engine(
    url: str, *, create: bool = True, timeout_s: float | None = None, **pool: Any
) -> Engine:
    """An engine for `url` (no connection is made yet).

    `create=False` never creates a SQLite file: it is opened read-write only if it exists (a
    missing file stays missing and connecting fails). `timeout_s` bounds how long a statement
    waits for a lock (SQLite's busy timeout) or runs (PostgreSQL's statement_timeout, and the
    connect timeout); default 30 s of lock wait. `pool` goes to create_engine (pool_size, ...).
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            f"cannot parse database URL {url!r}; use e.g. sqlite:///evotune.db"
        ) from None
    kwargs: dict[str, Any] = dict(pool)
    busy_ms = SQLITE_BUSY_TIMEOUT_MS if timeout_s is None else int(timeout_s * 1000)
    if parsed.get_backend_name() == "postgresql":
        # A search holds its engine for hours; a server restart must not end it.
        kwargs["pool_pre_ping"] = True
        kwargs["json_serializer"] = _json_finite
        if timeout_s is not None:
            # Added to the URL's own options (e.g. a search_path), which connect_args replace.
            options = f"{parsed.query.get('options', '')} -c statement_timeout={busy_ms}"
            kwargs["connect_args"] = {
                "connect_timeout": max(1, round(timeout_s)),
                "options": options.strip(),
            }
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": busy_ms / 1000, "check_same_thread": False}
        database = parsed.database or ""
        uri = parsed.query.get("uri") == "true"  # sqlite:///file:PATH?mode=ro&uri=true
        if uri:
            database = database.removeprefix("file:")
        if database and database != ":memory:":
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise DatabaseError(f"cannot open database {url!r}: folder {parent} does not exist")
            if not create and not uri:  # a URI names its own mode
                kwargs["creator"] = partial(_sqlite_existing, database, busy_ms / 1000)
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        hint = ""
        if parsed.get_backend_name() == "postgresql":
            hint = (
                "; for PostgreSQL install psycopg 3 (pip install 'evotune[postgres]')"
                " and use postgresql+psycopg://"
            )
        raise DatabaseError(f"cannot open database {display_url(url)!r}: {exc}{hint}") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", partial(_sqlite_pragmas, busy_ms))
        # Pooled connections still open at exit are never closed by SQLite, so the WAL
        # stays beside the file: a copy of evotune.db alone would then miss recent writes.
        atexit.register(_dispose_at_exit, weakref.ref(engine))
    if parsed.get_backend_name() == "postgresql":
        event.listen(engine, "connect", _postgres_session)
    return engine


def _dispose_at_exit(engine: weakref.ref[Engine]) -> None:
    alive = engine()
    if alive is not None:
        alive.dispose()


def _sqlite_existing(path: str, timeout_s: float) -> sqlite3.Connection:
    """A connection to an existing SQLite file; "unable to open" when there is none."""
    uri = Path(path).expanduser().resolve().as_uri() + "?mode=rw"
    return sqlite3.connect(uri, uri=True, timeout=timeout_s, check_same_thread=False)


def _sqlite_pragmas(busy_ms: int, dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def upgrade_schema(engine: Engine) -> None:
    """Run Alembic migrations up to head on this engine (no-op when already there)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Held to the end of this transaction: the first host migrates, the others wait
            # and then find the schema at head.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        elif connection.dialect.name == "sqlite":
            # The write lock, for the same reason: processes opening a new file at once.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        current = MigrationContext.configure(connection).get_current_revision()
        if current == head_revision():
            return
        config = alembic_config(str(engine.url))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Database:
    """An engine plus a session factory; the one handle storage functions take."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(url: str | None = None, upgrade: bool = True) -> Database:
    """Open (and by default migrate) the database; one clear error if it cannot be opened."""
    url = normalize_url(url or default_db_url())
    engine = make_engine(url)
    try:
        if upgrade:
            upgrade_schema(engine)
        else:
            with engine.connect():
                pass
    except DBAPIDatabaseError as exc:  # unreachable, locked, or a file that is not SQLite
        engine.dispose()
        reason = str(exc.orig).splitlines()[0] if exc.orig else str(exc).splitlines()[0]
        raise DatabaseError(f"cannot open database {display_url(url)!r}: {reason}") from None
    return Database(engine)
