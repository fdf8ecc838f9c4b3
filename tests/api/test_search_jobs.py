"""POST /v1/studies: the bearer token guard and the search processes the service owns."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from evotune.api import create_app
from evotune.api.routes import studies as studies_route
from evotune.errors import UserError
from tests.api.conftest import TOKEN, SampleData

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
    assert client.get("/v1/jobs").json() == []  # nothing was started


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
    assert response.json()["detail"][0]["loc"][-1] == field


def test_unknown_strategy_is_422(
    jobs_app: FastAPI, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(studies_route, "_known_strategies", lambda: ["evolution", "random"])
    response = TestClient(jobs_app).post(
        "/v1/studies", json={**GOOD, "strategy": "annealing"}, headers=auth
    )
    assert response.status_code == 422
    assert "known: evolution, random" in response.json()["detail"][0]["msg"]


def test_registry_strategies_are_known() -> None:
    strategies = studies_route._known_strategies()
    if strategies is None:
        pytest.skip("evotune.search.registry does not import in this checkout")
    assert "evolution" in strategies


def test_post_starts_the_cli_in_a_child_process(
    jobs_app: FastAPI,
    auth: dict[str, str],
    fake_cli: tuple[list[str], Path],
    sample: SampleData,
) -> None:
    client = TestClient(jobs_app)
    response = client.post("/v1/studies", json={**GOOD, "interpret": True}, headers=auth)
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
        "--budget", "8", "--seed", "3", "--interpret",
    ]  # fmt: skip
    assert seen["db"] == sample.url  # the database travels in the environment...
    assert seen["token"] is None  # ...and the service's secret does not
    assert sample.url not in json.dumps(done)  # nor is the URL shown in the API
    assert [j["id"] for j in client.get("/v1/jobs").json()] == [job["id"]]
    assert client.get("/v1/jobs/nope").status_code == 404


def test_one_search_at_a_time_and_shutdown_stops_it(jobs_app: FastAPI, auth: dict) -> None:
    with TestClient(jobs_app) as client:
        first = client.post("/v1/studies", json={**GOOD, "budget": 999}, headers=auth)
        assert first.status_code == 202
        job_id = first.json()["id"]
        _wait_log(client, job_id, "searching")
        second = client.post("/v1/studies", json=GOOD, headers=auth)
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
    with TestClient(create_app(url, token=TOKEN, job_log_dir=tmp_path / "logs")) as client:
        body = {"kernel": "attention", "shape": "tiny", "budget": 3, "seed": 1, "interpret": True}
        response = client.post("/v1/studies", json=body, headers=auth)
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
