"""The image builds, has the C compiler Triton needs, and serves outside the container.

Needs a Docker daemon (skipped without one) and pulls the PyTorch base image: minutes the
first time. No GPU needed: the service and the CLI start without one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "evotune-test:latest"


def _docker_daemon() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _docker_daemon(), reason="no Docker daemon"),
]


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> str:
    built = _docker("build", "-t", IMAGE, str(ROOT), timeout=3600)
    assert built.returncode == 0, built.stderr[-3000:]
    return IMAGE


def test_the_image_runs_the_cli_and_has_a_c_compiler(image: str) -> None:
    version = _docker("run", "--rm", image, "--version")
    assert version.returncode == 0 and version.stdout.startswith("evotune "), version.stderr
    cc = _docker("run", "--rm", "--entrypoint", "gcc", image, "--version")
    assert cc.returncode == 0, cc.stderr


def test_serve_is_reachable_through_a_published_port(image: str) -> None:
    started = _docker("run", "-d", "--rm", "-p", "127.0.0.1::8000", image)
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        port = _docker("port", container, "8000").stdout.strip().rsplit(":", 1)[1]
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    assert json.load(r)["status"] == "ok"
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
    finally:
        _docker("rm", "-f", container)
