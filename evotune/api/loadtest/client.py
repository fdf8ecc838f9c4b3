"""The load benchmark's HTTP client: one asyncio process, raw HTTP/1.1 over keep-alive.

Two ways to load a server:
- `open_loop`: request i is due at t0 + i/rate; its latency counts from when it was due, so
  a server that falls behind shows it in the tail (no coordinated omission).
- `closed_loop`: N clients, each sending its next request when the last one is answered
  (a 503 with Retry-After makes it wait that long first, plus random jitter of up to
  half of it, as a polite client would).
Every request has a timeout; a request past it counts as `timeout` and its connection is
dropped. `probe` times a fresh-connection GET (e.g. /healthz) every `every_s`, in a process
of its own (`probe_process`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Probe",
    "Tally",
    "closed_loop",
    "open_loop",
    "probe",
    "probe_process",
    "request_bytes",
]


@dataclass
class Tally:
    """What came back (latencies in ms; errors are timeouts and connection failures)."""

    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class Probe:
    """One probe request: when (wall clock, s), latency (ms), status or error."""

    at_s: float
    latency_ms: float
    status: str


def request_bytes(host: str, port: int, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n\r\n"
    ).encode()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0"))
    body = await reader.readexactly(length) if length else b""
    return status, headers, body


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, request: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(request)
        response = await _read_response(self.reader)
        if response[1].get(b"connection", b"").lower() == b"close":
            self.close()
        return response

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


_FAILURES = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


async def _one(
    conn: _Connection, request: bytes, timeout_s: float, tally: Tally, counted: bool
) -> tuple[int, dict[bytes, bytes]] | None:
    """Send one request; record its outcome when `counted`; None on timeout or failure."""
    try:
        status, headers, _ = await asyncio.wait_for(conn.get(request), timeout_s)
    except TimeoutError:
        conn.close()
        if counted:
            tally.errors["timeout"] += 1
        return None
    except _FAILURES as exc:
        conn.close()
        if counted:
            tally.errors[type(exc).__name__] += 1
        return None
    if counted:
        tally.statuses[str(status)] += 1
    return status, headers


async def open_loop(
    host: str,
    port: int,
    requests: list[bytes],
    rate: float,
    seconds: float,
    warmup: float,
    connections: int,
    timeout_s: float,
) -> Tally:
    """Requests due at a fixed rate over `connections` connections; only 200s are timed."""
    queue: asyncio.Queue[tuple[float, bool] | None] = asyncio.Queue()
    tally = Tally()

    async def client() -> None:
        conn = _Connection(host, port)
        while (item := await queue.get()) is not None:
            due, counted = item
            request = requests[int(due * 1e6) % len(requests)]
            outcome = await _one(conn, request, timeout_s, tally, counted)
            if counted and outcome is not None and outcome[0] == 200:
                tally.latencies_ms.append((time.perf_counter() - due) * 1000)
        conn.close()

    tasks = [asyncio.create_task(client()) for _ in range(connections)]
    start = time.perf_counter() + 0.05
    total = int((warmup + seconds) * rate)
    i = 0
    while i < total:
        now = time.perf_counter()
        while i < total and start + i / rate <= now:
            due = start + i / rate
            counted = due >= start + warmup
            tally.sent += counted
            queue.put_nowait((due, counted))
            i += 1
        await asyncio.sleep(max(0.0, min(0.001, start + i / rate - time.perf_counter())))
    for _ in tasks:
        queue.put_nowait(None)
    await asyncio.gather(*tasks)
    return tally


async def closed_loop(
    host: str,
    port: int,
    requests: list[bytes],
    concurrency: int,
    seconds: float,
    timeout_s: float,
    honor_retry_after: bool = True,
) -> Tally:
    """`concurrency` clients, each with its own connection, for `seconds`; every answer is
    timed (a fast 503 is a fast answer), statuses and errors counted."""
    tally = Tally()
    stop_at = time.perf_counter() + seconds

    async def client(index: int) -> None:
        conn = _Connection(host, port)
        rng = random.Random(index)
        turn = index
        while time.perf_counter() < stop_at:
            request = requests[turn % len(requests)]
            turn += 1
            sent = time.perf_counter()
            tally.sent += 1
            outcome = await _one(conn, request, timeout_s, tally, True)
            if outcome is None:
                continue
            tally.latencies_ms.append((time.perf_counter() - sent) * 1000)
            status, headers = outcome
            if status == 503 and honor_retry_after:
                # Retry-After, plus up to half of it again at random: a herd of clients that
                # were all refused at once must not all come back at once.
                wait = float(headers.get(b"retry-after", b"1") or 1) * (1 + rng.random() / 2)
                await asyncio.sleep(min(wait, max(0.0, stop_at - time.perf_counter())))
        conn.close()

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return tally


async def probe(host: str, port: int, path: str, every_s: float, stop: Any) -> list[Probe]:
    """GET `path` on a new connection every `every_s` until `stop` (an Event) is set."""
    request = request_bytes(host, port, path)
    out: list[Probe] = []
    while not stop.is_set():
        conn = _Connection(host, port)
        wall, sent = time.time(), time.perf_counter()
        tally = Tally()
        outcome = await _one(conn, request, 10.0, tally, True)
        conn.close()
        status = str(outcome[0]) if outcome else next(iter(tally.errors), "error")
        out.append(Probe(wall, (time.perf_counter() - sent) * 1000, status))
        await asyncio.sleep(max(0.0, every_s - (time.perf_counter() - sent)))
    return out


def probe_process(host: str, port: int, path: str, ready: Any, stop: Any, out: Any) -> None:
    """`probe` in a process of its own (multiprocessing target): the load's client loop,
    busy with hundreds of connections, must not delay the probe's own timing."""
    ready.set()
    out.put(asyncio.run(probe(host, port, path, 0.1, stop)))
