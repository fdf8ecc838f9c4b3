"""What the service takes on and how long it waits: the defaults hold on a 2-core host.

docs/rest-api.md explains each; docs/results/service.md has the load benchmark behind them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DbLimits", "HttpLimits"]


@dataclass(frozen=True)
class DbLimits:
    """Database work at once, and how long a call may wait or take."""

    slots: int = 4  # calls at once: worker threads and pooled connections
    queue: int = 64  # calls waiting for a slot; one more is answered 503 at once
    wait_s: float = 2.0  # the longest wait for a slot before a 503
    timeout_s: float = 5.0  # the longest one call may take (lock waits included)
    recheck_s: float = 2.0  # how often the schema revision is read again


@dataclass(frozen=True)
class HttpLimits:
    """Bounds against slow or greedy clients."""

    max_body_bytes: int = 64 * 1024  # a POST body larger than this is a 413
    body_timeout_s: float = 10.0  # a body that takes longer is a 408
    header_timeout_s: float = 10.0  # request headers that take longer: 408, closed
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this
    graceful_shutdown_s: float = 3.0  # on SIGTERM, requests in flight get this long
