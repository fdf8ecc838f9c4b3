"""The evaluator protocol: what the runner needs from whatever measures candidates.

Implementations: the GPU/interpreter worker pool (`evotune.worker.pool`), the Ray cluster
(`evotune.worker.ray_pool`) and the replay of a recorded landscape (`evotune.replay`). The
runner stores every request as `running` before it submits it, so a death is always pinned
on the right trial.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from evotune.records import TrialRequest, TrialResult

__all__ = ["BatchSubmission", "Evaluator"]


class Evaluator(Protocol):
    def environment(self) -> dict[str, Any]:
        """The fingerprint of where trials run: gpu, driver, cuda, torch, triton,
        kernel_source_hash, interpreted (bool)."""
        ...

    @property
    def workers(self) -> int:
        """Trials measured at once; above 1 the search runs asynchronously by default."""
        ...

    @property
    def capacity(self) -> int:
        """Requests it can work on at once: how many an asynchronous search keeps in flight
        (at least a generation)."""
        ...

    def warm_up(self, request: TrialRequest) -> None:
        """Put `request` through every process of the evaluator and drop the results, so
        first-use costs are paid before the search starts. Only while nothing is outstanding."""
        ...

    def submit(self, requests: Sequence[TrialRequest]) -> None:
        """Queue requests behind those already submitted; they are measured in turn."""
        ...

    def collect(self) -> list[TrialResult]:
        """Wait until at least one submitted request has finished; return every result
        ready (any order, one per request). Empty when nothing is outstanding."""
        ...

    def evaluate(self, requests: Sequence[TrialRequest]) -> Iterator[TrialResult]:
        """Measure each request; yield results as they finish (any order, one per request).
        Only while nothing submitted is outstanding."""
        ...

    def shootout(self, requests: Sequence[TrialRequest], rounds: int) -> list[TrialResult]:
        """Re-measure finalists interleaved (A B C A B C ...) in one process; results in
        request order. Only `ok` finalists are passed in."""
        ...

    def close(self) -> None: ...


class BatchSubmission(abc.ABC):
    """`submit` / `collect` for an evaluator that measures whole batches with `evaluate`:
    `collect` measures everything submitted since the last call. Subclasses call
    `super().__init__()`.

    It works in the calling process, one request at a time, with nothing to warm up."""

    workers: int = 1
    capacity: int = 1

    def __init__(self) -> None:
        self._submitted: list[TrialRequest] = []

    def submit(self, requests: Sequence[TrialRequest]) -> None:
        self._submitted.extend(requests)

    def collect(self) -> list[TrialResult]:
        batch, self._submitted = self._submitted, []
        return list(self.evaluate(batch)) if batch else []

    def warm_up(self, request: TrialRequest) -> None:
        return None

    @abc.abstractmethod
    def evaluate(self, requests: Sequence[TrialRequest]) -> Iterator[TrialResult]:
        """What the subclass measures a batch with."""
