"""The no-improvement rule, alone and through Strategy.should_stop()."""

from __future__ import annotations

import math

from evotune.records import TrialStatus
from evotune.search import make_strategy
from evotune.search.base import Observation
from evotune.search.stopping import no_improvement
from evotune.space import SearchSpace
from tests.search.toy import TOY_DIMS


def test_off_when_patience_is_zero_or_history_short() -> None:
    flat = dict.fromkeys(range(10), 5.0)
    assert not no_improvement(flat, patience_generations=0, min_improvement=0.01)
    assert not no_improvement({0: 5.0, 1: 5.0, 2: 5.0}, 3, 0.01)
    assert no_improvement({0: 5.0, 1: 5.0, 2: 5.0, 3: 5.0}, 3, 0.01)


def test_improvement_must_reach_the_threshold_over_the_window() -> None:
    # 10 -> 9.95 over the last 3 generations: 0.5 % < 1 %: stop.
    assert no_improvement({0: 10.0, 1: 9.99, 2: 9.97, 3: 9.95}, 3, 0.01)
    # 10 -> 9.8: 2 % >= 1 %: go on.
    assert not no_improvement({0: 10.0, 1: 9.99, 2: 9.9, 3: 9.8}, 3, 0.01)
    # A worse generation does not undo the best so far.
    assert not no_improvement({0: 10.0, 1: 12.0, 2: 9.0, 3: 15.0}, 3, 0.01)
    # Only the last window counts: a big early gain is old news.
    assert no_improvement({0: 20.0, 1: 10.0, 2: 10.0, 3: 10.0, 4: 10.0}, 3, 0.01)


def test_generations_of_failures() -> None:
    assert no_improvement(dict.fromkeys(range(4), math.inf), 3, 0.01)
    assert not no_improvement({0: math.inf, 1: math.inf, 2: math.inf, 3: 7.0}, 3, 0.01)


def test_strategy_should_stop_after_g_flat_generations(toy: SearchSpace) -> None:
    strategy = make_strategy(
        "random", toy, TOY_DIMS, 0, {"patience_generations": 2, "min_improvement": 0.05}
    )
    values = iter([10.0, 9.0, 8.9, 8.8, 8.0])
    stops = []
    for _ in range(5):
        candidates = strategy.ask(3)
        value = next(values)
        strategy.tell(
            [Observation(c.config, TrialStatus.OK, value, c.generation) for c in candidates]
        )
        stops.append(strategy.should_stop())
    # 9.0 -> 8.8 over generations 1..3 is 2.2 % < 5 %; then 8.0 is 9 % better than 8.8.
    assert stops == [False, False, False, True, False]
    assert not make_strategy("random", toy, TOY_DIMS, 0).should_stop()
