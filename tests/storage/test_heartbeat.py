"""A running search stamps its study's heartbeat; the beat stops when the study stops running."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from evotune.storage import Database, Study, heartbeat, open_database, repository
from evotune.storage.models import utcnow
from tests.api.conftest import build_sample_db


def _study(db: Database, study_id: int) -> Study:
    with db.session() as session:
        return repository.get_study(session, study_id)


class _CommitsNoted(Database):
    """A database that says when a session committed: the beat's write, waited on."""

    def __init__(self, url: str) -> None:
        super().__init__(open_database(url).engine)
        self.committed = threading.Event()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with super().session() as session:
            yield session
        self.committed.set()


def test_a_heartbeat_stamps_host_and_pid_and_ends_with_the_study(tmp_path: Path) -> None:
    data = build_sample_db(tmp_path / "hb.db")
    db = _CommitsNoted(data.url)
    try:
        running = data.running.id
        before = _study(db, running)
        assert before.heartbeat_at is None and not heartbeat.is_alive(before)
        db.committed.clear()
        beat = heartbeat.Heartbeat(db, running, every_s=0.05).start()
        assert db.committed.wait(timeout=30), "the first beat never committed"
        study = _study(db, running)
        assert study.runner_host == heartbeat.host_name() and study.runner_pid == os.getpid()
        assert heartbeat.is_alive(study)
        assert study.updated_at == before.updated_at  # a beat is not a change of the study
        with db.session() as session:
            repository.end_study(session, repository.get_study(session, running), "finished")
        beat._thread.join(timeout=5)
        assert not beat._thread.is_alive()  # it saw the study stop running
        assert not heartbeat.is_alive(_study(db, running))
    finally:
        db.dispose()


def test_a_heartbeat_stops_when_its_owner_lets_go(tmp_path: Path) -> None:
    data = build_sample_db(tmp_path / "gc.db")
    db = open_database(data.url)
    try:
        beat = heartbeat.start(db, data.running.id)
        thread = beat._thread
        del beat
        gc.collect()
        thread.join(timeout=5)
        assert not thread.is_alive()
    finally:
        db.dispose()


def test_an_old_heartbeat_is_not_alive() -> None:
    study = Study(state="running", heartbeat_at=utcnow())
    assert heartbeat.is_alive(study)
    study.heartbeat_at = utcnow() - timedelta(seconds=heartbeat.LEASE_S + 1)
    assert not heartbeat.is_alive(study)
    study.heartbeat_at, study.state = utcnow(), "interrupted"
    assert not heartbeat.is_alive(study)
