"""The no-improvement stopping rule: stop once G generations have not improved the best by x.

Budget and time limits belong to the runner; this rule needs the search's own notion of a
generation, so strategies expose it through `Strategy.should_stop()`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["no_improvement"]


def no_improvement(
    generation_best: Mapping[int, float],
    patience_generations: int,
    min_improvement: float,
) -> bool:
    """True when the best-so-far improved by less than `min_improvement` (a fraction) over
    the last `patience_generations` generations; never true when the rule is off (G <= 0)
    or fewer than G + 1 generations have been told.

    `generation_best` maps a generation to the best fitness (lower is better, inf for a
    generation of failures) told in it.
    """
    if patience_generations <= 0 or len(generation_best) <= patience_generations:
        return False
    running: list[float] = []
    best = math.inf
    for generation in sorted(generation_best):
        best = min(best, generation_best[generation])
        running.append(best)
    before, now = running[-1 - patience_generations], running[-1]
    if math.isinf(before):
        # Nothing worked G generations ago: any working config since is an improvement.
        return math.isinf(now)
    return (before - now) / before < min_improvement
