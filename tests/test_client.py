"""evotune.client.best_config from an exported file, a database and a live service; and the
exported Python module on its own."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evotune import client
from evotune.errors import SourceError, UserError
from evotune.space import load_space
from evotune.storage import open_database, repository
from tests.api.conftest import (
    H100_OLD_SOURCE,
    H200,
    KERNEL,
    SampleData,
    _add_study,
    build_sample_db,
)
from tests.test_cli import evotune

SPACE = load_space(KERNEL)
MISSION = SPACE.shape("mission").dims
TINY = SPACE.shape("tiny").dims  # tuned under the interpreter only
STAGE1 = SPACE.shape("stage1").dims  # tuned under an older kernel source only
UNTUNED = SPACE.shape("long").dims


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleData:
    data = build_sample_db(tmp_path_factory.mktemp("client") / "sample.db")
    db = open_database(data.url)
    _add_study(db, SPACE, SPACE.shape("stage1"), H100_OLD_SOURCE, seed=5, generations=1,
               per_generation=6)  # fmt: skip
    db.dispose()
    return data


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    client.clear_cache()
    yield
    client.clear_cache()


def _served(sample: SampleData, dims: dict[str, Any], **filters: Any) -> dict[str, Any] | None:
    """What `evotune best` and the service serve: repository.best_config."""
    db = open_database(sample.url)
    try:
        with db.session() as session:
            row = repository.best_config(session, KERNEL, SPACE.adhoc_shape(dims).key, **filters)
            return None if row is None else dict(row.config)
    finally:
        db.dispose()


def _export(sample: SampleData, out: Path, *options: str) -> Path:
    result = evotune("export", "--output", str(out), *options, env={"EVOTUNE_DB": sample.url})
    assert result.returncode == 0, result.stderr
    return out


def _current(sample: SampleData) -> dict[str, Any]:
    """The sample's current-source configs: the answers every source must give."""
    return {
        "mission": _served(sample, MISSION, kernel_source_hash=_source()),
        "mission_h200": _served(sample, MISSION, gpu=H200["gpu"], kernel_source_hash=_source()),
        "tiny": _served(sample, TINY, include_interpreted=True, kernel_source_hash=_source()),
        "stage1_stale": _served(sample, STAGE1),
    }


def _source() -> str:
    from evotune.source_hash import kernel_source_hash

    return kernel_source_hash(SPACE.module)


def _check_source(sample: SampleData, **source: Any) -> None:
    """One source answers as the database does, with every filter and stale rule."""
    want = _current(sample)
    assert all(want.values()) and want["mission"] != want["mission_h200"]
    assert client.best_config(KERNEL, MISSION, **source) == want["mission"]
    assert client.best_config(KERNEL, MISSION, **source, gpu=H200["gpu"]) == want["mission_h200"]
    assert client.best_config(KERNEL, UNTUNED, **source) is None
    assert client.best_config(KERNEL, TINY, **source) is None  # interpreted: only when asked
    assert client.best_config(KERNEL, TINY, **source, interpreted=True) == want["tiny"]
    assert client.best_config(KERNEL, STAGE1, **source) is None  # older kernel source
    assert client.best_config(KERNEL, STAGE1, **source, stale=True) == want["stage1_stale"]


def test_an_exported_json_file_answers_as_the_database(sample: SampleData, tmp_path: Path) -> None:
    path = _export(sample, tmp_path / "best.json", "--interpreted", "--stale")
    entries = json.loads(path.read_text())
    assert {"dims", "config", "p50_us", "shootout_p50_us", "gpu", "kernel_source_hash"} <= set(
        entries[0]
    )
    _check_source(sample, path=path)


def test_the_database_answers_as_evotune_best(sample: SampleData, tmp_path: Path) -> None:
    _check_source(sample, db=sample.url)
    missing = tmp_path / "none.db"
    with pytest.raises(SourceError, match="cannot read database"):
        client.best_config(KERNEL, MISSION, db=str(missing))
    assert not missing.exists()  # a client never creates a database


def test_the_service_answers_over_http(sample: SampleData) -> None:
    with _serving(sample.url) as url:
        _check_source(sample, url=url)
        with pytest.raises(SourceError, match="answered 422"):
            client.best_config(KERNEL, {**MISSION, "causal": "maybe"}, url=url)


def test_the_exported_python_module_needs_no_evotune(sample: SampleData, tmp_path: Path) -> None:
    module = _export(sample, tmp_path / "best_configs.py", "--format", "python")
    probe = f"""
import importlib.util, json
try:
    import evotune
    raise SystemExit("evotune is importable")
except ImportError:
    pass
spec = importlib.util.spec_from_file_location("best_configs", {str(module)!r})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
print(json.dumps([mod.best_config({MISSION!r}), mod.best_config({MISSION!r}, gpu={H200["gpu"]!r}),
                  mod.best_config({TINY!r}), mod.best_config({UNTUNED!r})]))
"""
    # -I -S: no site-packages, no current folder: only the standard library.
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    want = _current(sample)
    assert json.loads(result.stdout) == [want["mission"], want["mission_h200"], None, None]


def test_answers_are_cached_in_the_process(sample: SampleData, tmp_path: Path) -> None:
    path = _export(sample, tmp_path / "best.json")
    first = client.best_config(KERNEL, MISSION, path=path)
    assert first is not None
    first["BLOCK_M"] = "changed by the caller"
    path.unlink()  # a second lookup would fail
    assert (
        client.best_config(KERNEL, dict(reversed(MISSION.items())), path=path)
        == _current(sample)["mission"]
    )
    client.clear_cache()
    with pytest.raises(SourceError, match="cannot read"):
        client.best_config(KERNEL, MISSION, path=path)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({}, "exactly one of url=, db=, path="),
        ({"db": "sqlite:///x.db", "path": "x.json"}, "exactly one of"),
        ({"url": "file:///etc/passwd"}, "must be http:// or https://"),
        ({"url": "http://127.0.0.1:9"}, "cannot reach"),
    ],
)
def test_a_bad_source_is_a_clear_error(source: dict[str, str], message: str) -> None:
    with pytest.raises(SourceError, match=message):
        client.best_config(KERNEL, MISSION, **source)


def test_a_bad_file_or_bad_dims_is_a_clear_error(tmp_path: Path) -> None:
    not_json = tmp_path / "x.json"
    not_json.write_text("{")
    with pytest.raises(SourceError, match="is not JSON"):
        client.best_config(KERNEL, MISSION, path=not_json)
    not_json.write_text('{"a": 1}')
    with pytest.raises(SourceError, match="not a list of entries"):
        client.best_config(KERNEL, MISSION, path=not_json)
    with pytest.raises(UserError, match="missing"):
        client.best_config(KERNEL, {"B": 1}, path=not_json)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _serving:
    """`evotune.api.server.serve` in a subprocess on 127.0.0.1; its base URL."""

    def __init__(self, db_url: str) -> None:
        self.port = _free_port()
        code = f"from evotune.api.server import serve; serve('127.0.0.1', {self.port}, {db_url!r})"
        self.process = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[1])

    def __enter__(self) -> str:
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, "serve exited"
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                    return url
            except OSError:
                assert time.monotonic() < deadline, "serve never answered"
                time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)
