"""A simulated worker pool: when the results of a search would arrive, without a GPU.

A replay (evotune/replay.py) answers candidates from a recorded landscape at once, so on its
own it can replay only synchronous searches, whose path does not depend on when results
arrive. Given a `PoolModel` it delivers them on a discrete-event model of the pool of
`evotune/worker/pool.py` instead, so any pipeline replays, the asynchronous one included:
compile processes take requests first come, first served; a compiled request waits for the
first free GPU worker; a config the kernel refuses or that does not compile never reaches a
GPU. Compile times are the landscape's where it recorded them, else the model's; GPU times
are the model's. What it answers is the order of arrival and the simulated time a search
takes, to compare pipelines and pool sizes with each other.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evotune.errors import ExpressionError, UserError
from evotune.expressions import evaluate
from evotune.records import TrialStatus

__all__ = ["PoolModel", "SimulatedPool"]


@dataclass(frozen=True)
class PoolModel:
    """Sizes of a pool and how long its steps take (seconds).

    `compile_rules` are (expression over the config, seconds): the first that holds gives a
    config's compile time, else `compile_s` (e.g. `("impl == 'gluon'", 3.0)`), where the
    landscape recorded none.
    """

    gpus: int = 1
    compilers: int = 8
    compile_s: float = 0.65
    compile_rules: tuple[tuple[str, float], ...] = ()
    gpu_s: float = 0.1
    refusal_s: float = 0.01  # a config the kernel refuses is answered by the compile pool

    def __post_init__(self) -> None:
        if self.gpus < 1 or self.compilers < 1:
            raise UserError("a simulated pool needs at least one GPU and one compile process")
        if min(self.compile_s, self.gpu_s, self.refusal_s, *(s for _, s in self.compile_rules)) < 0:
            raise UserError(
                "simulated durations (--sim-*-s, --sim-compile-rule) cannot be negative"
            )

    @property
    def capacity(self) -> int:
        """Requests the pool works on at once (as `WorkerPool.capacity`)."""
        return self.gpus + self.compilers

    def compile_seconds(
        self, config: Mapping[str, Any], status: TrialStatus, recorded: float | None = None
    ) -> float:
        """Seconds in the compile pool: `recorded` (the landscape's compile time of the
        config) where there is one, else the first rule that holds, else `compile_s`."""
        if status is TrialStatus.INVALID:
            return self.refusal_s
        if recorded is not None:
            return recorded
        for expression, seconds in self.compile_rules:
            try:
                holds = evaluate(expression, config)
            except ExpressionError:  # names a parameter this config does not have
                holds = False
            if holds:
                return seconds
        return self.compile_s

    def gpu_seconds(self, status: TrialStatus) -> float:
        """0 for what ends in the compile pool (refused, compile error, out of resources)."""
        ends_before_gpu = (
            TrialStatus.INVALID,
            TrialStatus.COMPILE_ERROR,
            TrialStatus.OUT_OF_RESOURCES,
        )
        return 0.0 if status in ends_before_gpu else self.gpu_s


@dataclass(frozen=True)
class _Job:
    key: Any
    gpu_s: float


class SimulatedPool:
    """The event loop of a `PoolModel`: `submit` jobs at the current time, then `next_result`
    moves the clock to the next finished one."""

    def __init__(self, model: PoolModel) -> None:
        self.model = model
        self.now = 0.0
        self._compilers = [0.0] * model.compilers  # when each is free (a heap)
        self._events: list[tuple[float, int, str, _Job]] = []
        self._ready: deque[_Job] = deque()  # compiled, waiting for a GPU, in compile order
        self._free_gpus = model.gpus
        self._seq = 0

    def submit(self, jobs: Sequence[tuple[Any, float, float]]) -> None:
        """Queue (key, compile seconds, GPU seconds) jobs behind those already queued."""
        for key, compile_s, gpu_s in jobs:
            start = max(self.now, heapq.heappop(self._compilers))
            end = start + compile_s
            heapq.heappush(self._compilers, end)
            self._push(end, "compiled", _Job(key, gpu_s))

    def next_result(self) -> Any:
        """Advance to the next job that finishes (on a GPU, or in the compile pool when it
        needs no GPU) and return its key."""
        while self._events:
            when, _, kind, job = heapq.heappop(self._events)
            self.now = when
            if kind == "done":
                self._free_gpus += 1
                self._start_gpus()
                return job.key
            if job.gpu_s <= 0:
                return job.key
            self._ready.append(job)
            self._start_gpus()
        raise RuntimeError("nothing submitted is outstanding")

    def _start_gpus(self) -> None:
        while self._free_gpus and self._ready:
            job = self._ready.popleft()
            self._free_gpus -= 1
            self._push(self.now + job.gpu_s, "done", job)

    def _push(self, when: float, kind: str, job: _Job) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, kind, job))
