"""The /v1/best cache: a new best is served at once, while a search writes; scans stay bounded."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from evotune.api import create_app
from evotune.api.best_cache import BestCache
from evotune.api.loadtest import seed_database, writer_loop
from evotune.records import TrialResult, TrialStatus, config_hash
from evotune.storage import open_database, repository

QUERY = "/v1/best?kernel=attention&shape=mission"


def _publish(url: str, study_id: int, p50: float) -> int:
    """Store an ok trial and publish it, from a separate connection (as a search would)."""
    database = open_database(url, upgrade=False)
    try:
        with database.session() as s:
            study = repository.get_study(s, study_id)
            config = {"p50": p50}
            number = int(p50 * 1000)
            trial = repository.add_running_trial(
                s, study, number, config, config_hash(config), 0, 0, [], "seed"
            )
            result = TrialResult(trial.id, TrialStatus.OK, p50, p50, p50, 3, [p50] * 3)
            repository.finish_trial(s, trial, result)
            repository.publish_best(s, study, trial, None, None)
            return trial.id
    finally:
        database.dispose()


def test_a_new_best_is_served_on_the_next_request(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    seeded = seed_database(url)
    client = TestClient(create_app(url))
    first = client.get(QUERY)
    assert first.status_code == 200 and "x-evotune-cache" not in first.headers
    again = client.get(QUERY)
    assert again.headers["x-evotune-cache"] == "hit" and again.content == first.content
    mission_study = first.json()["study_id"]
    for p50 in (50.0, 40.0, 30.0):
        trial_id = _publish(url, mission_study, p50)
        body = client.get(QUERY).json()
        assert body["trial_id"] == trial_id and body["p50_us"] == p50
    assert seeded["writer_study_id"]


def test_trials_written_elsewhere_do_not_flush_the_cache(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    seed_database(url)
    app = create_app(url)
    client = TestClient(app)
    study_id = client.get(QUERY).json()["study_id"]
    database = open_database(url, upgrade=False)
    with database.session() as s:  # a trial, but no new best
        study = repository.get_study(s, study_id)
        repository.add_running_trial(
            s, study, 99, {"x": 1}, config_hash({"x": 1}), 0, 0, [], "seed"
        )
    database.dispose()
    assert client.get(QUERY).headers.get("x-evotune-cache") == "hit"


def test_not_found_is_cached_and_then_found(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    seed_database(url)
    client = TestClient(create_app(url))
    query = QUERY + "&gpu=NVIDIA%20H100"
    assert client.get(query).status_code == 404
    missing = client.get(query)
    assert missing.status_code == 404 and missing.headers["x-evotune-cache"] == "hit"
    assert "no tuned config" in missing.json()["detail"]


def test_bad_queries_are_never_cached(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    seed_database(url)
    app = create_app(url)
    client = TestClient(app)
    for _ in range(2):
        response = client.get("/v1/best?kernel=attention&shape=nope")
        assert response.status_code == 422 and "x-evotune-cache" not in response.headers


def test_the_cache_is_bounded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    seed_database(url)
    cache = BestCache(open_database(url).engine, max_entries=3)
    for i in range(10):
        answer, generation = cache.lookup(f"k{i}".encode())
        assert answer is None
        cache.store(generation, f"k{i}".encode(), (200, b"{}"))
        assert len(generation) <= 3
    cache.close()


def test_close_waits_for_a_lookup_in_progress(tmp_path: Path) -> None:
    """Closing the connection under a running query crashes the process: close takes the lock."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    seed_database(url)
    cache = BestCache(open_database(url).engine)
    with cache._lock:  # a lookup in progress on another thread holds it
        closer = threading.Thread(target=cache.close)
        closer.start()
        closer.join(timeout=0.2)
        assert closer.is_alive() and cache.enabled
    closer.join(timeout=5)
    assert not closer.is_alive() and not cache.enabled
    assert cache.lookup(b"k") == (None, {})  # closed: every request goes to the database


def test_reads_while_a_search_writes_never_fail(tmp_path: Path) -> None:
    """The API reads while another process commits trials and new bests: no 'locked' errors."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    seeded = seed_database(url)
    app = create_app(url)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    writer = context.Process(
        target=writer_loop, args=(url, seeded["writer_study_id"], 50.0, 3.0, 5, results)
    )
    writer.start()
    statuses: list[int] = []

    # One app lifetime (as under uvicorn), its event loop shared by the reader threads.
    with TestClient(app) as client:

        def reader(path: str) -> None:
            while writer.is_alive():
                statuses.append(client.get(path).status_code)

        threads = [
            threading.Thread(target=reader, args=(path,))
            for path in (seeded["queries"][0], seeded["queries"][1], "/v1/studies", "/healthz")
        ]
        time.sleep(0.5)  # let the writer get going
        for thread in threads:
            thread.start()
        out = results.get(timeout=60)
        writer.join(timeout=30)
        for thread in threads:
            thread.join(timeout=30)
    assert out["errors"] == {} and out["written"] > 20 and out["published"] > 2
    assert statuses and set(statuses) == {200}, set(statuses)
    trials = TestClient(app).get(f"/v1/studies/{seeded['writer_study_id']}/trials?limit=1")
    assert trials.json()["total"] == out["written"] + 1  # every write visible to the API
