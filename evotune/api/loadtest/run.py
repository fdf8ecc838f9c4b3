"""Load benchmark of the REST service: any route, open-loop rate or fixed concurrency.

    python -m evotune.api.loadtest                      # GET /v1/best, 1,000 req/s, 30 s
    python -m evotune.api.loadtest --routes db --concurrency 600 --seconds 30
    python -m evotune.api.loadtest --url http://127.0.0.1:8000 --route /v1/studies --rate 200

Without --url it builds a fresh SQLite database in a temporary folder (never yours: its rows
are synthetic), starts `evotune serve` on 127.0.0.1 in a subprocess, and a writer process
that stores trials into the same file the way a search does (a `running` row, then its
result, each its own commit; now and then a new published best). `--routes db` fires at every
database route in turn; `best` (the default) at /v1/best for named and ad-hoc shapes.

While the load runs, and for `--after` seconds after it, /healthz is probed on a new
connection every 100 ms. At the end the server it started gets SIGTERM under a short burst
of load, and the seconds until it exits are reported. The exit code is 1 when any request
timed out or failed to connect, answered other than 200/503, or the writer failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from evotune.api.loadtest import client, host
from evotune.api.loadtest.writer import seed_database, writer_loop
from evotune.errors import UserError

__all__ = ["LoadResult", "db_routes", "main", "run_load"]

ALLOWED = frozenset({"200", "503"})


@dataclass
class LoadResult:
    """What one run measured (latencies in milliseconds)."""

    mode: str
    routes: list[str]
    target_rate: float
    concurrency: int
    connections: int
    seconds: float
    timeout_s: float
    sent: int = 0
    completed: int = 0
    achieved_rate: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    max_ms: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    health_during: dict[str, Any] = field(default_factory=dict)
    health_after: dict[str, Any] = field(default_factory=dict)
    shutdown_s: float | None = None
    writer: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        """Timeouts, connection errors, answers other than 200/503, writer errors."""
        odd = sum(n for status, n in self.statuses.items() if status not in ALLOWED)
        return sum(self.errors.values()) + odd + len(self.writer.get("errors", {}))


def db_routes(seeded: dict[str, Any]) -> list[str]:
    """Every database route, over the seeded studies (the writer's study grows)."""
    study = seeded["writer_study_id"]
    return [
        "/v1/studies?limit=50",
        f"/v1/studies/{study}",
        f"/v1/studies/{study}/trials?limit=200",
        f"/v1/studies/{study}/trials?after=100&limit=200",
        "/v1/shapes",
        "/v1/overview",
        f"/v1/studies/{study}/importance",
        *seeded["queries"][:2],
    ]


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _probe_summary(probes: list[client.Probe]) -> dict[str, Any]:
    latencies = sorted(p.latency_ms for p in probes)
    statuses: dict[str, int] = {}
    for p in probes:
        statuses[p.status] = statuses.get(p.status, 0) + 1
    return {
        "n": len(probes),
        "p50_ms": round(_percentile(latencies, 0.5), 2),
        "p99_ms": round(_percentile(latencies, 0.99), 2),
        "max_ms": round(latencies[-1], 2) if latencies else None,
        "over_100ms": sum(1 for p in probes if p.latency_ms > 100),
        "slowest": [
            (round(p.at_s - probes[0].at_s, 1), round(p.latency_ms, 1))
            for p in sorted(probes, key=lambda p: -p.latency_ms)[:3]
        ],
        "statuses": statuses,
    }


def _run_client(coroutine: Any) -> Any:
    """Run the client on uvloop when it is installed (less client CPU on a small host)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


async def _load(
    hostname: str, port: int, requests: list[bytes], args: dict[str, Any]
) -> client.Tally:
    if args["concurrency"]:
        return await client.closed_loop(
            hostname, port, requests, args["concurrency"], args["seconds"], args["timeout_s"],
            args["honor_retry_after"],
        )  # fmt: skip
    return await client.open_loop(
        hostname, port, requests, args["rate"], args["seconds"], args["warmup"],
        args["connections"], args["timeout_s"],
    )  # fmt: skip


def _load_and_probe(
    hostname: str, port: int, requests: list[bytes], args: dict[str, Any], context: Any
) -> tuple[client.Tally, list[client.Probe], list[client.Probe]]:
    """The load, with /healthz probed from another process during it and `after` it."""
    probes, ready, stop = context.Queue(), context.Event(), context.Event()
    prober = context.Process(
        target=client.probe_process,
        args=(hostname, port, "/healthz", ready, stop, probes),
        daemon=True,
    )
    prober.start()
    ready.wait(timeout=60)
    tally = _run_client(_load(hostname, port, requests, args))
    ended = time.time()
    time.sleep(args["after"])
    stop.set()
    found: list[client.Probe] = probes.get(timeout=60)
    prober.join(timeout=10)
    return tally, [p for p in found if p.at_s <= ended], [p for p in found if p.at_s > ended]


def run_load(
    seconds: float = 30.0,
    rate: float = 1000.0,
    connections: int = 32,
    workers: int = 1,
    writer_rate: float = 20.0,
    publish_every: int = 100,
    warmup: float = 2.0,
    workdir: Path | None = None,
    *,
    routes: list[str] | None = None,
    concurrency: int = 0,
    timeout_s: float = 10.0,
    url: str | None = None,
    after: float = 0.0,
    history: int = 132,
    honor_retry_after: bool = True,
    sigterm: bool = True,
) -> LoadResult:
    """The whole benchmark; returns its numbers (nothing is printed).

    `routes`: paths, or "best" / "db" for the seeded sets; `concurrency` > 0 runs that many
    closed-loop clients instead of the open-loop `rate`; `url`: an already running server
    (then nothing is seeded, written or stopped).
    """
    load_before = round(os.getloadavg()[0], 2)
    routes = routes or ["best"]
    server = writer = None
    seeded: dict[str, Any] = {"queries": [], "writer_study_id": 0}
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    shutdown_s: float | None = None
    if url is None:
        folder = Path(tempfile.mkdtemp(prefix="evotune-load-", dir=workdir))
        db_url = f"sqlite:///{folder / 'load.db'}"
        seeded = seed_database(db_url, history=history)
        hostname, port = "127.0.0.1", host.free_port()
        server = host.start_server(db_url, port, workers, folder / "server.log")
    else:
        parts = urlsplit(url)
        hostname, port = parts.hostname or "127.0.0.1", parts.port or 80
    paths = _expand(routes, seeded)
    requests = [client.request_bytes(hostname, port, path) for path in paths]
    options = {
        "concurrency": concurrency, "seconds": seconds, "timeout_s": timeout_s, "rate": rate,
        "warmup": warmup, "connections": connections, "after": after,
        "honor_retry_after": honor_retry_after,
    }  # fmt: skip
    try:
        if server is not None:
            host.wait_healthy(port, server)
            if writer_rate > 0:
                writer = context.Process(
                    target=writer_loop,
                    args=(db_url, seeded["writer_study_id"], writer_rate,
                          warmup + seconds + after + 3.0, publish_every, results),
                    daemon=True,
                )  # fmt: skip
                writer.start()
        cpu_before = host.cpu_seconds(server.pid) if server else None
        client_cpu = time.process_time()
        steal_before = host.steal_seconds()
        tally, during, after_probes = _load_and_probe(hostname, port, requests, options, context)
        client_cpu = time.process_time() - client_cpu
        steal = host.delta(steal_before, host.steal_seconds())
        cpu_after = host.cpu_seconds(server.pid) if server else None
        if server is not None and sigterm:
            shutdown_s = _stop_under_load(hostname, port, requests, server)
        writer_out: dict[str, Any] = {"written": 0, "published": 0, "errors": {}}
        if writer is not None:
            writer_out = results.get(timeout=60)
            writer.join(timeout=10)
    finally:
        if writer is not None and writer.is_alive():
            writer.terminate()
        if server is not None and server.poll() is None:
            host.stop_server(server)
    latencies = sorted(tally.latencies_ms)
    return LoadResult(
        mode="concurrency" if concurrency else "rate",
        routes=paths,
        target_rate=rate,
        concurrency=concurrency,
        connections=connections,
        seconds=seconds,
        timeout_s=timeout_s,
        sent=tally.sent,
        completed=len(latencies),
        achieved_rate=len(latencies) / seconds,
        p50_ms=statistics.median(latencies) if latencies else float("nan"),
        p90_ms=_percentile(latencies, 0.90),
        p99_ms=_percentile(latencies, 0.99),
        p999_ms=_percentile(latencies, 0.999),
        max_ms=latencies[-1] if latencies else float("nan"),
        errors=dict(tally.errors),
        statuses=dict(tally.statuses),
        health_during=_probe_summary(during),
        health_after=_probe_summary(after_probes),
        shutdown_s=shutdown_s,
        writer=writer_out,
        server={"workers": workers, "cpu_s": host.delta(cpu_before, cpu_after)},
        machine={
            **host.machine(),
            "loadavg_1m_before": load_before,
            "client_cpu_s": round(client_cpu, 2),
            "steal_s": steal,
        },
    )


def _expand(routes: list[str], seeded: dict[str, Any]) -> list[str]:
    paths: list[str] = []
    for route in routes:
        if route == "best":
            paths += seeded["queries"]
        elif route == "db":
            paths += db_routes(seeded)
        else:
            paths.append(route)
    if not paths:
        raise UserError("no routes to load (with --url, give --route PATH)")
    return paths


def _stop_under_load(hostname: str, port: int, requests: list[bytes], server: Any) -> float | None:
    """SIGTERM while 50 clients keep sending; seconds until the server process ended."""
    burst = threading.Thread(
        target=_run_client,
        args=(client.closed_loop(hostname, port, requests, 50, 3.0, 5.0),),
        daemon=True,
    )
    burst.start()
    time.sleep(1.0)
    stopped = host.stop_server(server)
    burst.join(timeout=15)
    return stopped


def _report(result: LoadResult) -> str:
    load = (
        f"{result.concurrency} concurrent clients"
        if result.mode == "concurrency"
        else f"target {result.target_rate:.0f} req/s over {result.connections} connections"
    )
    hd, ha = result.health_during, result.health_after
    lines = [
        f"{len(result.routes)} routes · {load} · {result.seconds:.0f} s · "
        f"timeout {result.timeout_s:.0f} s · {result.machine['cpus']} CPUs",
        f"  sent {result.sent}  answered {result.completed}  "
        f"({result.achieved_rate:.1f} answers/s)  statuses {result.statuses}",
        f"  latency ms: p50 {result.p50_ms:.2f}  p90 {result.p90_ms:.2f}  "
        f"p99 {result.p99_ms:.2f}  p99.9 {result.p999_ms:.2f}  max {result.max_ms:.2f}",
        f"  errors {sum(result.errors.values())} {result.errors or ''}",
        f"  /healthz during: {hd.get('n')} probes, p50 {hd.get('p50_ms')} p99 {hd.get('p99_ms')} "
        f"max {hd.get('max_ms')} ms, {hd.get('over_100ms')} over 100 ms "
        f"(slowest at s: {hd.get('slowest')}) {hd.get('statuses')}",
    ]
    if ha.get("n"):
        lines.append(
            f"  /healthz after: {ha['n']} probes, p50 {ha['p50_ms']} p99 {ha['p99_ms']} "
            f"max {ha['max_ms']} ms, {ha['over_100ms']} over 100 ms {ha['statuses']}"
        )
    if result.shutdown_s is not None or result.server.get("cpu_s") is not None:
        lines.append(f"  SIGTERM under load: stopped in {result.shutdown_s} s")
    lines += [
        f"  writer: {result.writer.get('written')} trials stored, "
        f"{result.writer.get('published')} bests published, errors {result.writer.get('errors')}",
        f"  server CPU {result.server.get('cpu_s')} s · client CPU "
        f"{result.machine.get('client_cpu_s')} s · VM steal {result.machine.get('steal_s')} s · "
        f"load average {result.machine.get('loadavg_1m_before')} before, "
        f"{result.machine.get('loadavg_1m_after')} after",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evotune.api.loadtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", help="a running server (default: start one on a fresh DB)")
    parser.add_argument("--route", action="append", dest="routes", metavar="PATH",
                        help="a path to load (repeatable); 'best' or 'db' for the seeded sets")  # fmt: skip
    parser.add_argument("--routes", dest="routes", action="append", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="open loop: requests/s")
    parser.add_argument("--connections", type=int, default=32, help="open loop: connections")
    parser.add_argument("--concurrency", type=int, default=0,
                        help="closed loop: this many clients instead of --rate")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--after", type=float, default=0.0,
                        help="seconds of /healthz probes after the load")  # fmt: skip
    parser.add_argument("--ignore-retry-after", action="store_true",
                        help="closed loop: retry a 503 at once")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--writer-rate", type=float, default=20.0,
                        help="trials per second (0: no writer)")  # fmt: skip
    parser.add_argument("--publish-every", type=int, default=100, help="trials per new best")
    parser.add_argument("--history", type=int, default=132,
                        help="ok trials already in the writer's study")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        result = run_load(
            seconds=args.seconds,
            rate=args.rate,
            connections=args.connections,
            workers=args.workers,
            writer_rate=args.writer_rate,
            publish_every=args.publish_every,
            routes=args.routes,
            concurrency=args.concurrency,
            timeout_s=args.timeout,
            url=args.url,
            after=args.after,
            history=args.history,
            honor_retry_after=not args.ignore_retry_after,
        )
    except UserError as exc:  # one line and exit 2, as evotune's own commands
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(result), indent=2) if args.json else _report(result))
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
