"""How the service reaches its database: never wedged, never silently wrong.

- `DatabaseGate.call(fn)` runs one unit of database work, whole, in one of a few worker
  threads: a request never holds a connection while it waits for anything else (the wedge of
  issue 23 was a session dependency holding its connection across FastAPI's threadpool hop).
  Waiting for a free slot is bounded in count and time, and past either the answer is an
  immediate 503 with Retry-After. Each call has a deadline: SQLite's busy timeout and a
  progress handler that interrupts a statement past it; PostgreSQL's statement_timeout.
- `DatabaseGuard` knows whether the database is fit to serve: the SQLite file exists and is
  the one the connections opened (a deleted or replaced file drops the pooled connections,
  which would go on reading the old one), and the schema is at the revision this code needs.
  The service never creates or migrates a database; `evotune db upgrade` does.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from evotune.api.gate import Gate
from evotune.api.limits import DbLimits
from evotune.errors import ServiceUnavailableError
from evotune.storage import Database
from evotune.storage.engine import head_revision, make_engine, normalize_url

__all__ = ["DatabaseGate", "DatabaseGuard", "describe", "open_service_database"]

log = logging.getLogger("evotune.api")
T = TypeVar("T")

UPGRADE_HINT = "run `evotune db upgrade` (with the service's --db) to create or migrate it"


def open_service_database(url: str, limits: DbLimits) -> tuple[Database, DatabaseGuard]:
    """The service's database: never created here, a pool of `slots` connections and a
    deadline on every statement; and its guard, with a connection of its own for checks."""
    url = normalize_url(url)
    engine = make_engine(
        url,
        create=False,
        timeout_s=limits.timeout_s,
        pool_size=limits.slots,
        max_overflow=0,
        pool_timeout=limits.wait_s,
    )
    # The checks' own connection: /healthz answers even while every slot is taken.
    checks = make_engine(url, create=False, timeout_s=1.0, pool_size=1, max_overflow=0)
    for each in (engine, checks):
        if each.url.get_backend_name() == "sqlite":
            event.listen(each, "connect", _install_deadline_handler)
    database = Database(engine)
    return database, DatabaseGuard(database, checks, limits.recheck_s)


# --- deadlines ------------------------------------------------------------------------------

_deadline = threading.local()


def _past_deadline() -> int:
    deadline = getattr(_deadline, "at", None)
    return 1 if deadline is not None and time.monotonic() > deadline else 0


def _install_deadline_handler(dbapi_connection: Any, _record: Any) -> None:
    # Called every 20k SQLite VM steps: a statement past the call's deadline is interrupted.
    dbapi_connection.set_progress_handler(_past_deadline, 20_000)


# --- is the database fit to serve? ----------------------------------------------------------


class DatabaseGuard:
    """The reason the database cannot serve now, or None; cheap enough for every request."""

    def __init__(self, database: Database, checks: Engine, recheck_s: float = 2.0) -> None:
        self.database = database
        self.checks = checks
        self.recheck_s = recheck_s
        url = database.engine.url
        path = url.database if url.get_backend_name() == "sqlite" else None
        self.path = Path(path).expanduser().resolve() if path and path != ":memory:" else None
        self.backend = url.get_backend_name()
        self.revision: str | None = None
        self._identity: tuple[int, int] | None = None
        self._schema_problem: str | None = None
        self._checked_at = -math.inf
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._on_replaced: list[Callable[[], None]] = []

    def on_replaced(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the database file goes away or is replaced."""
        self._on_replaced.append(callback)

    def problem(self) -> str | None:
        """Why the database cannot serve (file missing or replaced, schema not at head)."""
        if self.path is not None:
            try:
                stat = os.stat(self.path)
            except FileNotFoundError:
                self._moved(None)
                return f"the database file does not exist; {UPGRADE_HINT}"
            except OSError:
                self._moved(None)
                return "the database file cannot be read"
            self._moved((stat.st_dev, stat.st_ino))
        return self._schema_problem

    def _moved(self, identity: tuple[int, int] | None) -> None:
        if identity == self._identity:
            return
        with self._lock:
            if identity == self._identity:
                return
            had_one = self._identity is not None
            self._identity = identity
            self._checked_at = -math.inf  # a new file: read its revision again
            self._schema_problem = None
        if had_one:
            log.warning("the database file was removed or replaced; dropping its connections")
            self.database.engine.dispose()
            self.checks.dispose()
            for callback in self._on_replaced:
                callback()

    def stale(self) -> bool:
        return time.monotonic() - self._checked_at > self.recheck_s

    def refresh(self) -> str | None:
        """Read the schema revision (blocking: call it from a worker thread); while another
        thread reads it, the last known answer."""
        if not self._refreshing.acquire(blocking=False):
            return self._schema_problem
        try:
            return self._refresh()
        finally:
            self._refreshing.release()

    def _refresh(self) -> str | None:
        problem: str | None
        revision = None
        outer = getattr(_deadline, "at", None)  # a call's deadline, when a call refreshes
        _deadline.at = time.monotonic() + 1.0
        try:
            with self.checks.connect() as connection:
                revision = connection.execute(
                    text("SELECT version_num FROM alembic_version")
                ).scalar()
        except SQLAlchemyError as exc:
            problem = describe(exc)
        else:
            head = head_revision()
            if revision is None:
                problem = f"the database has no evotune schema; {UPGRADE_HINT}"
            elif revision != head:
                problem = (
                    f"the database schema is at revision {revision}, this service needs "
                    f"{head}; {UPGRADE_HINT}"
                )
            else:
                problem = None
        finally:
            _deadline.at = outer
        self.revision = revision
        self._schema_problem = problem
        self._checked_at = time.monotonic()
        return problem

    def failed(self) -> None:
        """A call failed on the database: read the revision again on the next call."""
        self._checked_at = -math.inf


def describe(exc: SQLAlchemyError) -> str:
    """A one-line reason fit for an unauthenticated client: no paths, hosts or SQL."""
    original = exc.orig if isinstance(exc, DBAPIError) else None
    text_ = str(original or exc).splitlines()[0].lower() if (original or exc) else ""
    if isinstance(exc, PoolTimeout):
        return "the database is busy"
    if "no such table" in text_ or "undefinedtable" in type(original).__name__.lower():
        return f"the database has no evotune schema; {UPGRADE_HINT}"
    if "no such column" in text_:
        return f"the database schema is older than this service; {UPGRADE_HINT}"
    if "file is not a database" in text_ or "malformed" in text_:
        return "the database file is not a readable SQLite database"
    if "unable to open" in text_:
        return f"the database file cannot be opened; {UPGRADE_HINT}"
    if "interrupted" in text_ or "statement timeout" in text_ or "canceling statement" in text_:
        return "the database call took too long"
    if "locked" in text_ or "busy" in text_:
        return "the database is locked by another process"
    log.warning("database error: %s", exc)
    return "the database does not answer; the service log has the details"


# --- the gate -------------------------------------------------------------------------------


class DatabaseGate:
    """Database work through a `Gate`, with the guard checked first and a deadline per call."""

    def __init__(self, database: Database, guard: DatabaseGuard, limits: DbLimits) -> None:
        self.database = database
        self.guard = guard
        self.limits = limits
        self.gate = Gate(limits.slots, limits.queue, limits.wait_s, "database requests")

    async def call(self, fn: Callable[[], T]) -> T:
        """`fn()` in a worker thread under the call's deadline; 503 when it cannot be run."""
        problem = self.guard.problem()
        if problem is not None:
            raise ServiceUnavailableError(problem, code="database_unavailable", retry_after=5)
        return await self.gate.run(partial(self._run, fn))

    async def read(self, fn: Callable[[Session], T]) -> T:
        """`fn(session)` in one short session, as `call` runs it."""

        def in_session() -> T:
            with self.database.session() as session:
                return fn(session)

        return await self.call(in_session)

    def _run(self, fn: Callable[[], T]) -> T:
        _deadline.at = time.monotonic() + self.limits.timeout_s
        try:
            if self.guard.stale() and (problem := self.guard.refresh()) is not None:
                raise ServiceUnavailableError(problem, code="database_unavailable", retry_after=5)
            return fn()
        except SQLAlchemyError as exc:
            self.guard.failed()
            code = "busy" if isinstance(exc, PoolTimeout) else "database_unavailable"
            raise ServiceUnavailableError(describe(exc), code=code) from None
        finally:
            _deadline.at = None
