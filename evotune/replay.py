"""Replay: an Evaluator that answers trial requests from a recorded landscape.

`evotune search --replay FILE` runs the real runner (storage, lineage, stopping) against a
landscape instead of a GPU, so strategies can be exercised and compared on the CPU.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from evotune.errors import UserError
from evotune.landscape import Landscape
from evotune.records import TrialRequest, TrialResult, TrialStatus
from evotune.worker.evaluator import BatchSubmission

__all__ = ["NOT_IN_LANDSCAPE", "ReplayEvaluator"]

NOT_IN_LANDSCAPE = "not in landscape"


class ReplayEvaluator(BatchSubmission):
    """Implements `evotune.worker.evaluator.Evaluator` by lookup: no process, no GPU.

    A config the landscape lacks is `invalid` with the reason "not in landscape"; a request
    for another kernel or shape is a user error (the landscape cannot answer it at all).
    """

    def __init__(self, landscape: Landscape) -> None:
        super().__init__()
        self.landscape = landscape
        self.lookups = 0
        self.misses = 0

    def environment(self) -> dict[str, Any]:
        env = dict(self.landscape.environment)
        env["replay"] = True
        env.setdefault("interpreted", False)
        return env

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
            compile_s=0.0,
            run_s=0.0,
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
