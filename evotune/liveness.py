"""Whether the process that last ran a study is still running it.

A search writes `host:pid` into its study (`Study.runner`) and refreshes `updated_at` with
every stored trial. A rerun of the same search resumes a study left `running` only when
that process is gone: on this host, when no process has that pid; elsewhere (a host it cannot
see), when the study has been quiet for `quiet_s` seconds.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone

__all__ = ["runner_alive", "this_runner"]


def this_runner() -> str:
    """`host:pid` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def runner_alive(runner: str | None, last_active: datetime, quiet_s: float) -> bool:
    """Whether `runner` (`host:pid`, or None for a study of an older evotune) may still be
    running a study last active at `last_active`."""
    host, _, pid = (runner or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid():
        return _pid_alive(int(pid))
    # Another host, or this very process (an API server runs searches in threads): only
    # the study's own activity tells.
    if last_active.tzinfo is None:  # SQLite keeps no time zone; evotune writes UTC
        last_active = last_active.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - last_active).total_seconds() < quiet_s
