"""A cache of GET /v1/best answers that is checked against the database on every request.

Why: on a small host the ORM lookup costs about a millisecond of CPU, and the fleet asks for
the same few shapes over and over. Why it is safe: an answer depends only on the
`best_configs` table (kernels, shapes and environments rows never change once written), and
every request first asks SQLite whether anything changed:

1. `PRAGMA data_version` on a private connection that only reads: it changes whenever another
   connection commits (a few microseconds). Unchanged -> every cached answer is current.
2. If it changed (the search commits trials all the time), a fingerprint of `best_configs`
   (row count, highest id, newest measured_at, sums of ids and latencies): unchanged -> the
   cached answers stay; changed -> they are all dropped.

`publish_best` stamps `measured_at` on every insert or update, so a new best always moves the
fingerprint. Answers computed while the table changed are filed under the generation they
started in, which is already discarded, so a stale answer is never served. Only SQLite
databases are cached; on any other backend every request queries.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Hashable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["BestCache", "BestCacheMiddleware", "CachedAnswer"]

CachedAnswer = tuple[int, bytes]  # (HTTP status, JSON body)

_FINGERPRINT_SQL = (
    "SELECT count(*), max(id), max(measured_at), total(id), total(trial_id), total(study_id), "
    "total(p50_us), total(shootout_p50_us), total(tflops), total(max_error) FROM best_configs"
)


class BestCache:
    """Answers keyed by the request's query string, valid while `best_configs` is unchanged."""

    def __init__(self, engine: Engine, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: dict[Hashable, CachedAnswer] = {}
        self._conn: sqlite3.Connection | None = None
        self._data_version: Any = None
        self._fingerprint: Any = None
        self._flights: dict[
            tuple[int, int, Hashable],
            tuple[dict[Hashable, CachedAnswer], asyncio.Future[CachedAnswer]],
        ] = {}
        self.hits = 0
        self.misses = 0
        self._path: Path | None = None
        self._closed = False
        if engine.url.get_backend_name() == "sqlite":
            path = engine.url.database
            if path and path != ":memory:":
                self._path = Path(path).expanduser().resolve()

    def _connect(self) -> sqlite3.Connection | None:
        """The private connection, opened on first use (lock held); None without a file.

        Read-write mode, but only ever read: a read-only open of a WAL database fails when
        its -shm file is missing. `mode=rw` never creates the file.
        """
        if self._conn is None and self._path is not None and not self._closed:
            try:
                self._conn = sqlite3.connect(
                    self._path.as_uri() + "?mode=rw",
                    uri=True,
                    timeout=1.0,
                    isolation_level=None,  # autocommit: no read transaction is left open
                    check_same_thread=False,
                )
            except sqlite3.Error:
                return None
        return self._conn

    @property
    def enabled(self) -> bool:
        return self._path is not None and not self._closed

    def _current(self) -> dict[Hashable, CachedAnswer]:
        """The entries of the current generation, after checking the database (lock held)."""
        assert self._conn is not None
        version = self._conn.execute("PRAGMA data_version").fetchall()[0][0]
        if version != self._data_version:
            fingerprint = self._conn.execute(_FINGERPRINT_SQL).fetchall()[0]
            if fingerprint != self._fingerprint:
                self._entries = {}
                self._fingerprint = fingerprint
            self._data_version = version
        return self._entries

    def lookup(self, key: Hashable) -> tuple[CachedAnswer | None, dict[Hashable, CachedAnswer]]:
        """(answer or None, the generation to file a fresh answer under)."""
        with self._lock:
            if self._connect() is None:
                return None, {}
            try:
                entries = self._current()
            except sqlite3.Error:  # no schema, not a database: the endpoint's query says why
                return None, {}
            answer = entries.get(key)
        if answer is None:
            self.misses += 1
        else:
            self.hits += 1
        return answer, entries

    def store(
        self, generation: dict[Hashable, CachedAnswer], key: Hashable, answer: CachedAnswer
    ) -> None:
        if not self.enabled:
            return
        with self._lock:
            if len(generation) >= self.max_entries:
                generation.clear()  # bounded memory against scanners; refills from the DB
            generation[key] = answer

    def flight(
        self, generation: dict[Hashable, CachedAnswer], key: Hashable
    ) -> asyncio.Future[CachedAnswer] | None:
        """The lookup already under way for this key in this generation, if any."""
        loop = id(asyncio.get_running_loop())
        entry = self._flights.get((loop, id(generation), key))
        return None if entry is None else entry[1]

    async def single_flight(
        self,
        generation: dict[Hashable, CachedAnswer],
        key: Hashable,
        compute: Callable[[], Awaitable[CachedAnswer]],
    ) -> CachedAnswer:
        """Compute a missed answer once per generation and key, however many ask at once.

        Requests that missed in the same generation share one lookup: all of them arrived
        after the last change the cache saw, so the answer is as fresh for each of them.
        """
        # Per event loop too: a future cannot be awaited from another loop (tests run several).
        flight_key = (id(asyncio.get_running_loop()), id(generation), key)
        flight = self._flights.get(flight_key)
        if flight is not None:
            return await asyncio.shield(flight[1])
        future: asyncio.Future[CachedAnswer] = asyncio.get_running_loop().create_future()
        # The generation rides along so that its id cannot be reused while the flight lasts.
        self._flights[flight_key] = (generation, future)
        try:
            answer = await compute()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            del self._flights[flight_key]
        future.set_result(answer)
        self.store(generation, key, answer)
        return answer

    def reset(self) -> None:
        """Forget every answer and the connection: the database file went away or changed."""
        # Under the lock: closing a sqlite3 connection while another thread runs a query on
        # it crashes the process (a segfault, not an exception).
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._entries = {}
            self._data_version = self._fingerprint = None

    def close(self) -> None:
        self.reset()
        self._closed = True


class BestCacheMiddleware:
    """Answers GET /v1/best from the cache before routing; a miss goes on to the endpoint.

    Routing and parameter validation cost more than the lookup itself on a small host, and a
    cached answer has already passed both for the same query string.
    """

    def __init__(
        self,
        app: ASGIApp,
        cache: BestCache,
        healthy: Callable[[], bool] = lambda: True,
        path: str = "/v1/best",
    ) -> None:
        self.app = app
        self.cache = cache
        self.healthy = healthy  # an unfit database answers from the endpoint (a 503)
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"] == self.path
            and self.healthy()
        ):
            answer, generation = self.cache.lookup(scope["query_string"])
            if answer is None and (flight := self.cache.flight(generation, scope["query_string"])):
                # Already being looked up (just after a new best): wait for that answer
                # rather than validating and routing this request all over again.
                try:
                    answer = await asyncio.shield(flight)
                except Exception:  # that lookup failed (e.g. a 503): this one tries itself
                    answer = None
            if answer is not None:
                status, body = answer
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"x-evotune-cache", b"hit"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
