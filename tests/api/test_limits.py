"""Safe defaults: body size and time limits, header deadline (slow loris), security headers.

The socket tests run uvicorn as `serve` configures it, on 127.0.0.1, with short limits.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from fastapi.testclient import TestClient

from evotune.api import create_app
from evotune.api.limits import HttpLimits
from evotune.api.server import uvicorn_settings
from tests.api.conftest import TOKEN, SampleData

LIMITS = HttpLimits(header_timeout_s=0.5, body_timeout_s=0.5, max_body_bytes=1024)


@dataclass
class Live:
    port: int


@pytest.fixture(scope="module")
def live(sample: SampleData) -> Iterator[Live]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(sample.url, token=TOKEN, http_limits=LIMITS)
    settings = {**uvicorn_settings(LIMITS), "log_level": "warning"}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield Live(port)
    server.should_exit = True
    thread.join(timeout=10)


def _connect(live: Live) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=5)
    return sock


def _read_all(sock: socket.socket, limit_s: float = 5.0) -> tuple[bytes, float]:
    """Everything until the server closes; and how long that took."""
    started = time.monotonic()
    sock.settimeout(limit_s)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data, time.monotonic() - started
        data += chunk


def test_partial_headers_are_answered_408_and_closed(live: Live) -> None:
    with _connect(live) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and then nothing
        data, took = _read_all(sock)
    assert data.startswith(b"HTTP/1.1 408")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["code"] == "request_timeout"
    assert took < 4.0  # the 0.5 s deadline, not the client's 5 s


def test_headers_dribbled_byte_by_byte_do_not_extend_the_deadline(live: Live) -> None:
    with _connect(live) as sock:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200
        closed = False
        started = time.monotonic()
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.02)
            if time.monotonic() - started > 3.0:
                break
        if not closed:
            data, _ = _read_all(sock)
            closed = data.startswith(b"HTTP/1.1 408") or data == b""
    assert closed and time.monotonic() - started < 4.0


def test_a_silent_connection_is_closed(live: Live) -> None:
    with _connect(live) as sock:
        data, took = _read_all(sock)
    assert took < 4.0 and (data == b"" or data.startswith(b"HTTP/1.1 408"))


def test_a_stalled_body_is_a_408(live: Live) -> None:
    with _connect(live) as sock:
        sock.sendall(
            b"POST /v1/studies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"kernel\""
        )  # fmt: skip
        data, took = _read_all(sock)
    assert data.startswith(b"HTTP/1.1 408") and took < 4.0
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["status"] == 408


def test_keep_alive_still_works(live: Live) -> None:
    with _connect(live) as sock:
        for _ in range(3):
            sock.sendall(b"GET /v1/kernels HTTP/1.1\r\nHost: x\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(65536)
            assert head.startswith(b"HTTP/1.1 200")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = head.split(b"\r\n\r\n", 1)[1]
            while len(body) < length:
                body += sock.recv(65536)
            time.sleep(0.3)  # less than the header deadline between requests is fine


def test_a_large_body_is_413_and_not_read(sample: SampleData) -> None:
    client = TestClient(create_app(sample.url, token=TOKEN, http_limits=LIMITS))
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    big = b'{"kernel": "' + b"x" * 5_000_000 + b'"}'
    response = client.post("/v1/studies", content=big, headers=auth)
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
    assert len(response.content) < 1000
    assert response.headers["connection"] == "close"


def test_a_422_never_echoes_the_input(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {"kernel": "attention", "shape": "tiny", "budget": "A" * 10_000}
    response = client.post("/v1/studies", json=body, headers=auth)
    assert response.status_code == 422
    assert "AAAA" not in response.text and len(response.content) < 2000
    assert response.json()["errors"][0]["loc"] == ["body", "budget"]


def test_security_headers_on_pages_and_api(client: TestClient) -> None:
    for path in ("/", "/v1/kernels", "/v1/studies/999999", "/static/plot.js"):
        headers = client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        assert "default-src 'none'" in headers["content-security-policy"], path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
