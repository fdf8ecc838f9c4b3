"""GET /v1/studies, /v1/studies/{id}, /v1/studies/{id}/trials: content, filters, pagination."""

from __future__ import annotations

from fastapi.testclient import TestClient

from evotune.space import load_space
from tests.api.conftest import KERNEL, SampleData


def test_list_is_newest_first_with_counts(client: TestClient, sample: SampleData) -> None:
    page = client.get("/v1/studies").json()
    assert page["total"] == len(sample.studies)
    ids = [s["id"] for s in page["items"]]
    assert ids == sorted(ids, reverse=True)
    by_id = {s["id"]: s for s in page["items"]}
    mission = by_id[sample.mission.id]
    assert mission["status_counts"] == dict(sorted(sample.mission.statuses.items()))
    assert mission["trials"] == len(sample.mission.trials)
    assert mission["best_p50_us"] == min(sample.mission.ok_p50)
    assert by_id[sample.running.id]["state"] == "running"
    assert by_id[sample.tiny_interpreted.id]["interpreted"] is True


def test_list_paginates_and_filters_by_kernel(client: TestClient, sample: SampleData) -> None:
    first = client.get("/v1/studies", params={"limit": 2}).json()
    second = client.get("/v1/studies", params={"limit": 2, "offset": 2}).json()
    assert len(first["items"]) == 2 and len(second["items"]) == 2
    assert not {s["id"] for s in first["items"]} & {s["id"] for s in second["items"]}
    assert first["total"] == second["total"] == len(sample.studies)
    assert client.get("/v1/studies", params={"kernel": KERNEL}).json()["total"] == len(
        sample.studies
    )
    assert client.get("/v1/studies", params={"kernel": "nope"}).status_code == 422
    assert client.get("/v1/studies", params={"limit": 0}).status_code == 422
    assert client.get("/v1/studies", params={"offset": -1}).status_code == 422


def test_study_detail(client: TestClient, sample: SampleData) -> None:
    body = client.get(f"/v1/studies/{sample.mission.id}").json()
    assert body["best_trial"]["id"] == sample.mission.best_trial_id
    assert body["published_best"]["trial_id"] == sample.mission.best_trial_id
    assert body["best_trial"]["config"] == body["published_best"]["config"]
    assert body["parameters"] == list(load_space(KERNEL).parameters)
    assert body["shootout"][0]["trial_id"] == sample.mission.best_trial_id


def test_running_study_detail_falls_back_to_the_fastest_trial(
    client: TestClient, sample: SampleData
) -> None:
    body = client.get(f"/v1/studies/{sample.running.id}").json()
    assert body["published_best"] is None
    assert body["best_trial"]["p50_us"] == min(sample.running.ok_p50)
    assert body["status_counts"]["running"] == 3


def test_unknown_study_is_404_and_bad_id_422(client: TestClient) -> None:
    response = client.get("/v1/studies/999999")
    assert response.status_code == 404
    assert "no study with id 999999" in response.json()["detail"]
    assert client.get("/v1/studies/999999/trials").status_code == 404
    assert client.get("/v1/studies/abc").status_code == 422
    assert client.get("/v1/studies/0").status_code == 422


def test_trials_paginate_with_a_total(client: TestClient, sample: SampleData) -> None:
    url = f"/v1/studies/{sample.mission.id}/trials"
    seen = []
    for offset in range(0, len(sample.mission.trials), 50):
        page = client.get(url, params={"limit": 50, "offset": offset}).json()
        assert page["total"] == len(sample.mission.trials)
        seen += [t["id"] for t in page["items"]]
    assert seen == sample.mission.trials  # in trial-number order, no gaps or repeats
    past_end = client.get(url, params={"offset": 10_000}).json()
    assert past_end["items"] == [] and past_end["total"] == len(sample.mission.trials)


def test_trials_filter_by_status_and_generation(client: TestClient, sample: SampleData) -> None:
    url = f"/v1/studies/{sample.mission.id}/trials"
    ok = client.get(url, params={"status": "ok", "limit": 2000}).json()
    assert ok["total"] == sample.mission.statuses["ok"] == len(ok["items"])
    assert all(t["status"] == "ok" and t["p50_us"] is not None for t in ok["items"])
    gen2 = client.get(url, params={"generation": 2, "limit": 2000}).json()
    assert gen2["total"] == 24 and {t["generation"] for t in gen2["items"]} == {2}
    both = client.get(url, params={"generation": 2, "status": "ok"}).json()
    assert both["total"] == sum(1 for t in gen2["items"] if t["status"] == "ok")
    assert client.get(url, params={"status": "exploded"}).status_code == 422
    assert client.get(url, params={"generation": -1}).status_code == 422


def test_failed_trials_carry_no_latency_and_json_safe_errors(
    client: TestClient, sample: SampleData
) -> None:
    url = f"/v1/studies/{sample.mission.id}/trials"
    wrong = client.get(url, params={"status": "wrong_result"}).json()["items"]
    assert wrong, "the sample has wrong_result trials"
    for trial in wrong:
        assert trial["p50_us"] is None
        assert trial["max_error"] is None  # stored as inf, which JSON cannot carry
        assert "max error" in trial["error"]


def test_samples_only_on_request(client: TestClient, sample: SampleData) -> None:
    url = f"/v1/studies/{sample.mission.id}/trials"
    plain = client.get(url, params={"status": "ok", "limit": 1}).json()["items"][0]
    assert plain["samples_us"] is None
    full = client.get(url, params={"status": "ok", "limit": 1, "include_samples": True}).json()
    assert len(full["items"][0]["samples_us"]) == 25
