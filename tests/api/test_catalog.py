"""GET /healthz, /v1/kernels, /v1/shapes, the OpenAPI document and the dashboard pages."""

from __future__ import annotations

from fastapi.testclient import TestClient

from evotune.space import load_space
from tests.api.conftest import ADHOC_DIMS, H100, H200, KERNEL, SampleData


def test_healthz(client: TestClient, sample: SampleData) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["database"].endswith("sample.db")


def test_kernels_lists_the_space(client: TestClient) -> None:
    (kernel,) = [k for k in client.get("/v1/kernels").json() if k["name"] == KERNEL]
    space = load_space(KERNEL)
    assert kernel["dims"] == dict(space.dims)
    assert [p["name"] for p in kernel["parameters"]] == list(space.parameters)
    assert kernel["shapes"] == list(space.shapes)


def test_shapes_named_then_adhoc_with_tuned_gpus(client: TestClient) -> None:
    shapes = client.get("/v1/shapes", params={"kernel": KERNEL}).json()
    space = load_space(KERNEL)
    named = [s for s in shapes if s["source"] == "space"]
    assert [s["name"] for s in named] == list(space.shapes)
    by_name = {s["name"]: s for s in named}
    assert by_name["mission"]["tuned_on"] == sorted([H100["gpu"], H200["gpu"]])
    assert by_name["tiny"]["tuned_on"] == []  # only an interpreter study: not tuned
    (adhoc,) = [s for s in shapes if s["source"] == "database"]
    assert adhoc["name"] is None and adhoc["dims"] == ADHOC_DIMS
    assert [s for s in client.get("/v1/shapes").json() if s["kernel"] == KERNEL] == shapes
    assert client.get("/v1/shapes", params={"kernel": "nope"}).status_code == 422


def test_openapi_documents_the_dims_of_best(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    params = {p["name"]: p for p in schema["paths"]["/v1/best"]["get"]["parameters"]}
    assert params["S"]["schema"]["type"] == "integer"
    assert params["causal"]["schema"]["type"] == "boolean"
    assert params["dtype"]["schema"]["type"] == "string"
    assert "bearer" in str(schema["components"]["securitySchemes"]).lower()


def test_dashboard_pages_and_assets_are_served_locally(
    client: TestClient, sample: SampleData
) -> None:
    index = client.get("/")
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    page = client.get(f"/studies/{sample.mission.id}").text
    for asset in ("/static/plot.js", "/static/common.js", "/static/study.js", "/static/app.css"):
        assert asset in page
        assert client.get(asset).status_code == 200
    for html in (index.text, page):
        assert "http://" not in html and "https://" not in html  # nothing from a CDN
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN
