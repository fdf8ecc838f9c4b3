"""GET /v1/best: named and ad-hoc shapes, filters, interpreter exclusion, 404 and 422."""

from __future__ import annotations

from fastapi.testclient import TestClient

from evotune.space import load_space
from tests.api.conftest import ADHOC_DIMS, H100, H200, KERNEL, SampleData


def _best(client: TestClient, **params: object) -> tuple[int, dict]:
    response = client.get("/v1/best", params={"kernel": KERNEL, **params})
    return response.status_code, response.json()


def test_named_shape_serves_the_newest_gpu_best_with_its_evidence(
    client: TestClient, sample: SampleData
) -> None:
    code, body = _best(client, shape="mission")
    assert code == 200
    assert body["study_id"] == sample.mission.id
    assert body["trial_id"] == sample.mission.best_trial_id
    assert body["p50_us"] == min(sample.mission.ok_p50)
    assert body["shootout_p50_us"] > 0 and body["tflops"] > 0
    assert body["measured_at"].endswith("Z")
    env = body["environment"]
    assert env["gpu"] == H100["gpu"] and env["interpreted"] is False
    assert len(env["fingerprint"]) == 16
    assert body["shape"]["name"] == "mission"
    assert body["shape"]["dims"] == load_space(KERNEL).shape("mission").dims


def test_best_config_matches_the_stored_trial(client: TestClient, sample: SampleData) -> None:
    _, best = _best(client, shape="mission")
    trials = client.get(
        f"/v1/studies/{sample.mission.id}/trials", params={"status": "ok", "limit": 2000}
    ).json()["items"]
    (winner,) = [t for t in trials if t["id"] == best["trial_id"]]
    assert winner["config"] == best["config"]


def test_gpu_and_fingerprint_filters(client: TestClient, sample: SampleData) -> None:
    code, body = _best(client, shape="mission", gpu=H200["gpu"])
    assert code == 200 and body["study_id"] == sample.mission_h200.id
    fingerprint = body["environment"]["fingerprint"]
    code, again = _best(client, shape="mission", fingerprint=fingerprint)
    assert code == 200 and again["study_id"] == sample.mission_h200.id
    code, body = _best(client, shape="mission", gpu="NVIDIA B200")
    assert code == 404
    assert "NVIDIA B200" in body["detail"]


def test_adhoc_shape_by_dims(client: TestClient, sample: SampleData) -> None:
    params = {k: str(v).lower() if isinstance(v, bool) else v for k, v in ADHOC_DIMS.items()}
    code, body = _best(client, **params)
    assert code == 200
    assert body["study_id"] == sample.adhoc.id
    assert body["shape"]["name"] is None
    assert body["shape"]["dims"] == ADHOC_DIMS


def test_dims_of_a_named_shape_find_the_named_shape(client: TestClient, sample: SampleData) -> None:
    dims = load_space(KERNEL).shape("mission").dims
    params = {k: str(v).lower() if isinstance(v, bool) else v for k, v in dims.items()}
    code, body = _best(client, **params)
    assert code == 200
    assert body["shape"]["name"] == "mission" and body["study_id"] == sample.mission.id


def test_interpreted_results_are_never_served_by_default(
    client: TestClient, sample: SampleData
) -> None:
    code, body = _best(client, shape="tiny")
    assert code == 404
    assert "no tuned config" in body["detail"]
    code, body = _best(client, shape="tiny", interpreted="true")
    assert code == 200
    assert body["environment"]["interpreted"] is True
    assert body["study_id"] == sample.tiny_interpreted.id


def test_untuned_shape_is_404_with_json(client: TestClient) -> None:
    code, body = _best(client, shape="long")
    assert code == 404
    assert body["detail"].startswith("no tuned config for attention shape long")


def _error_loc(body: dict) -> list:
    (error,) = body["errors"]
    return error["loc"]


def test_bad_parameters_are_422(client: TestClient) -> None:
    code, body = _best(client, shape="nope")
    assert code == 422 and _error_loc(body) == ["query", "shape"]
    assert "known shapes" in body["errors"][0]["msg"]
    response = client.get("/v1/best", params={"kernel": "nope", "shape": "mission"})
    assert response.status_code == 422 and _error_loc(response.json()) == ["query", "kernel"]
    assert client.get("/v1/best", params={"shape": "mission"}).status_code == 422  # no kernel
    code, body = _best(client)  # neither shape nor dims
    assert code == 422 and "every dim" in body["errors"][0]["msg"]


def test_adhoc_dims_are_validated_by_type_and_completeness(client: TestClient) -> None:
    dims = {k: str(v).lower() if isinstance(v, bool) else v for k, v in ADHOC_DIMS.items()}
    code, body = _best(client, **{**dims, "S": "long"})
    assert code == 422 and _error_loc(body) == ["query", "S"]
    code, body = _best(client, **{**dims, "causal": "maybe"})
    assert code == 422 and _error_loc(body) == ["query", "causal"]
    code, body = _best(client, **{**dims, "dtype": "int8"})
    assert code == 422 and "tolerance" in body["errors"][0]["msg"]
    partial = {k: dims[k] for k in ("B", "H")}
    code, body = _best(client, **partial)
    assert code == 422 and "missing S, D, causal, dtype" in body["errors"][0]["msg"]
    code, body = _best(client, shape="mission", B=1)
    assert code == 422 and "not both" in body["errors"][0]["msg"]
