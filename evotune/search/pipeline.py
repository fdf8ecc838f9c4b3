"""Generations asked ahead of the results, told in the order they were asked.

A generation-synchronous search leaves the GPUs idle while the next generation is asked and
compiled. With `depth` 2 the next generation is already queued (and compiling) while the
current one runs. The strategy still sees a history that does not depend on timing: results
are told whole generations at a time, in ask order, and generation g + depth is asked right
after generation g has been told, before anything newer is. So on one GPU or many, the same
measurements give the same trajectory; the price is that each generation is bred from older
results.

Measured (docs/lab/benchmarks.md, issue 8): depth 2 raised a mission search's throughput on an
H200 by 13-19 %, but the evolution then needed ~50 % more evaluations to reach the same
target on the recorded landscapes, so the default is depth 1, the plain synchronous loop.
`AsyncPipeline` (depth 0 on the command line) gives up repeatability for throughput.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from evotune.search.base import Candidate, Observation, Strategy

__all__ = ["AsyncPipeline", "GenerationPipeline"]


class _Open:
    """One asked generation: its candidates in ask order, and what came back so far."""

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self.order = [c.config_hash for c in candidates]
        self.results: dict[str, Observation] = {}

    @property
    def complete(self) -> bool:
        return len(self.results) == len(self.order)

    def observations(self) -> list[Observation]:
        return [self.results[h] for h in self.order]


class GenerationPipeline:
    """Keeps up to `depth` generations of `strategy` untold; see the module docstring.

    Drive it as: `advance()` before each ask (it tells the strategy the generation that ask
    must see, once complete), `ask()` while it returns True, `tell()` each result as it comes.
    """

    def __init__(self, strategy: Strategy, depth: int = 1) -> None:
        self.strategy = strategy
        self.depth = max(1, depth)
        self._untold: deque[_Open] = deque()
        self._owner: dict[str, _Open] = {}

    @property
    def outstanding(self) -> int:
        """Asked generations still waiting for results."""
        return sum(1 for generation in self._untold if not generation.complete)

    def advance(self) -> bool:
        """True when the next generation may be asked: fewer than `depth` are untold, or
        the oldest is complete (it is told to the strategy now, and only it)."""
        if len(self._untold) < self.depth:
            return True
        if not self._untold[0].complete:
            return False
        self.strategy.tell(self._untold.popleft().observations())
        return True

    def ask(self, n: int, skip: Iterable[str] = ()) -> list[Candidate]:
        """The strategy's next generation (at most n), less configs in `skip`. Empty when
        the strategy has nothing new. Call `advance()` first."""
        if len(self._untold) >= self.depth:
            raise RuntimeError("ask() before advance() allowed it")
        skipped = set(skip)
        candidates = [c for c in self.strategy.ask(n) if c.config_hash not in skipped]
        if candidates:
            generation = _Open(candidates)
            self._untold.append(generation)
            for cand in candidates:
                self._owner[cand.config_hash] = generation
        return candidates

    def tell(self, observation: Observation) -> None:
        """Record one result; the strategy hears of it when `advance()` tells its generation."""
        generation = self._owner.pop(observation.config_hash)
        generation.results[observation.config_hash] = observation


class AsyncPipeline:
    """Asynchronous alternative to GenerationPipeline, same interface: every result is told
    the moment it arrives, and a new generation is asked whenever fewer than `window`
    trials are in flight (at least one generation's worth; the runner passes what the
    evaluator can work on at once, so that no compile process or GPU waits for work). The
    GPUs and compilers never wait for a straggler, but what is bred depends on which
    results came first: runs are not repeatable, and one GPU and two GPUs take different
    paths."""

    def __init__(self, strategy: Strategy, window: int = 0) -> None:
        self.strategy = strategy
        self.window = max(window, strategy.generation_size)
        self._in_flight: set[str] = set()

    @property
    def outstanding(self) -> int:
        return len(self._in_flight)

    def advance(self) -> bool:
        return len(self._in_flight) < self.window

    def ask(self, n: int, skip: Iterable[str] = ()) -> list[Candidate]:
        skipped = set(skip)
        candidates = [c for c in self.strategy.ask(n) if c.config_hash not in skipped]
        self._in_flight.update(c.config_hash for c in candidates)
        return candidates

    def tell(self, observation: Observation) -> None:
        self._in_flight.discard(observation.config_hash)
        self.strategy.tell([observation])
