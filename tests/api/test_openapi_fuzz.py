"""schemathesis `run --checks all` against the live service: zero failures.

Every check, every phase (examples, coverage, fuzzing, stateful), over the sample database
on 127.0.0.1. POSTs that pass validation start a child that exits at once (no search runs).
EVOTUNE_FUZZ_EXAMPLES raises the examples per operation (default 25: a CI-sized run).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from evotune.api import create_app
from tests.api.conftest import TOKEN, build_sample_db

pytest.importorskip("schemathesis")


def test_schemathesis_finds_nothing_with_all_checks(tmp_path: Path) -> None:
    cli = shutil.which("schemathesis") or shutil.which("st")
    if cli is None:
        pytest.skip("the schemathesis command is not installed")
    sample = build_sample_db(tmp_path / "fuzz.db")
    app = create_app(
        sample.url,
        token=TOKEN,
        launcher=[sys.executable, "-c", "pass"],
        job_log_dir=tmp_path / "jobs",
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        examples = os.environ.get("EVOTUNE_FUZZ_EXAMPLES", "25")
        result = subprocess.run(
            [
                cli, "run", f"http://127.0.0.1:{port}/openapi.json",
                "--checks", "all",
                "--max-examples", examples,
                "--seed", "23",
                "--header", f"Authorization: Bearer {TOKEN}",
                "--workers", "1",
                "--no-color",
            ],
            cwd=tmp_path,  # its .schemathesis/ cache stays out of the checkout
            capture_output=True,
            text=True,
            timeout=600,
        )  # fmt: skip
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    cases = result.stdout.split("Test cases:")[-1]  # "N generated, N passed, K skipped"
    assert "passed" in cases and "failed" not in cases, result.stdout[-3000:]
