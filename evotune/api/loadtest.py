"""Load benchmark: GET /v1/best at a fixed rate while a writer process stores trials.

    python -m evotune.api.loadtest [--seconds 30] [--rate 1000] [--connections 32]

It builds a fresh SQLite database in a temporary folder (never yours: the rows it writes are
synthetic), starts `uvicorn` on 127.0.0.1 in a subprocess, starts a writer process that stores
trials the way a search does (a `running` row, then its result, each its own commit; now and
then a new published best), and fires requests from one asyncio client over keep-alive
connections on an open-loop schedule. Latency is measured from each request's *scheduled*
send time, so a server that falls behind shows it in the tail (no coordinated omission).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["LoadResult", "main", "run_load", "seed_database", "writer_loop"]

KERNEL = "attention"
ENVIRONMENT = {
    "gpu": "loadtest-synthetic-gpu",
    "driver": "0",
    "cuda": "0",
    "torch": "0",
    "triton": "0",
    "kernel_source_hash": "loadtest",  # replaced by the installed one in seed_database
    "interpreted": False,
}


# --- the database: seed, and a writer that behaves like a search -----------------------------


def seed_database(url: str, kernel: str = KERNEL) -> dict[str, Any]:
    """A study per named shape with one published best; returns the queries to fire."""
    from evotune.records import TrialResult, TrialStatus, config_hash
    from evotune.source_hash import kernel_source_hash
    from evotune.space import load_space
    from evotune.storage import Study, open_database, repository

    space = load_space(kernel)
    # Measured under the installed kernel source, or the service would not serve it as current.
    environment = {**ENVIRONMENT, "kernel_source_hash": kernel_source_hash(space.module)}
    database = open_database(url)
    queries: list[str] = []
    study_id = 0
    try:
        for index, shape_name in enumerate(space.shapes):
            shape = space.shape(shape_name)
            with database.session() as s:
                kernel_row = repository.get_or_create_kernel(s, kernel)
                shape_row = repository.get_or_create_shape(s, kernel_row, shape)
                env = repository.get_or_create_environment(s, environment)
                study = Study(
                    kernel_id=kernel_row.id,
                    shape_id=shape_row.id,
                    environment_id=env.id,
                    strategy="loadtest",
                    settings={},
                    seed=index,
                    budget=10**9,
                    state="running",
                )
                s.add(study)
                s.flush()
                config = space.default_config()
                trial = repository.add_running_trial(
                    s, study, 0, config, config_hash(config), 0, 0, [], "seed"
                )
                p50 = 100.0 + index
                result = TrialResult(trial.id, TrialStatus.OK, p50, p50, p50, 5, [p50] * 5, 0.0)
                repository.finish_trial(s, trial, result)
                repository.publish_best(s, study, trial, shootout_p50_us=p50, tflops=1.0)
                study_id = study.id
            queries.append(f"/v1/best?kernel={kernel}&shape={shape_name}")
            dims = "&".join(
                f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in shape.dims.items()
            )
            queries.append(f"/v1/best?kernel={kernel}&{dims}")
    finally:
        database.dispose()
    return {"queries": queries, "writer_study_id": study_id}


def writer_loop(
    url: str, study_id: int, rate: float, seconds: float, publish_every: int, out: Any
) -> None:
    """Store trials at `rate` per second for `seconds` (two commits each, like the runner)."""
    from evotune.records import TrialResult, TrialStatus, config_hash
    from evotune.storage import Trial, open_database, repository

    database = open_database(url, upgrade=False)
    written = 0
    published = 0
    errors: Counter[str] = Counter()
    rng = random.Random(study_id)
    number = 10_000_000 * os.getpid()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        target = start + written / rate
        if target > time.perf_counter():
            time.sleep(target - time.perf_counter())
        try:
            config = {"n": number, "x": rng.random()}
            with database.session() as s:
                study = repository.get_study(s, study_id)
                trial = repository.add_running_trial(
                    s, study, number, config, config_hash(config), number, 0, [], "random"
                )
                trial_id = trial.id
            p50 = rng.uniform(90.0, 200.0)
            with database.session() as s:
                stored = s.get(Trial, trial_id)
                assert stored is not None
                result = TrialResult(trial_id, TrialStatus.OK, p50, p50, p50, 5, [p50] * 5, 0.0)
                repository.finish_trial(s, stored, result)
                if publish_every and written % publish_every == publish_every - 1:
                    repository.publish_best(s, repository.get_study(s, study_id), stored, p50, 1.0)
                    published += 1
            written += 1
        except Exception as exc:  # counted and reported: the benchmark asks for zero
            errors[f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"] += 1
        number += 1
    database.dispose()
    out.put(
        {
            "written": written,
            "published": published,
            "errors": dict(errors),
            "cpu_s": round(time.process_time(), 2),
        }
    )


# --- the client ------------------------------------------------------------------------------


@dataclass
class LoadResult:
    """What one run measured (latencies in milliseconds)."""

    target_rate: float
    seconds: float
    connections: int
    sent: int = 0
    completed: int = 0
    achieved_rate: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    max_ms: float = 0.0
    service_p99_ms: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    writer: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _fire(
    host: str,
    port: int,
    queries: list[str],
    rate: float,
    seconds: float,
    warmup: float,
    connections: int,
) -> tuple[list[float], list[float], Counter[str], Counter[str], int]:
    """Open-loop load: request i is due at t0 + i/rate; latency counts from when it was due."""
    queue: asyncio.Queue[tuple[float, str, bool] | None] = asyncio.Queue()
    latencies: list[float] = []
    service: list[float] = []
    errors: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    requests = [
        f"GET {q} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n\r\n".encode()
        for q in queries
    ]

    async def client() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while (item := await queue.get()) is not None:
            due, _, counted = item
            request = requests[int(due * 1e6) % len(requests)]
            try:
                if writer is None or reader is None:
                    reader, writer = await asyncio.open_connection(host, port)
                sent = time.perf_counter()
                writer.write(request)
                status, body = await _read_response(reader)
                done = time.perf_counter()
                if counted:
                    statuses[str(status)] += 1
                    if status == 200 and body.startswith(b"{"):
                        latencies.append((done - due) * 1000)
                        service.append((done - sent) * 1000)
                    else:
                        errors[f"HTTP {status}"] += 1
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                if counted:
                    errors[type(exc).__name__] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None

    tasks = [asyncio.create_task(client()) for _ in range(connections)]
    start = time.perf_counter() + 0.05
    total = int((warmup + seconds) * rate)
    sent = 0
    i = 0
    while i < total:
        now = time.perf_counter()
        while i < total and start + i / rate <= now:
            due = start + i / rate
            counted = due >= start + warmup
            sent += counted
            queue.put_nowait((due, "", counted))
            i += 1
        await asyncio.sleep(max(0.0, min(0.001, start + i / rate - time.perf_counter())))
    for _ in tasks:
        queue.put_nowait(None)
    await asyncio.gather(*tasks)
    return latencies, service, errors, statuses, sent


# --- orchestration ---------------------------------------------------------------------------


def _run_client(coroutine: Any) -> Any:
    """Run the client on uvloop when it is installed (less client CPU on a small host)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def _client_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("uvicorn did not answer /healthz in time")


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }


def run_load(
    seconds: float = 30.0,
    rate: float = 1000.0,
    connections: int = 32,
    workers: int = 1,
    writer_rate: float = 20.0,
    publish_every: int = 100,
    warmup: float = 2.0,
    workdir: Path | None = None,
) -> LoadResult:
    """The whole benchmark; returns its numbers (nothing is printed)."""
    load_before = round(os.getloadavg()[0], 2)  # other work on the host skews the tail
    folder = Path(tempfile.mkdtemp(prefix="evotune-load-", dir=workdir))
    url = f"sqlite:///{folder / 'load.db'}"
    seeded = seed_database(url)
    port = _free_port()
    env = {**os.environ, "EVOTUNE_DB": url}
    env.pop("EVOTUNE_TOKEN", None)
    server = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "--factory", "evotune.api.server:service_app",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--log-level", "warning", "--no-access-log",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    writer = None
    try:
        _wait_healthy(port, server)
        if writer_rate > 0:
            writer = context.Process(
                target=writer_loop,
                args=(url, seeded["writer_study_id"], writer_rate, warmup + seconds + 1.0,
                      publish_every, results),
                daemon=True,
            )  # fmt: skip
            writer.start()
        cpu_before = _cpu_seconds(server.pid)
        client_cpu = time.process_time()
        steal_before = _steal_seconds()
        latencies, service, errors, statuses, sent = _run_client(
            _fire("127.0.0.1", port, seeded["queries"], rate, seconds, warmup, connections)
        )
        client_cpu = time.process_time() - client_cpu
        steal = _delta(steal_before, _steal_seconds())
        cpu_after = _cpu_seconds(server.pid)
        writer_out: dict[str, Any] = {"written": 0, "published": 0, "errors": {}}
        if writer is not None:
            writer_out = results.get(timeout=60)
            writer.join(timeout=10)
    finally:
        if writer is not None and writer.is_alive():
            writer.terminate()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    latencies.sort()
    service.sort()
    return LoadResult(
        target_rate=rate,
        seconds=seconds,
        connections=connections,
        sent=sent,
        completed=len(latencies),
        achieved_rate=len(latencies) / seconds,
        p50_ms=statistics.median(latencies) if latencies else float("nan"),
        p90_ms=_percentile(latencies, 0.90),
        p99_ms=_percentile(latencies, 0.99),
        p999_ms=_percentile(latencies, 0.999),
        max_ms=latencies[-1] if latencies else float("nan"),
        service_p99_ms=_percentile(service, 0.99),
        errors=dict(errors),
        statuses=dict(statuses),
        writer=writer_out,
        server={"workers": workers, "cpu_s": _delta(cpu_before, cpu_after)},
        machine={
            **_machine(),
            "loadavg_1m_before": load_before,
            "client_cpu_s": round(client_cpu, 2),
            "client_loop": _client_loop(),
            "steal_s": steal,
        },
    )


def _cpu_seconds(pid: int) -> float | None:
    """User+system CPU of a process and its children (uvicorn workers), from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (OSError, ValueError, IndexError):
        return None
    for child in children:
        total += _cpu_seconds(int(child)) or 0.0
    return total


def _steal_seconds() -> float | None:
    """CPU time the hypervisor took from this VM, all CPUs (Linux /proc/stat); None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else round(after - before, 2)


def _report(result: LoadResult) -> str:
    lines = [
        f"GET /v1/best · target {result.target_rate:.0f} req/s for {result.seconds:.0f} s "
        f"over {result.connections} connections · {result.machine['cpus']} CPUs",
        f"  sent {result.sent}  completed {result.completed}  "
        f"achieved {result.achieved_rate:.1f} req/s",
        f"  latency ms (from scheduled send): p50 {result.p50_ms:.2f}  p90 {result.p90_ms:.2f}  "
        f"p99 {result.p99_ms:.2f}  p99.9 {result.p999_ms:.2f}  max {result.max_ms:.2f}",
        f"  service time p99 {result.service_p99_ms:.2f} ms",
        f"  errors {sum(result.errors.values())} {result.errors or ''}  statuses {result.statuses}",
        f"  writer: {result.writer.get('written')} trials stored, "
        f"{result.writer.get('published')} bests published, errors {result.writer.get('errors')}",
        f"  server: {result.server}",
        f"  client CPU {result.machine.get('client_cpu_s')} s · "
        f"writer CPU {result.writer.get('cpu_s')} s · VM steal {result.machine.get('steal_s')} s · "
        f"load average {result.machine.get('loadavg_1m_before')} before, "
        f"{result.machine.get('loadavg_1m_after')} after",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evotune.api.loadtest", description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--writer-rate", type=float, default=20.0, help="trials per second (0: no writer)"
    )
    parser.add_argument("--publish-every", type=int, default=100, help="trials per new best")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = run_load(
        seconds=args.seconds,
        rate=args.rate,
        connections=args.connections,
        workers=args.workers,
        writer_rate=args.writer_rate,
        publish_every=args.publish_every,
    )
    print(json.dumps(asdict(result), indent=2) if args.json else _report(result))
    failed = sum(result.errors.values()) + len(result.writer.get("errors", {}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
