"""The load benchmark's host side: the server process it starts, and what the machine did."""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = [
    "cpu_seconds",
    "delta",
    "free_port",
    "machine",
    "start_server",
    "steal_seconds",
    "stop_server",
    "wait_healthy",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(url: str, port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    """`evotune serve` as a user runs it (its limits, its protocol), on 127.0.0.1."""
    code = f"from evotune.api.server import serve; serve('127.0.0.1', {port}, {url!r}, {workers})"
    env = {k: v for k, v in os.environ.items() if k != "EVOTUNE_TOKEN"}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )


def wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            time.sleep(0.2)
    raise RuntimeError("the server did not answer /healthz in time")


def stop_server(process: subprocess.Popen[bytes], timeout: float = 30.0) -> float | None:
    """SIGTERM, then seconds until the process ended (None: killed after `timeout`)."""
    if process.poll() is not None:
        return 0.0
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None
    return round(time.monotonic() - started, 2)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }


def cpu_seconds(pid: int) -> float | None:
    """User+system CPU of a process and its children (uvicorn workers), from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (OSError, ValueError, IndexError):
        return None
    for child in children:
        total += cpu_seconds(int(child)) or 0.0
    return total


def steal_seconds() -> float | None:
    """CPU time the hypervisor took from this VM, all CPUs (Linux /proc/stat); None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else round(after - before, 2)
