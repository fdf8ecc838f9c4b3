"""The API over PostgreSQL (the several-hosts setup): the same answers, no SQLite-only cache.

Runs when EVOTUNE_TEST_POSTGRES_URL names a server (`.ci/postgres.sh` prints one); each run
works in a fresh schema, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from evotune.api import create_app
from tests.api.conftest import TOKEN, SampleData, build_sample_db

POSTGRES_URL = os.environ.get("EVOTUNE_TEST_POSTGRES_URL")

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="EVOTUNE_TEST_POSTGRES_URL is not set (.ci/postgres.sh starts a server and prints one)",
)


@pytest.fixture(scope="module")
def pg_sample() -> Iterator[SampleData]:
    assert POSTGRES_URL is not None
    schema = f"evotune_api_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield build_sample_db(url.render_as_string(hide_password=False))
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_api_over_postgres(pg_sample: SampleData) -> None:
    app = create_app(pg_sample.url, token=TOKEN)
    assert not app.state.best_cache.enabled
    with TestClient(app) as client:
        response = client.get("/healthz")
        health = response.json()
        assert health["status"] == "ok" and health["backend"] == "postgresql"
        assert make_url(POSTGRES_URL).host not in response.text  # nothing of the URL shown
        assert "evotune_api_" not in response.text
        for _ in range(2):
            best = client.get("/v1/best", params={"kernel": "attention", "shape": "mission"})
            assert best.status_code == 200 and "x-evotune-cache" not in best.headers
            assert best.json()["trial_id"] == pg_sample.mission.best_trial_id
        tiny = client.get("/v1/best", params={"kernel": "attention", "shape": "tiny"})
        assert tiny.status_code == 404
        page = client.get("/v1/studies").json()
        assert page["total"] == len(pg_sample.studies)
        trials = client.get(
            f"/v1/studies/{pg_sample.mission.id}/trials", params={"status": "ok", "limit": 10}
        ).json()
        assert trials["total"] == pg_sample.mission.statuses["ok"]
        assert len(trials["items"]) == 10
        detail = client.get(f"/v1/studies/{pg_sample.mission.id}").json()
        assert detail["published_best"]["trial_id"] == pg_sample.mission.best_trial_id


def test_statements_have_a_deadline_and_keep_the_urls_options(pg_sample: SampleData) -> None:
    app = create_app(pg_sample.url, token=TOKEN)
    with app.state.database.engine.connect() as connection:
        assert connection.execute(text("SHOW statement_timeout")).scalar() == "5s"
        assert connection.execute(text("SHOW search_path")).scalar().startswith("evotune_api_")
    app.state.database.dispose()
    app.state.guard.checks.dispose()
