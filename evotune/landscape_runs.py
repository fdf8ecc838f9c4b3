"""What one replay run on a landscape is: its result record, its default cap and the configs
it starts from. Shared by evotune's own replays (evotune/compare.py, through the runner) and
Kernel Tuner's (evotune/kerneltuner.py), so that neither imports the other's loop.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evotune.errors import UserError
from evotune.records import Config
from evotune.search.grid import valid_configs
from evotune.seeds import seed_configs
from evotune.space import SearchSpace, Shape

__all__ = ["STARTS", "RunResult", "check_start", "default_max_evals", "start_configs"]


@dataclass(frozen=True)
class RunResult:
    """One (strategy, seed) run: the best p50 after each evaluation, and when it hit."""

    strategy: str
    seed: int
    evaluations: int
    evals_to_target: int | None  # None: not reached within the run
    best_curve: list[float]  # best ok p50 after evaluation i+1 (inf before any ok)
    misses: int  # configs the landscape lacks (answered invalid)
    seconds: float
    # With a pool model: the simulated pool's clock when the target was reached.
    simulated_s_to_target: float | None = None
    # Why the run ended: "target" (reached, after min_evals), "max_evals", "exhausted" (every
    # config of the landscape told), "off the landscape" (OFF_LANDSCAPE_MISSES misses in a
    # row) or "strategy" (it had nothing new to ask, or its no-improvement rule stopped it).
    ended: str = "max_evals"

    def best_at(self, budget: int) -> float | None:
        if not self.best_curve:
            return None
        value = self.best_curve[min(budget, len(self.best_curve)) - 1]
        return None if math.isinf(value) else value


# What a run starts from (`evotune compare --start`); see `start_configs`.
STARTS = ("default", "random", "none")


def start_configs(
    start: str, space: SearchSpace, dims: Mapping[str, Any], seed: int
) -> list[Config]:
    """The configs a run seeds its strategy with: "default", what `evotune search` seeds a
    shape without tuned neighbours with (the space's default config, then its `seeds:` that
    fit the shape); "random", one valid config drawn by the run's seed (so every strategy
    of a seed starts alike); "none", nothing."""
    check_start(start)
    if start == "default":
        return seed_configs(space, Shape(None, dict(dims)))
    if start == "random":
        configs = valid_configs(space, dims)
        return [dict(random.Random(seed).choice(configs))] if configs else []
    return []


def check_start(start: str) -> None:
    if start not in STARTS:
        raise UserError(f"--start must be one of {', '.join(STARTS)}, not {start!r}")


def default_max_evals(space_size: int) -> int:
    """The default cap of a run: 15 % of the space (the benchmark's bound for evolution),
    at least 100. Slower strategies that do not get there are reported as not reached."""
    return max(100, math.ceil(0.15 * space_size))
