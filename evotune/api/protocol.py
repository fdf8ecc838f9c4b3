"""uvicorn's HTTP protocol with a deadline on request headers (slow-loris clients).

uvicorn closes idle keep-alive connections (`timeout_keep_alive`) but waits forever for the
headers of a request that has begun, or for the first request of a new connection. Here a
connection gets `header_timeout_s` from when it opens, or from the first byte of each further
request, to complete its headers; past that it is answered 408 and closed. (A stalled *body*
is the app's to bound: `middleware.BodyLimit`.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from evotune.api.errors import error_body

try:  # uvicorn[standard] brings httptools; plain uvicorn parses with h11
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]

__all__ = ["HEADER_TIMEOUT_S", "GuardedHTTPProtocol"]

HEADER_TIMEOUT_S = 10.0

_BODY = error_body(408, "the request headers did not arrive in time")
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\nconnection: close\r\n\r\n" + _BODY
)


class GuardedHTTPProtocol(_Base):
    """The protocol uvicorn picks, plus the header deadline (class attribute: one per server)."""

    header_timeout_s: float = HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._timed_cycle: object = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        # A new request begins when no response is pending: its headers are on the clock.
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()
        super().data_received(data)
        if self._header_timer is not None and self.cycle is not self._timed_cycle:
            self._disarm()  # the headers are complete: the app has the request

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._timed_cycle = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()
