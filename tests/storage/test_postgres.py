"""What only PostgreSQL does: its migrations, its types and time zones, hosts that open or
write a shared database at once, the URL's password kept out of errors.

Runs when EVOTUNE_TEST_POSTGRES_URL names a server (`.ci/postgres.sh` starts one and prints
its URL); skips otherwise. The `TrialStore` contract and the repository's queries run on
PostgreSQL too, beside SQLite: test_trial_store.py and test_repository.py.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from evotune.errors import DatabaseError
from evotune.records import TrialResult, TrialStatus
from evotune.storage import Database, SqlTrialStore, open_database, repository
from evotune.storage.engine import alembic_config
from evotune.storage.models import Base, utcnow
from tests.storage.conftest import POSTGRES_URL, needs_postgres
from tests.storage.samples import ENV, SPEC, new_trial

pytestmark = needs_postgres

TABLES = {"kernels", "shapes", "environments", "studies", "trials", "best_configs"}


def _schema_of(url: str) -> str:
    return str(make_url(url).query["options"]).split()[0].split("=", 1)[1]


# --- migrations ------------------------------------------------------------------------------


def test_migrations_match_models_on_postgres(pg_url: str) -> None:
    db = open_database(pg_url)
    try:
        assert db.engine.dialect.name == "postgresql"
        with db.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == [], f"models and migrations disagree on PostgreSQL: {diff}"
        assert set(inspect(db.engine).get_table_names(schema=_schema_of(pg_url))) >= TABLES
    finally:
        db.dispose()
    # A second open finds the schema at head and leaves it there.
    db = open_database(pg_url)
    try:
        head = ScriptDirectory.from_config(alembic_config(pg_url)).get_current_head()
        with db.engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version == head
    finally:
        db.dispose()


_OPEN_WHEN_TOLD = """
import sys
from evotune.storage import open_database
print("ready", flush=True)
sys.stdin.readline()
open_database(sys.argv[1]).dispose()
"""


def test_hosts_opening_a_fresh_database_at_once_all_succeed(pg_url: str) -> None:
    # Several searches started together on an empty shared database (separate processes, as
    # on separate hosts): one migrates, the rest wait for it instead of failing on
    # "relation already exists". The processes import first, then all open at one signal.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_WHEN_TOLD, pg_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=90)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], "\n".join(outputs)
    db = open_database(pg_url)
    try:
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        db.dispose()


def test_password_is_not_shown_in_errors() -> None:
    assert POSTGRES_URL is not None
    url = make_url(POSTGRES_URL).set(password="wrong-Secret-123")
    with pytest.raises(DatabaseError) as info:
        open_database(url.render_as_string(hide_password=False))
    assert "wrong-Secret-123" not in str(info.value)
    assert "cannot open database" in str(info.value)


# --- types -----------------------------------------------------------------------------------


def test_json_floats_and_time_zones_come_back_as_written(pg_db: Database) -> None:
    # The session's time zone is Asia/Kolkata (conftest): timestamptz must still come back
    # as the instants written, in UTC. JSON keeps nesting and types; a NaN float column
    # keeps its NaN (SQLite would store NULL).
    before = utcnow()
    store = SqlTrialStore(pg_db)
    study_id = store.open_study(SPEC).study.id
    (trial,) = store.add_trials(study_id, [new_trial(0)])
    result = TrialResult(trial.id, TrialStatus.WRONG_RESULT, max_error=math.nan, error="NaN")
    assert math.isnan(store.finish_trial(result).max_error or 0.0)
    with pg_db.session() as s:
        study = repository.get_study(s, study_id)
        assert study.settings == {**SPEC.settings, "restrict": None}
        assert study.shape.dims == SPEC.shape.dims and study.environment.data == ENV
        (stored,) = repository.study_trials(s, study)
        assert stored.config == new_trial(0).config and stored.parents == ["p0", "p1"]
        for stamp in (study.created_at, stored.created_at, stored.finished_at):
            assert stamp is not None and stamp.utcoffset() == timedelta(0)
            assert before - timedelta(seconds=5) <= stamp <= utcnow() + timedelta(seconds=5)


def test_values_postgres_refuses_are_stored_anyway(pg_db: Database) -> None:
    # PostgreSQL's json rejects NaN/Infinity and its text rejects NUL bytes; SQLite takes
    # both. A trial's evidence must not take the search down on the shared database.
    store = SqlTrialStore(pg_db)
    study_id = store.open_study(SPEC).study.id
    (trial,) = store.add_trials(study_id, [new_trial(0)])
    store.finish_trial(
        TrialResult(trial.id, TrialStatus.CRASHED, samples_us=[1.0, math.inf, math.nan],
                    error="worker died; stderr: \x00\x01garbage"),
    )  # fmt: skip
    (stored,) = store.trials(study_id)
    # Stored as null, read back as NaN: a sample that was not a finite number.
    assert stored.samples_us[0] == 1.0 and all(math.isnan(s) for s in stored.samples_us[1:])
    assert stored.error is not None and "\x00" not in stored.error
    assert stored.error.startswith("worker died; stderr: ") and "garbage" in stored.error


# --- concurrent hosts ------------------------------------------------------------------------


def _wait_until_blocked_by(db: Database, holder_pid: int, deadline_s: float = 30.0) -> None:
    """Return once a backend waits on a lock that backend `holder_pid` holds (the deadline
    only bounds a failure)."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))")
    end = time.monotonic() + deadline_s
    with db.engine.connect() as connection:
        while True:
            blocked = connection.execute(query, {"pid": holder_pid}).scalar()
            connection.rollback()  # pg_stat_activity is a snapshot per transaction
            if blocked:
                return
            assert time.monotonic() < end, "the other host never waited on our insert"
            time.sleep(0.01)


def test_concurrent_get_or_create_returns_the_winner(pg_db: Database) -> None:
    # Two hosts start their first search at once: both look for the kernel and environment
    # rows, find none, and insert. The loser must pick up the winner's rows, not fail.
    found: dict[str, int] = {}
    errors: list[BaseException] = []

    def second_host() -> None:
        try:
            with pg_db.session() as s:
                found["kernel"] = repository.get_or_create_kernel(s, "attention").id
                found["env"] = repository.get_or_create_environment(s, dict(ENV)).id
        except BaseException as exc:
            errors.append(exc)

    with pg_db.session() as s:
        kernel_id = repository.get_or_create_kernel(s, "attention").id
        env_id = repository.get_or_create_environment(s, ENV).id
        other = threading.Thread(target=second_host)
        other.start()
        # It really raced us to the insert: it waits on our uncommitted row.
        _wait_until_blocked_by(pg_db, _backend_pid(s))
    other.join(30)
    assert not other.is_alive() and errors == []
    assert found == {"kernel": kernel_id, "env": env_id}
    with pg_db.session() as s:
        assert s.scalar(text("SELECT count(*) FROM kernels")) == 1


def _backend_pid(session: Session) -> int:
    return int(session.scalar(text("SELECT pg_backend_pid()")) or 0)
