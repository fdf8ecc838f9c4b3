"""GET /healthz, /v1/kernels, /v1/shapes, the OpenAPI document and the dashboard pages."""

from __future__ import annotations

from fastapi.testclient import TestClient

from evotune.space import load_space
from evotune.storage.engine import head_revision
from tests.api.conftest import ADHOC_DIMS, H100, H200, KERNEL, SampleData


def test_healthz_says_ok_without_the_database_url(client: TestClient, sample: SampleData) -> None:
    response = client.get("/healthz")
    body = response.json()
    assert body["status"] == "ok" and body["backend"] == "sqlite"
    assert body["schema_revision"] == head_revision()
    assert "sample.db" not in response.text and "/tmp" not in response.text


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


def test_openapi_documents_best_as_a_named_shape_or_every_dim(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    (lookup,) = schema["paths"]["/v1/best"]["get"]["parameters"]
    assert lookup["in"] == "query" and lookup["style"] == "form" and lookup["explode"] is True
    variants = lookup["schema"]["oneOf"]
    ours = [v for v in variants if v["properties"]["kernel"].get("enum") == [KERNEL]]
    assert len(variants) == 2 * len(client.get("/v1/kernels").json()) and len(ours) == 2
    named, adhoc = sorted(ours, key=lambda v: "shape" not in v["properties"])
    space = load_space(KERNEL)
    assert named["required"] == ["kernel", "shape"] and "S" not in named["properties"]
    assert named["properties"]["shape"]["enum"] == list(space.shapes)
    # Every dim, but those with a default (Hkv = H, Skv = S), which are optional.
    assert adhoc["required"] == ["kernel", "B", "H", "S", "D", "causal", "dtype"]
    assert "shape" not in adhoc["properties"]
    assert adhoc["properties"]["S"]["type"] == "integer"
    assert adhoc["properties"]["Hkv"]["description"] == "optional; default: H"
    assert adhoc["properties"]["causal"]["type"] == "boolean"
    assert adhoc["properties"]["dtype"]["enum"] == sorted(space.tolerances)
    for variant in (named, adhoc):
        assert variant["additionalProperties"] is False
        assert {"gpu", "fingerprint", "interpreted", "kernel_source_hash", "stale"} <= set(
            variant["properties"]
        )
    assert "bearer" in str(schema["components"]["securitySchemes"]).lower()


def test_every_error_answer_is_documented_with_one_shape(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            errors = {s: r for s, r in operation["responses"].items() if s[0] in "45"}
            assert "422" in errors or not operation.get("parameters"), (method, path)
            for status, response in errors.items():
                body = response["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/ErrorOut"}, (method, path, status)


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
