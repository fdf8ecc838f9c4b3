"""The evaluator protocol: what the runner needs from whatever measures candidates.

Implementations: the GPU/interpreter worker pool (`evotune.worker.pool`) and the replay of
a recorded landscape (`evotune.replay`). The runner stores every request as `running`
before it calls `evaluate`, so a death is always pinned on the right trial.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from evotune.records import TrialRequest, TrialResult

__all__ = ["Evaluator"]


class Evaluator(Protocol):
    def environment(self) -> dict[str, Any]:
        """The fingerprint of where trials run: gpu, driver, cuda, torch, triton,
        kernel_source_hash, interpreted (bool)."""
        ...

    def evaluate(self, requests: Sequence[TrialRequest]) -> Iterator[TrialResult]:
        """Measure each request; yield results as they finish (any order, one per request)."""
        ...

    def shootout(self, requests: Sequence[TrialRequest], rounds: int) -> list[TrialResult]:
        """Re-measure finalists interleaved (A B C A B C ...) in one process; results in
        request order. Only `ok` finalists are passed in."""
        ...

    def close(self) -> None: ...
