"""docs/rest-api.md's "Try it" block runs as written (a real `evotune serve`, curl)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "rest-api.md"


def _try_it_block() -> str:
    section = DOC.read_text().split("## Try it", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    return block


@pytest.mark.slow
def test_the_try_it_block_runs(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("needs curl")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PORT": str(port)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `evotune`
    env.pop("EVOTUNE_DB", None)
    result = subprocess.run(
        ["bash", "-c", _try_it_block()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    log = (tmp_path / "serve.log").read_text() if (tmp_path / "serve.log").exists() else ""
    assert result.returncode == 0, result.stdout + result.stderr + log
    assert (tmp_path / "demo.db").exists()
