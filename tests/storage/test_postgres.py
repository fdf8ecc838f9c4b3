"""The storage path on a real PostgreSQL: migrations, repository, concurrency, a short search.

Runs when EVOTUNE_TEST_POSTGRES_URL names a server (`.ci/postgres.sh` starts one and prints
its URL); skips otherwise. Each test works in a fresh schema of that database (through the
connection's search_path) and drops it afterwards, so runs never see each other's rows.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from evotune.records import TrialRequest, TrialResult, TrialStatus, config_hash
from evotune.runner import SearchOptions, run_search
from evotune.space import Shape, load_space
from evotune.storage import Database, Study, Trial, open_database, repository
from evotune.storage.engine import alembic_config
from evotune.storage.models import Base, utcnow
from evotune.worker.evaluator import BatchSubmission

POSTGRES_URL = os.environ.get("EVOTUNE_TEST_POSTGRES_URL")

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="EVOTUNE_TEST_POSTGRES_URL is not set (.ci/postgres.sh starts a server and prints one)",
)

ENV = {
    "gpu": "NVIDIA H100 80GB HBM3",
    "driver": "580.65",
    "cuda": "13.0",
    "torch": "2.11.0",
    "triton": "3.6.0",
    "kernel_source_hash": "0123456789abcdef",
    "interpreted": False,
}
TABLES = {"kernels", "shapes", "environments", "studies", "trials", "best_configs"}


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose connections work in a new, empty schema (dropped after the test), in a
    session time zone other than UTC."""
    assert POSTGRES_URL is not None
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
    from evotune.errors import DatabaseError

    with pytest.raises(DatabaseError) as info:
        open_database(url.render_as_string(hide_password=False))
    assert "wrong-Secret-123" not in str(info.value)
    assert "cannot open database" in str(info.value)


# --- repository ------------------------------------------------------------------------------


def _study(db: Database, env: dict[str, Any] = ENV) -> int:
    with db.session() as s:
        kernel = repository.get_or_create_kernel(s, "attention")
        shape = repository.get_or_create_shape(
            s, kernel, Shape("tiny", {"B": 1, "S": 128, "causal": True, "dtype": "float16"})
        )
        environment = repository.get_or_create_environment(s, env)
        study = Study(
            kernel_id=kernel.id,
            shape_id=shape.id,
            environment_id=environment.id,
            strategy="evolution",
            settings={"population": 8, "mutation_rate": 0.25, "nested": {"a": [1, 2]}},
            seed=7,
            budget=10,
            interpreted=bool(env["interpreted"]),
        )
        s.add(study)
        s.flush()
        return study.id


def _trial(db: Database, study_id: int, number: int, result: TrialResult) -> int:
    config = {"BLOCK_M": 64 * (number + 1), "TMA": number % 2 == 0, "impl": "triton"}
    with db.session() as s:
        study = repository.get_study(s, study_id)
        trial = repository.add_running_trial(
            s, study, number, config, config_hash(config), seed=number, generation=1,
            parents=["p0", "p1"], operator="crossover",
        )  # fmt: skip
        result.trial_id = trial.id
        repository.finish_trial(s, trial, result)
        return trial.id


def test_repository_round_trip_on_postgres(pg_db: Database) -> None:
    before = utcnow()
    study_id = _study(pg_db)
    ok_id = _trial(
        pg_db, study_id, 0,
        TrialResult(0, TrialStatus.OK, p50_us=41.25, p20_us=40.5, p80_us=43.0, n_runs=3,
                    samples_us=[40.5, 41.25, 43.0], max_error=1.5e-3, compile_s=2.0, run_s=0.5),
    )  # fmt: skip
    wrong_id = _trial(
        pg_db, study_id, 1,
        TrialResult(0, TrialStatus.WRONG_RESULT, p50_us=12.0, max_error=math.nan,
                    error="output has NaN"),
    )  # fmt: skip
    with pg_db.session() as s:
        study = repository.get_study(s, study_id)
        assert study.settings == {"population": 8, "mutation_rate": 0.25, "nested": {"a": [1, 2]}}
        assert study.shape.dims == {"B": 1, "S": 128, "causal": True, "dtype": "float16"}
        assert study.environment.data == ENV
        assert study.environment.interpreted is False
        ok, wrong = repository.study_trials(s, study)
        assert ok.id == ok_id and wrong.id == wrong_id
        assert ok.config == {"BLOCK_M": 64, "TMA": True, "impl": "triton"}
        assert ok.samples_us == [40.5, 41.25, 43.0]
        assert ok.parents == ["p0", "p1"]
        assert (ok.p50_us, ok.p20_us, ok.p80_us, ok.n_runs) == (41.25, 40.5, 43.0, 3)
        # Failed trials carry no latency; a NaN error survives as a float.
        assert wrong.p50_us is None and math.isnan(wrong.max_error or 0.0)
        # timestamptz: aware datetimes, in UTC, that are the instants we wrote.
        for stamp in (study.created_at, ok.created_at, ok.finished_at):
            assert stamp is not None and stamp.utcoffset() == timedelta(0)
            assert before - timedelta(seconds=5) <= stamp <= utcnow() + timedelta(seconds=5)

        assert repository.count_trials(s, study_id) == 2
        assert repository.count_trials(s, study_id, status="ok") == 1
        fastest = repository.fastest_trial(s, study_id)
        assert fastest is not None and fastest.id == ok_id
        counts, best_p50 = repository.trial_stats(s, [study_id])[study_id]
        assert counts == {"ok": 1, "wrong_result": 1} and best_p50 == 41.25
        assert [st.id for st in repository.list_studies(s, kernel="attention")] == [study_id]
        assert repository.list_studies(s, kernel="other") == []
        repository.publish_best(s, study, ok, shootout_p50_us=40.0, tflops=3.5)

    key = Shape("tiny", {"B": 1, "S": 128, "causal": True, "dtype": "float16"}).key
    with pg_db.session() as s:
        best = repository.best_config(s, "attention", key)
        assert best is not None and best.trial_id == ok_id and best.shootout_p50_us == 40.0
        fingerprint = repository.fingerprint_hash(ENV)
        assert repository.best_config(s, "attention", key, fingerprint=fingerprint) is not None
        assert repository.best_config(s, "attention", key, gpu="NVIDIA H200") is None
        assert repository.tuned_gpus_by_shape(s) == {("attention", key): [ENV["gpu"]]}


def test_values_postgres_refuses_are_stored_anyway(pg_db: Database) -> None:
    # PostgreSQL's json rejects NaN/Infinity and its text rejects NUL bytes; SQLite takes
    # both. A trial's evidence must not take the search down on the shared database.
    study_id = _study(pg_db)
    trial_id = _trial(
        pg_db, study_id, 0,
        TrialResult(0, TrialStatus.CRASHED, samples_us=[1.0, math.inf, math.nan],
                    error="worker died; stderr: \x00\x01garbage"),
    )  # fmt: skip
    with pg_db.session() as s:
        trial = s.get(Trial, trial_id)
        assert trial is not None
        assert trial.samples_us == [1.0, None, None]
        assert trial.error is not None and "\x00" not in trial.error
        assert trial.error.startswith("worker died; stderr: ") and "garbage" in trial.error


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
        time.sleep(1.0)
        # Still waiting on our uncommitted row: it really raced us to the insert.
        assert other.is_alive()
    other.join(30)
    assert errors == []
    assert found == {"kernel": kernel_id, "env": env_id}
    with pg_db.session() as s:
        assert s.scalar(text("SELECT count(*) FROM kernels")) == 1


# --- a short search --------------------------------------------------------------------------


class CostModelEvaluator(BatchSubmission):
    """A test double of the Evaluator protocol: nothing is compiled or run.

    Each config's latency is a made-up, deterministic function of the config (its hash),
    configs with BLOCK_N == 128 and 4 warps are reported `wrong_result`, and results come
    back in reverse order, as a pool finishing out of order would yield them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def environment(self) -> dict[str, Any]:
        return {
            "gpu": "test double (no device)",
            "driver": None,
            "cuda": None,
            "torch": "n/a",
            "triton": "n/a",
            "kernel_source_hash": "test-double",
            "interpreted": True,
        }

    def _answer(self, request: TrialRequest, scale: float = 1.0) -> TrialResult:
        self.calls += 1
        config = request.config
        if config.get("BLOCK_N") == 128 and config.get("num_warps") == 4:
            return TrialResult(request.trial_id, TrialStatus.WRONG_RESULT, max_error=0.5,
                               error="max error 0.5 over tolerance")  # fmt: skip
        p50 = (20.0 + int(config_hash(config)[:4], 16) / 1000.0) * scale
        return TrialResult(
            request.trial_id, TrialStatus.OK, p50_us=p50, p20_us=p50 * 0.98, p80_us=p50 * 1.02,
            n_runs=3, samples_us=[p50 * 0.98, p50, p50 * 1.02], max_error=1e-3,
            compile_s=0.01, run_s=0.01,
        )  # fmt: skip

    def evaluate(self, requests: Sequence[TrialRequest]) -> Iterator[TrialResult]:
        for request in reversed(list(requests)):
            yield self._answer(request)

    def shootout(self, requests: Sequence[TrialRequest], rounds: int) -> list[TrialResult]:
        return [self._answer(r, scale=0.99) for r in requests]

    def close(self) -> None:
        return None


def _history(db: Database, study_id: int) -> list[tuple[int, str, str, float | None]]:
    with db.session() as s:
        rows = s.scalars(select(Trial).where(Trial.study_id == study_id).order_by(Trial.number))
        return [(t.number, t.config_hash, t.status, t.p50_us) for t in rows]


def test_run_search_on_postgres_matches_sqlite(pg_db: Database, tmp_path: Path) -> None:
    space = load_space("attention")
    shape = space.shape("tiny")
    options = SearchOptions(strategy="random", budget=10, seed=3, shootout_rounds=2)
    on_pg = run_search(pg_db, space, shape, CostModelEvaluator(), options)
    sqlite_db = open_database(f"sqlite:///{tmp_path / 'same.db'}")
    on_sqlite = run_search(sqlite_db, space, shape, CostModelEvaluator(), options)

    assert on_pg.state == "finished" and on_pg.total_trials == 10
    # Same strategy, seed and evaluator: the same trials, outcomes and winner on both.
    pg_history = _history(pg_db, on_pg.study_id)
    assert pg_history == _history(sqlite_db, on_sqlite.study_id)
    assert {status for _, _, status, _ in pg_history} <= {"ok", "wrong_result", "invalid"}
    assert on_pg.best_config == on_sqlite.best_config
    assert on_pg.best_shootout_p50_us == pytest.approx(on_sqlite.best_shootout_p50_us)
    with pg_db.session() as s:
        best = repository.best_config(s, "attention", shape.key, include_interpreted=True)
        assert best is not None and best.config == on_pg.best_config
        assert repository.count_trials(s, on_pg.study_id, status="running") == 0

    # A rerun with a larger budget resumes the study on PostgreSQL and adds to it.
    more = run_search(pg_db, space, shape, CostModelEvaluator(), SearchOptions(
        strategy="random", budget=14, seed=3, shootout_rounds=2))  # fmt: skip
    assert more.resumed and more.study_id == on_pg.study_id
    assert more.trials_run == 4 and more.total_trials == 14
    assert [n for n, *_ in _history(pg_db, on_pg.study_id)] == list(range(14))
    sqlite_db.dispose()
