"""`serve(host, port, db_url)`: uvicorn answers on loopback, with one or several workers."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from evotune.api.server import serve
from evotune.errors import UserError
from tests.api.conftest import SampleData


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
        return response.status, json.load(response)


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_on_loopback(sample: SampleData, workers: int) -> None:
    port = _free_port()
    code = f"from evotune.api.server import serve; serve('127.0.0.1', {port}, {sample.url!r}, {workers})"
    process = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "serve exited"
            try:
                status, body = _get(port, "/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, "serve never answered"
                time.sleep(0.2)
        assert status == 200 and body["status"] == "ok"
        status, best = _get(port, "/v1/best?kernel=attention&shape=mission")
        assert status == 200 and best["trial_id"] == sample.mission.best_trial_id
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0  # a clean shutdown


def test_serve_refuses_a_short_token_before_listening(
    sample: SampleData, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVOTUNE_TOKEN", "short")
    with pytest.raises(UserError, match="too short"):
        serve("127.0.0.1", _free_port(), sample.url)
