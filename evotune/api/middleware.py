"""Pure ASGI middleware: security headers on every answer, and a bounded request body.

`BodyLimit` reads a request's body before the app sees it: more than `max_bytes` is a 413
(a declared Content-Length over the limit is refused without reading it), a body that does
not arrive within `timeout_s` is a 408; both close the connection. The app then gets the
body from memory, so no route ever waits on a stalled client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from anyio import fail_after
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from evotune.api.errors import error_body

__all__ = ["SECURITY_HEADERS", "BodyLimit", "SecurityHeaders", "ShedWhenBusy"]

# The dashboard loads only its own scripts, styles and images; nothing may frame it.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [h for h in SECURITY_HEADERS if h[0] not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = 64 * 1024, timeout_s: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope["headers"]):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope["headers"])
        if declared is not None and declared > self.max_bytes:
            await _refuse(send, 413, f"the request body is over {self.max_bytes} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        try:
            with fail_after(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        await _refuse(send, 413, f"the request body is over {self.max_bytes} bytes")
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await _refuse(send, 408, f"the request body did not arrive within {self.timeout_s} s")
            return
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(
    send: Send,
    status: int,
    detail: str,
    code: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    close: bool = True,
) -> None:
    body = error_body(status, detail, code)
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    if close:  # the unread rest of a body must not be parsed as the next request
        head.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class ShedWhenBusy:
    """Answer 503 `busy` before routing when the database gate would refuse anyway.

    Under a burst, refusing costs the event loop a few microseconds instead of FastAPI's
    routing and validation, so /healthz and cached answers stay quick.
    """

    def __init__(
        self, app: ASGIApp, saturated: Callable[[], bool], prefixes: tuple[str, ...]
    ) -> None:
        self.app = app
        self.saturated = saturated
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes) and self.saturated():
            await _refuse(
                send,
                503,
                "the service is busy: too many database requests at once; retry shortly",
                code="busy",
                headers=[(b"retry-after", b"1")],
                close=False,
            )
            return
        await self.app(scope, receive, send)
