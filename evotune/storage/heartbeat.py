"""A search's heartbeat: while a study runs, its process stamps `studies.heartbeat_at`.

A study's `state` says `running` from the moment a search starts until it ends; a search that
is killed (SIGKILL, a lost host) never says otherwise. The heartbeat makes "running" mean
alive: a thread of the search process stamps the time, host and pid every `BEAT_S` seconds,
and a reader (the service's one-search-at-a-time check, the dashboard) treats a study whose
stamp is older than `LEASE_S` as abandoned.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import weakref
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from evotune.storage.engine import Database
from evotune.storage.models import Study, utcnow

__all__ = [
    "BEAT_S",
    "LEASE_S",
    "Heartbeat",
    "host_name",
    "is_alive",
    "lease_start",
    "pid_alive",
    "stamp",
    "start",
]

log = logging.getLogger("evotune.heartbeat")

BEAT_S = 10.0
LEASE_S = 45.0  # several missed beats: the search is gone
_MAX_FAILURES = 6


def host_name() -> str:
    return socket.gethostname()[:200]


def lease_start(now: datetime | None = None) -> datetime:
    """Heartbeats at or after this time are alive."""
    return (now or utcnow()) - timedelta(seconds=LEASE_S)


def pid_alive(pid: int | None) -> bool:
    """Whether a process of this host has that pid (None: unknown, so assumed alive)."""
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def is_alive(study: Study, now: datetime | None = None) -> bool:
    """Running, its search stamped a heartbeat within the lease, and (when that search ran on
    this host) its process still exists: a search killed a second ago does not block."""
    if study.state != "running" or study.heartbeat_at is None:
        return False
    beat = study.heartbeat_at
    bound = lease_start(now)
    if beat.tzinfo is None:  # SQLite hands back naive UTC
        bound = bound.replace(tzinfo=None)
    if beat < bound:
        return False
    return study.runner_host != host_name() or pid_alive(study.runner_pid)


def stamp(study: Study) -> None:
    """Mark a study this process is about to run as alive (in the caller's transaction)."""
    study.heartbeat_at = utcnow()
    study.runner_host = host_name()
    study.runner_pid = os.getpid()


class Heartbeat:
    """The beating thread of one study; it stops when `stop()` is called, when the study
    leaves `running`, or when this object is garbage collected (the caller's frame ended)."""

    def __init__(self, database: Database, study_id: int, every_s: float = BEAT_S) -> None:
        self.study_id = study_id
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_beat,
            args=(database, study_id, every_s, self._stop),
            name=f"evotune-heartbeat-{study_id}",
            daemon=True,
        )
        weakref.finalize(self, self._stop.set)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()


def start(database: Database, study_id: int) -> Heartbeat:
    """Start beating for a study that this process now runs; keep the result while it runs."""
    return Heartbeat(database, study_id).start()


def _beat(database: Database, study_id: int, every_s: float, stop: threading.Event) -> None:
    # The thread holds the database and the event, never the Heartbeat: its collection is
    # the signal that the search is over.
    failures = 0
    host, pid = host_name(), os.getpid()
    while not stop.is_set():
        try:
            with database.session() as session:
                result = session.execute(
                    update(Study)
                    .where(Study.id == study_id, Study.state == "running")
                    .values(
                        heartbeat_at=utcnow(),
                        runner_host=host,
                        runner_pid=pid,
                        updated_at=Study.updated_at,  # a beat is not a change of the study
                    )
                )
            if getattr(result, "rowcount", 1) == 0:
                return  # finished, interrupted, or gone
            failures = 0
        except SQLAlchemyError as exc:
            failures += 1
            log.warning("heartbeat of study %d failed: %s", study_id, exc)
            if failures >= _MAX_FAILURES:
                return
        stop.wait(every_s)
