"""GET /v1/overview (best per kernel x shape x GPU and its gain) and /v1/studies/{id}/importance."""

from __future__ import annotations

import random

import pytest
from fastapi.testclient import TestClient

from evotune.api.importance import param_importances
from evotune.records import config_hash
from evotune.space import load_space
from tests.api.conftest import H100, H200, KERNEL, SampleData


def test_overview_has_one_row_per_kernel_shape_and_gpu(
    client: TestClient, sample: SampleData
) -> None:
    rows = client.get("/v1/overview").json()
    keys = [(r["kernel"], r["shape"]["key"], r["gpu"]) for r in rows]
    assert len(keys) == len(set(keys)) == 3  # mission on two GPUs, the ad-hoc shape
    assert not any(r["interpreted"] for r in rows)  # interpreter bests only on request
    by = {(r["shape"]["name"], r["gpu"]): r for r in rows}
    mission = by[("mission", H100["gpu"])]
    assert mission["study_id"] == sample.mission.id
    assert mission["trial_id"] == sample.mission.best_trial_id
    assert ("mission", H200["gpu"]) in by
    with_interpreter = client.get("/v1/overview", params={"interpreted": True}).json()
    assert len(with_interpreter) == 4


def test_overview_speedups_come_from_the_same_study(client: TestClient, sample: SampleData) -> None:
    (mission,) = [
        r
        for r in client.get("/v1/overview").json()
        if r["shape"]["name"] == "mission" and r["gpu"] == H100["gpu"]
    ]
    default_hash = config_hash(load_space(KERNEL).default_config())
    trials = client.get(f"/v1/studies/{sample.mission.id}/trials", params={"limit": 2000}).json()
    (default,) = [t for t in trials["items"] if t["config_hash"] == default_hash]
    assert mission["default_p50_us"] == default["p50_us"]
    assert mission["speedup_over_default"] == pytest.approx(default["p50_us"] / mission["p50_us"])
    assert mission["baseline"]["name"] == "cuDNN"
    assert mission["baseline"]["speedup"] == pytest.approx(30.0 / mission["p50_us"])
    others = [r for r in client.get("/v1/overview").json() if r is not mission]
    assert all(r["baseline"] is None for r in others if r["study_id"] != sample.mission.id)


def test_importance_ranks_the_parameters(client: TestClient, sample: SampleData) -> None:
    body = client.get(f"/v1/studies/{sample.mission.id}/importance").json()
    assert body["evaluator"] == "ped_anova" and body["trials"] == len(sample.mission.ok_p50)
    values = [i["importance"] for i in body["importances"]]
    assert values == sorted(values, reverse=True) and sum(values) == pytest.approx(1.0)
    names = {i["param"] for i in body["importances"]} | set(body["skipped"])
    assert names == set(load_space(KERNEL).parameters)
    assert client.get("/v1/studies/999999/importance").status_code == 404
    assert client.get("/v1/studies/1/importance", params={"evaluator": "nope"}).status_code == 422


def test_importance_finds_the_parameter_that_matters() -> None:
    choices = {"fast": [0, 1], "noise": ["a", "b", "c"], "constant": [7]}
    rng = random.Random(5)
    points = []
    for _ in range(80):  # p50 depends on `fast` alone; `noise` is drawn independently
        config = {"fast": rng.choice([0, 1]), "noise": rng.choice("abc"), "constant": 7}
        points.append((config, 10.0 - 5.0 * config["fast"] + rng.uniform(0.0, 1.0)))
    ranked, skipped = param_importances(points, choices)
    assert max(ranked, key=ranked.__getitem__) == "fast"
    assert skipped == ["constant"]  # one value: explains nothing


def test_importance_needs_a_few_trials() -> None:
    ranked, _ = param_importances([({"x": 1}, 1.0), ({"x": 2}, 2.0)], {"x": [1, 2]})
    assert ranked == {}
