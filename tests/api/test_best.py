"""GET /v1/best: named and ad-hoc shapes, filters, interpreter exclusion, 404 and 422."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from evotune.api import create_app
from evotune.space import load_space
from evotune.storage import open_database
from tests.api.conftest import (
    ADHOC_DIMS,
    H100,
    H100_OLD_SOURCE,
    H200,
    KERNEL,
    T0,
    SampleData,
    _add_study,
)


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


def test_only_configs_of_the_installed_kernel_source_are_served_unless_stale(
    tmp_path: Path,
) -> None:
    """mission: a current best and a newer one of an older kernel source; stage1: only an
    old one. The current is served; the old only with stale=true, and marked so."""
    url = f"sqlite:///{tmp_path / 'stale.db'}"
    db = open_database(url)
    space = load_space(KERNEL)
    current = _add_study(db, space, space.shape("mission"), H100, seed=1, generations=1,
                         per_generation=6)  # fmt: skip
    newer_old = _add_study(db, space, space.shape("mission"), H100_OLD_SOURCE, seed=2,
                           generations=1, per_generation=6, measured_at=T0 + timedelta(days=1))  # fmt: skip
    only_old = _add_study(db, space, space.shape("stage1"), H100_OLD_SOURCE, seed=3,
                          generations=2, per_generation=12)  # fmt: skip
    db.dispose()
    assert None not in (current.best_trial_id, newer_old.best_trial_id, only_old.best_trial_id)
    with TestClient(create_app(url, job_log_dir=tmp_path / "jobs")) as client:
        code, body = _best(client, shape="mission")
        assert code == 200 and body["study_id"] == current.id and body["stale"] is False
        assert body["kernel_source_hash"] == H100["kernel_source_hash"]
        code, body = _best(client, shape="stage1")
        assert code == 404 and "stale=true" in body["detail"]
        code, body = _best(client, shape="stage1", stale="true")
        assert code == 200 and body["study_id"] == only_old.id and body["stale"] is True
        assert body["environment"]["kernel_source_hash"] == H100_OLD_SOURCE["kernel_source_hash"]
        code, body = _best(client, shape="mission", stale="true")  # the newest of any source
        assert code == 200 and body["study_id"] == newer_old.id and body["stale"] is True
        # A client that runs the old source asks for its own.
        old = H100_OLD_SOURCE["kernel_source_hash"]
        code, body = _best(client, shape="mission", kernel_source_hash=old)
        assert code == 200 and body["study_id"] == newer_old.id and body["stale"] is False


def _query(dims: dict) -> dict:
    return {k: str(v).lower() if isinstance(v, bool) else v for k, v in dims.items()}


def test_an_exact_answer_says_so(client: TestClient, sample: SampleData) -> None:
    code, body = _best(client, shape="mission", nearest="true")
    assert code == 200 and body["study_id"] == sample.mission.id
    assert body["exact"] is True and body["requested"] == body["shape"]


def test_nearest_serves_the_nearest_tuned_shape_and_names_it(
    client: TestClient, sample: SampleData
) -> None:
    asked = {**load_space(KERNEL).shape("mission").dims, "B": 24}  # untuned, next to mission
    code, body = _best(client, **_query(asked))
    assert code == 404  # only when asked for
    code, body = _best(client, **_query(asked), nearest="true")
    assert code == 200 and body["exact"] is False
    assert body["study_id"] == sample.mission.id and body["shape"]["name"] == "mission"
    assert body["requested"] == {"name": None, "key": body["requested"]["key"], "dims": asked}
    # The filters hold for the nearest too: ADHOC_DIMS is tuned on the H100 only.
    near_adhoc = _query({**ADHOC_DIMS, "S": 300})
    code, body = _best(client, **near_adhoc, nearest="true")
    assert code == 200 and body["study_id"] == sample.adhoc.id
    assert body["shape"]["dims"] == ADHOC_DIMS
    code, body = _best(client, **near_adhoc, nearest="true", gpu=H200["gpu"])
    assert code == 200 and body["study_id"] == sample.mission_h200.id


def test_nearest_never_serves_interpreted_results_unless_asked(
    client: TestClient, sample: SampleData
) -> None:
    near_tiny = _query({**load_space(KERNEL).shape("tiny").dims, "H": 1})
    code, body = _best(client, **near_tiny, nearest="true")
    assert code == 200 and body["environment"]["interpreted"] is False
    assert body["study_id"] != sample.tiny_interpreted.id
    code, body = _best(client, **near_tiny, nearest="true", interpreted="true")
    assert code == 200 and body["study_id"] == sample.tiny_interpreted.id
    assert body["shape"]["name"] == "tiny" and body["exact"] is False


def test_nearest_with_nothing_tuned_is_404(client: TestClient) -> None:
    code, body = _best(client, shape="long", nearest="true", gpu="NVIDIA B200")
    assert code == 404 and "nor for any other shape" in body["detail"]


def test_dims_with_their_defaults_spelled_out_are_the_same_shape(
    client: TestClient, sample: SampleData
) -> None:
    explicit = _query({**ADHOC_DIMS, "Hkv": 4, "Skv": 256})  # Hkv = H, Skv = S
    code, body = _best(client, **explicit)
    assert code == 200 and body["study_id"] == sample.adhoc.id
    assert body["shape"]["dims"] == ADHOC_DIMS


def test_dims_no_config_can_run_are_404_naming_the_rule(client: TestClient) -> None:
    # Well-formed (the OpenAPI document allows them), but no kernel config runs them.
    for extra, rule in (({"Hkv": 3}, "H % Hkv == 0"), ({"Skv": 128}, "S <= Skv")):
        code, body = _best(client, **_query({**ADHOC_DIMS, **extra}), nearest="true")
        assert code == 404 and body["code"] == "not_found", body
        assert body["detail"].startswith("no config can exist for attention shape: ")
        assert rule in body["detail"]
