"""Replay: an Evaluator that answers trial requests from a recorded landscape.

`evotune search --replay FILE` runs the real runner (storage, lineage, stopping) against a
landscape instead of a GPU, and `evotune compare` runs that same search for each strategy
and seed (evotune/compare.py), so strategies can be exercised and compared on the CPU.
Given a simulated pool (evotune/pool_model.py), results come on its clock, in the order and
at the times such a pool of GPUs would deliver them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from evotune.errors import UserError
from evotune.landscape import Landscape
from evotune.pool_model import PoolModel, SimulatedPool
from evotune.records import TrialRequest, TrialResult, TrialStatus
from evotune.worker.evaluator import BatchSubmission

__all__ = ["NOT_IN_LANDSCAPE", "ReplayEvaluator"]

NOT_IN_LANDSCAPE = "not in landscape"


class ReplayEvaluator(BatchSubmission):
    """Implements `evotune.worker.evaluator.Evaluator` by lookup: no process, no GPU.

    A config the landscape lacks is `invalid` with the reason "not in landscape"; a request
    for another kernel or shape is a user error (the landscape cannot answer it at all).

    Without a `pool`, every result is ready at once, in the order submitted (`now` stays 0).
    With one, `collect` hands back one result at a time, the next the simulated pool
    finishes, and `now` is its clock: a config's compile takes the landscape's recorded
    `compile_s` where there is one, else the model's. `evaluate` and `shootout` answer off
    the clock (reruns of a resumed study; the shoot-out of a replay is its record).
    """

    def __init__(self, landscape: Landscape, pool: PoolModel | None = None) -> None:
        super().__init__()
        self.landscape = landscape
        if pool is not None:  # it works as that pool would (else one request at a time)
            self.workers, self.capacity = pool.gpus, pool.capacity
        self.lookups = 0
        self.misses = 0
        self._clock = SimulatedPool(pool) if pool is not None else None
        self._on_clock = 0  # submitted to the simulated pool, not yet collected

    @property
    def now(self) -> float:
        """Simulated seconds since the first submission (0 without a pool)."""
        return self._clock.now if self._clock is not None else 0.0

    def environment(self) -> dict[str, Any]:
        env = dict(self.landscape.environment)
        env["replay"] = True
        env.setdefault("interpreted", False)
        return env

    def submit(self, requests: Sequence[TrialRequest]) -> None:
        if self._clock is None:
            super().submit(requests)
            return
        model = self._clock.model
        jobs = []
        for request in requests:
            result = self._answer(request)
            compile_s = model.compile_seconds(request.config, result.status, result.compile_s)
            jobs.append((result, compile_s, model.gpu_seconds(result.status)))
        self._clock.submit(jobs)
        self._on_clock += len(jobs)

    def collect(self) -> list[TrialResult]:
        if self._clock is None:
            return super().collect()
        if not self._on_clock:
            return []
        self._on_clock -= 1
        result: TrialResult = self._clock.next_result()
        return [result]

    def evaluate(self, requests: Sequence[TrialRequest]) -> Iterator[TrialResult]:
        for request in requests:
            yield self._answer(request)

    def shootout(self, requests: Sequence[TrialRequest], rounds: int) -> list[TrialResult]:
        # A landscape holds one measurement per config: the re-measurement is the record.
        return [self._answer(r) for r in requests]

    def close(self) -> None:
        return None

    def _answer(self, request: TrialRequest) -> TrialResult:
        self._check(request)
        self.lookups += 1
        trial = self.landscape.lookup(request.config)
        if trial is None:
            self.misses += 1
            return TrialResult(request.trial_id, TrialStatus.INVALID, error=NOT_IN_LANDSCAPE)
        return TrialResult(
            trial_id=request.trial_id,
            status=trial.status,
            p50_us=trial.p50_us,
            p20_us=trial.p20_us,
            p80_us=trial.p80_us,
            n_runs=trial.n_runs,
            samples_us=[],
            max_error=trial.max_error,
            compile_s=trial.compile_s,  # as recorded (None: not recorded)
            error=trial.error,
        )

    def _check(self, request: TrialRequest) -> None:
        if request.kernel != self.landscape.kernel:
            raise UserError(
                f"the landscape is of kernel {self.landscape.kernel!r}, not {request.kernel!r}"
            )
        if _key(request.dims) != _key(self.landscape.shape.dims):
            raise UserError(
                f"the landscape is of shape {self.landscape.shape.label()}, not "
                f"{' '.join(f'{k}={v}' for k, v in request.dims.items())}: replay its own shape"
            )


def _key(dims: dict[str, Any]) -> str:
    return json.dumps(dims, sort_keys=True, separators=(",", ":"))
