"""Bounded admission to a few worker threads: wait briefly, or be told "busy" at once.

`Gate.run(fn)` runs `fn()` in one of `slots` threads. At most `queue` callers wait for a slot,
each at most `wait_s`; past either, `ServiceUnavailableError("busy")` (a 503 with Retry-After),
so a burst of requests is answered quickly instead of piling up behind the work.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TypeVar

from anyio import CapacityLimiter, fail_after, to_thread

from evotune.errors import ServiceUnavailableError

__all__ = ["Gate"]

T = TypeVar("T")


class _LoopSlots:
    """A gate's slots on one event loop (a test client runs several loops; uvicorn one)."""

    def __init__(self, slots: int) -> None:
        self.free = asyncio.Semaphore(slots)
        self.threads = CapacityLimiter(slots)
        self.waiting = 0


class Gate:
    def __init__(self, slots: int, queue: int, wait_s: float, what: str) -> None:
        self.slots = slots
        self.queue = queue
        self.wait_s = wait_s
        self.what = what  # "database requests", in the busy message
        self.rejected = 0
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSlots] = (
            weakref.WeakKeyDictionary()
        )

    def _slots(self) -> _LoopSlots:
        loop = asyncio.get_running_loop()
        slots = self._loops.get(loop)
        if slots is None:
            slots = self._loops[loop] = _LoopSlots(self.slots)
        return slots

    def _busy(self) -> ServiceUnavailableError:
        self.rejected += 1
        return ServiceUnavailableError(
            f"the service is busy: too many {self.what} at once; retry shortly", code="busy"
        )

    def saturated(self) -> bool:
        """Would a call now be refused at once? (Cheap: for shedding before routing.)"""
        slots = self._loops.get(asyncio.get_running_loop())
        return slots is not None and slots.waiting >= self.queue

    async def run(self, fn: Callable[[], T]) -> T:
        slots = self._slots()
        if slots.waiting >= self.queue:
            raise self._busy()
        slots.waiting += 1
        try:
            # A cancel scope, not asyncio.wait_for: on Python 3.11 wait_for can lose a permit
            # that was granted just as it timed out, and the slots would leak away.
            with fail_after(self.wait_s):
                await slots.free.acquire()
        except TimeoutError:
            raise self._busy() from None
        finally:
            slots.waiting -= 1
        try:
            return await to_thread.run_sync(fn, limiter=slots.threads)
        finally:
            slots.free.release()
