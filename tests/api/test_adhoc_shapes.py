"""Ad-hoc shapes in the service and the dashboard: shapes searched with --dims and shapes of
kernels tuned with `evotune.autotune` (no search-space file) are listed with their newest
study, and /overview offers the best config for given dims (GET /v1/best, nearest=true)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import triton
from fastapi.testclient import TestClient

import evotune
from evotune.api import create_app
from tests.api.conftest import ADHOC_DIMS, KERNEL, SampleData, build_sample_db
from tests.autotune_kernels import accumulate

DECORATED = "tests.autotune_kernels.accumulate"


def _launch(url: str, n: int, tune: bool) -> None:
    configs = {"BLOCK": [64, 128]}
    kernel = evotune.autotune(configs=configs, key=["n"], store=url, tune=tune)(accumulate)
    kernel[lambda meta: (triton.cdiv(n, meta["BLOCK"]),)](torch.randn(n), torch.zeros(n), n)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> SampleData:
    """The API's sample database, plus a kernel tuned through the decorator (n=200) and a
    miss of it (n=300)."""
    sample = build_sample_db(tmp_path_factory.mktemp("adhoc") / "adhoc.db")
    _launch(sample.url, 200, tune=True)
    _launch(sample.url, 300, tune=False)
    return sample


@pytest.fixture(scope="module")
def client(data: SampleData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    app = create_app(data.url, job_log_dir=tmp_path_factory.mktemp("jobs"))
    with TestClient(app) as test_client:
        yield test_client


def _studies(client: TestClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get("/v1/studies", params={"limit": 500}).json()["items"]
    return items


def test_shapes_list_ad_hoc_and_decorated_shapes_with_their_newest_study(
    client: TestClient, data: SampleData
) -> None:
    shapes = client.get("/v1/shapes").json()
    assert [s["kernel"] for s in shapes][-2:] == [DECORATED, DECORATED]  # after the files'
    (adhoc,) = [s for s in shapes if s["kernel"] == KERNEL and s["dims"] == ADHOC_DIMS]
    assert (adhoc["name"], adhoc["source"]) == (None, "database")
    assert adhoc["newest_study_id"] == data.adhoc.id
    decorated = {s["dims"]["n"]: s for s in shapes if s["kernel"] == DECORATED}
    assert decorated[200]["dims"] == {"n": 200, "dtypes": "float32,float32"}
    by_id = {s["id"]: s for s in _studies(client)}
    tuned, pending = (
        by_id[decorated[200]["newest_study_id"]],
        by_id[decorated[300]["newest_study_id"]],
    )
    assert (tuned["kernel"], tuned["state"], tuned["shape"]["dims"]["n"]) == (
        DECORATED,
        "finished",
        200,
    )
    assert (pending["state"], pending["shape"]["dims"]["n"]) == ("pending", 300)
    assert decorated[200]["tuned_on"] == []  # interpreter results: not on a GPU
    named = [s for s in shapes if s["kernel"] == KERNEL and s["source"] == "space"]
    assert all(s["newest_study_id"] is None or s["newest_study_id"] in by_id for s in named)


def test_a_kernel_filter_keeps_to_that_kernel(client: TestClient) -> None:
    shapes = client.get("/v1/shapes", params={"kernel": KERNEL}).json()
    assert {s["kernel"] for s in shapes} == {KERNEL}
    # /v1/best and the kernel filters know the kernels of search-space files only.
    assert client.get("/v1/shapes", params={"kernel": DECORATED}).status_code == 422


def test_the_studies_page_links_each_shape_to_its_study_and_a_lookup(client: TestClient) -> None:
    page = client.get("/").text
    assert "<th>look up</th>" in page and "evotune.autotune" in page
    script = client.get("/static/index.js").text
    assert "newest_study_id" in script and "/overview?" in script


def test_the_overview_page_has_the_lookup_form(client: TestClient) -> None:
    page = client.get("/overview").text
    for element in ('id="lookup"', 'id="lookup-kernel"', 'id="lookup-dims"', 'id="lookup-answer"'):
        assert element in page
    assert re.search(r'<script src="/static/lookup\.js"></script>', page)
    script = client.get("/static/lookup.js")
    assert script.status_code == 200 and 'params.set("nearest", "true")' in script.text


def test_the_lookup_answer_names_the_tuned_shape_that_answered(client: TestClient) -> None:
    """What lookup.js reads from /v1/best: the served shape, whether it is exact, the config,
    the GPU and the study."""
    asked = {**ADHOC_DIMS, "S": ADHOC_DIMS["S"] * 2}
    query = {"kernel": KERNEL, **{k: str(v).lower() for k, v in asked.items()}, "nearest": "true"}
    body = client.get("/v1/best", params=query).json()
    assert body["exact"] is False
    assert body["shape"]["dims"] == ADHOC_DIMS and body["requested"]["dims"]["S"] == asked["S"]
    assert body["config"] and body["environment"]["gpu"] and body["study_id"] > 0
    query = {**query, "S": str(ADHOC_DIMS["S"])}
    assert client.get("/v1/best", params=query).json()["exact"] is True
