"""The service never creates its database, and says why it cannot serve, in JSON.

A missing, replaced, unmigrated or unreadable database makes /healthz a 503 with the reason
and every database route the same JSON error (never a stale answer, never plain text).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from evotune.api import create_app
from evotune.storage import open_database
from tests.api.conftest import SampleData

DB_ROUTES = [
    "/v1/studies",
    "/v1/studies/1",
    "/v1/studies/1/trials",
    "/v1/studies/1/importance",
    "/v1/shapes",
    "/v1/overview",
    "/v1/best?kernel=attention&shape=mission",
]


def _assert_unavailable(client: TestClient, reason: str, where: Path) -> None:
    for path in ["/healthz", *DB_ROUTES]:
        response = client.get(path)
        assert response.status_code == 503, (path, response.text)
        body = response.json()
        assert body["status"] == 503 and body["code"] == "database_unavailable", path
        assert reason in body["detail"], (path, body["detail"])
        assert str(where) not in response.text and where.name not in response.text
        assert int(response.headers["retry-after"]) > 0


def test_serve_never_creates_a_missing_database(tmp_path: Path) -> None:
    where = tmp_path / "absent.db"
    with TestClient(create_app(f"sqlite:///{where}")) as client:
        _assert_unavailable(client, "does not exist", where)
        assert client.get("/v1/kernels").status_code == 200  # what needs no database works
    assert not where.exists()
    assert not list(tmp_path.iterdir())  # no -wal, no -shm either


def test_a_database_created_later_is_served(tmp_path: Path, sample: SampleData) -> None:
    where = tmp_path / "later.db"
    with TestClient(create_app(f"sqlite:///{where}")) as client:
        assert client.get("/healthz").status_code == 503
        shutil.copy(sample.url.removeprefix("sqlite:///"), where)  # `evotune db upgrade`
        assert client.get("/healthz").status_code == 200
        assert client.get("/v1/studies").json()["total"] == len(sample.studies)


def test_deleting_the_database_while_serving_is_a_503_not_stale_answers(
    tmp_path: Path, sample: SampleData
) -> None:
    where = tmp_path / "served.db"
    shutil.copy(sample.url.removeprefix("sqlite:///"), where)
    with TestClient(create_app(f"sqlite:///{where}")) as client:
        for path in ["/healthz", *DB_ROUTES[:3], DB_ROUTES[-1]]:
            assert client.get(path).status_code == 200, path  # warm: pooled connections, cache
        for suffix in ("", "-wal", "-shm"):
            Path(f"{where}{suffix}").unlink(missing_ok=True)
        _assert_unavailable(client, "does not exist", where)
        assert not where.exists()
        shutil.copy(sample.url.removeprefix("sqlite:///"), where)  # restored
        assert client.get("/v1/studies").status_code == 200


def test_an_unmigrated_database_says_so(tmp_path: Path, sample: SampleData) -> None:
    where = tmp_path / "old.db"
    shutil.copy(sample.url.removeprefix("sqlite:///"), where)
    database = open_database(f"sqlite:///{where}", upgrade=False)
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    database.dispose()
    with TestClient(create_app(f"sqlite:///{where}")) as client:
        _assert_unavailable(client, "revision 0001", where)
        assert "evotune db upgrade" in client.get("/healthz").json()["detail"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"this is not a database" * 100, "not a readable SQLite database"),
        (b"", "no evotune schema"),
    ],
    ids=["garbage", "empty"],
)
def test_an_unreadable_database_says_so(tmp_path: Path, content: bytes, reason: str) -> None:
    where = tmp_path / "bad.db"
    where.write_bytes(content)
    with TestClient(create_app(f"sqlite:///{where}")) as client:
        _assert_unavailable(client, reason, where)


def test_errors_are_json_with_one_shape(client: TestClient) -> None:
    for path, status in [
        ("/v1/studies/999999", 404),
        ("/v1/studies/abc", 422),
        ("/v1/nope", 404),
        ("/static/nope.js", 404),
    ]:
        response = client.get(path)
        assert response.status_code == status, path
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert set(body) == {"status", "code", "detail", "errors"} and body["status"] == status
    wrong_method = client.put("/v1/studies")
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == "method_not_allowed"
    assert wrong_method.headers["allow"] == "GET, POST"


def test_an_unexpected_error_is_a_json_500(
    sample: SampleData, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evotune.storage import repository

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(repository, "count_studies", boom)
    client = TestClient(create_app(sample.url), raise_server_exceptions=False)
    response = client.get("/v1/studies")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "secret" not in response.text
