"""POST /v1/studies: the bearer token guard and the search processes the service owns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from evotune.api import create_app
from evotune.api.routes import studies as studies_route
from evotune.errors import UserError
from evotune.storage import heartbeat, open_database, repository
from evotune.storage.models import utcnow
from tests.api.conftest import TOKEN, SampleData, build_sample_db

# A stand-in for `python -m evotune`: records what it was started with, then sleeps if asked
# (a budget of 999 means "keep running"), so the job machinery is tested without a GPU.
FAKE_CLI = """
import json, os, sys, time
out = os.environ["FAKE_CLI_OUT"]
with open(out, "w") as fh:
    json.dump({"argv": sys.argv[1:], "db": os.environ.get("EVOTUNE_DB"),
               "token": os.environ.get("EVOTUNE_TOKEN")}, fh)
print("searching", flush=True)
if "999" in sys.argv:
    time.sleep(60)
print("done", flush=True)
"""

AUTH = {"Authorization": f"Bearer {TOKEN}"}
GOOD = {"kernel": "attention", "shape": "tiny", "strategy": "evolution", "budget": 8, "seed": 3}


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], Path]:
    script = tmp_path / "fake_cli.py"
    script.write_text(FAKE_CLI)
    out = tmp_path / "fake_cli.json"
    monkeypatch.setenv("FAKE_CLI_OUT", str(out))
    monkeypatch.setenv("EVOTUNE_TOKEN", "a-token-the-child-must-not-see")
    return [sys.executable, str(script)], out


@pytest.fixture
def jobs_app(
    sample: SampleData, fake_cli: tuple[list[str], Path], tmp_path: Path
) -> Iterator[FastAPI]:
    yield create_app(sample.url, token=TOKEN, launcher=fake_cli[0], job_log_dir=tmp_path / "logs")


def _wait(client: TestClient, job_id: str, state: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] == state:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {state}: {job}")


def test_post_without_a_configured_token_is_refused(
    sample: SampleData, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVOTUNE_TOKEN", raising=False)
    client = TestClient(create_app(sample.url))
    response = client.post("/v1/studies", json=GOOD, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 403
    assert "EVOTUNE_TOKEN" in response.json()["detail"]
    assert client.get("/v1/studies").status_code == 200  # reads stay open


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
    ids=["missing", "wrong", "basic-scheme", "no-scheme", "longer"],
)
def test_missing_or_wrong_token_is_401(jobs_app: FastAPI, headers: dict[str, str]) -> None:
    client = TestClient(jobs_app)
    response = client.post("/v1/studies", json=GOOD, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "bearer token" in response.json()["detail"]
    assert client.get("/v1/jobs", headers=AUTH).json() == []  # nothing was started


def test_auth_is_checked_before_the_body(jobs_app: FastAPI) -> None:
    response = TestClient(jobs_app).post("/v1/studies", json={"kernel": "attention"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kernel": "nope"}, "kernel"),
        ({"shape": "gigantic"}, "shape"),
        ({"budget": 0}, "budget"),
        ({"seed": -1}, "seed"),
        ({"surprise": True}, "surprise"),
        ({"kernel": "../etc/passwd"}, "kernel"),
    ],
)
def test_bad_requests_are_422(
    jobs_app: FastAPI, auth: dict[str, str], change: dict, field: str
) -> None:
    response = TestClient(jobs_app).post("/v1/studies", json={**GOOD, **change}, headers=auth)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"][-1] == field


def test_unknown_strategy_is_422(
    jobs_app: FastAPI, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(studies_route, "_known_strategies", lambda: ["evolution", "random"])
    response = TestClient(jobs_app).post(
        "/v1/studies", json={**GOOD, "strategy": "annealing"}, headers=auth
    )
    assert response.status_code == 422
    assert "known: evolution, random" in response.json()["errors"][0]["msg"]


def test_registry_strategies_are_known() -> None:
    strategies = studies_route._known_strategies()
    if strategies is None:
        pytest.skip("evotune.search.registry does not import in this checkout")
    assert "evolution" in strategies


def test_post_starts_the_cli_in_a_child_process(
    jobs_app: FastAPI,
    fake_cli: tuple[list[str], Path],
    sample: SampleData,
) -> None:
    client = TestClient(jobs_app, headers=AUTH)
    response = client.post("/v1/studies", json={**GOOD, "interpret": True, "fresh": True})
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["pid"] > 0 and job["request"]["shape"] == "tiny"
    done = _wait(client, job["id"], "succeeded")
    assert done["returncode"] == 0
    assert "searching" in done["log_tail"] and "done" in done["log_tail"]
    seen = json.loads(fake_cli[1].read_text())
    assert seen["argv"] == [
        "search", "--kernel", "attention", "--shape", "tiny", "--strategy", "evolution",
        "--budget", "8", "--seed", "3", "--interpret", "--fresh",
    ]  # fmt: skip
    assert seen["db"] == sample.url  # the database travels in the environment...
    assert seen["token"] is None  # ...and the service's secret does not
    assert sample.url not in json.dumps(done)  # nor is the URL shown in the API
    assert [j["id"] for j in client.get("/v1/jobs").json()] == [job["id"]]
    assert client.get("/v1/jobs/0123abcd").status_code == 404
    assert client.get("/v1/jobs/nope").status_code == 422  # not an id at all


def test_jobs_are_behind_the_token(jobs_app: FastAPI) -> None:
    client = TestClient(jobs_app)
    for method, path in (
        ("GET", "/v1/jobs"),
        ("GET", "/v1/jobs/0123"),
        ("DELETE", "/v1/jobs/0123"),
    ):
        response = client.request(method, path)
        assert response.status_code == 401, (method, path)
        assert response.json()["code"] == "unauthorized"


def test_post_never_changes_a_studys_budget_silently(
    jobs_app: FastAPI, fake_cli: tuple[list[str], Path], sample: SampleData
) -> None:
    client = TestClient(jobs_app, headers=AUTH)
    tiny = {**GOOD, "interpret": True}  # the sample's interpreter study of tiny has budget 16
    refused = client.post("/v1/studies", json={**tiny, "budget": 3})
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert f"study {sample.tiny_interpreted.id}" in detail and "budget 16" in detail
    assert '"fresh": true' in detail
    assert client.get("/v1/jobs").json() == []  # nothing was started
    same = client.post("/v1/studies", json={**tiny, "budget": 16})
    assert same.status_code == 202  # resumes it as it is
    _wait(client, same.json()["id"], "succeeded")
    assert "--fresh" not in json.loads(fake_cli[1].read_text())["argv"]


def test_delete_stops_a_running_job_and_forgets_it(jobs_app: FastAPI) -> None:
    with TestClient(jobs_app, headers=AUTH) as client:
        job_id = client.post("/v1/studies", json={**GOOD, "budget": 999}).json()["id"]
        _wait_log(client, job_id, "searching")
        stopping = client.delete(f"/v1/jobs/{job_id}")
        assert stopping.status_code == 202 and stopping.json()["state"] in ("stopping", "stopped")
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 404
        job = jobs_app.state.jobs._stopped[-1]
        job.process.wait(timeout=20)  # interrupted well before its 60 s sleep ended
        assert job.state == "stopped" and job.poll() != 0
        assert client.post("/v1/studies", json=GOOD).status_code == 202  # free again


def test_one_search_at_a_time_and_shutdown_stops_it(jobs_app: FastAPI) -> None:
    with TestClient(jobs_app, headers=AUTH) as client:
        first = client.post("/v1/studies", json={**GOOD, "budget": 999})
        assert first.status_code == 202
        job_id = first.json()["id"]
        _wait_log(client, job_id, "searching")
        second = client.post("/v1/studies", json=GOOD)
        assert second.status_code == 409
        assert job_id in second.json()["detail"]
    # Leaving the client shuts the app down: the running search is interrupted.
    job = jobs_app.state.jobs.get(job_id)
    assert job.poll() not in (None, 0)  # interrupted well before its 60 s sleep ended
    assert job.state == "failed"


def _wait_log(client: TestClient, job_id: str, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in client.get(f"/v1/jobs/{job_id}").json()["log_tail"]:
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in job {job_id}'s log")


def test_short_tokens_are_refused(sample: SampleData) -> None:
    with pytest.raises(UserError, match="too short"):
        create_app(sample.url, token="secret")


@pytest.mark.slow
def test_end_to_end_a_posted_search_runs_the_real_cli(tmp_path: Path, auth: dict) -> None:
    """POST -> `python -m evotune search --interpret` -> the study and its best over REST."""
    pytest.importorskip("evotune.runner")
    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    open_database(url).dispose()  # `evotune db upgrade`: the service never creates it
    app = create_app(url, token=TOKEN, job_log_dir=tmp_path / "logs")
    with TestClient(app, headers=auth) as client:
        body = {"kernel": "attention", "shape": "tiny", "budget": 3, "seed": 1, "interpret": True}
        response = client.post("/v1/studies", json=body)
        assert response.status_code == 202, response.text
        job = _wait_finished(client, response.json()["id"], timeout=240)
        assert job["state"] == "succeeded", job["log_tail"]
        (study,) = client.get("/v1/studies").json()["items"]
        assert study["interpreted"] is True and study["shape"]["name"] == "tiny"
        assert study["trials"] == 3 and study["state"] == "finished"
        trials = client.get(f"/v1/studies/{study['id']}/trials").json()
        assert trials["total"] == 3
        best = client.get("/v1/best", params={"kernel": "attention", "shape": "tiny"})
        assert best.status_code == 404  # interpreter timings are never served by default
        best = client.get(
            "/v1/best", params={"kernel": "attention", "shape": "tiny", "interpreted": "true"}
        )
        if study["status_counts"].get("ok"):
            assert best.status_code == 200 and best.json()["study_id"] == study["id"]


def _wait_finished(client: TestClient, job_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] != "running":
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def _beat(url: str, study_id: int, pid: int, age_s: float = 0.0) -> None:
    """Make a study look like a CLI search on this host: running, with a heartbeat."""
    database = open_database(url, upgrade=False)
    try:
        with database.session() as session:
            study = repository.get_study(session, study_id)
            study.state = "running"
            study.heartbeat_at = utcnow() - timedelta(seconds=age_s)
            study.runner_host = heartbeat.host_name()
            study.runner_pid = pid
    finally:
        database.dispose()


def test_the_busy_check_sees_a_search_started_from_the_cli(
    tmp_path: Path, fake_cli: tuple[list[str], Path]
) -> None:
    data = build_sample_db(tmp_path / "busy.db")
    app = create_app(data.url, token=TOKEN, launcher=fake_cli[0], job_log_dir=tmp_path / "logs")
    client = TestClient(app, headers=AUTH)
    cli = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _beat(data.url, data.mission.id, cli.pid)
        busy = client.post("/v1/studies", json=GOOD)
        assert busy.status_code == 409
        assert f"study {data.mission.id} is being searched on this host" in busy.json()["detail"]
        assert client.get(f"/v1/studies/{data.mission.id}").json()["alive"] is True
    finally:
        cli.kill()
        cli.wait()
    # Killed: its pid is gone, so the study is not alive and no longer blocks (before its
    # lease runs out).
    assert client.get(f"/v1/studies/{data.mission.id}").json()["alive"] is False
    assert client.post("/v1/studies", json=GOOD).status_code == 202


def test_a_stale_heartbeat_does_not_block(tmp_path: Path, fake_cli: tuple[list[str], Path]) -> None:
    data = build_sample_db(tmp_path / "stale.db")
    _beat(data.url, data.mission.id, os.getpid(), age_s=heartbeat.LEASE_S + 5)
    app = create_app(data.url, token=TOKEN, launcher=fake_cli[0], job_log_dir=tmp_path / "logs")
    client = TestClient(app, headers=AUTH)
    assert client.get(f"/v1/studies/{data.mission.id}").json()["alive"] is False
    assert client.post("/v1/studies", json=GOOD).status_code == 202
