"""Uniform random sampling of valid configs: the baseline every strategy must beat."""

from __future__ import annotations

import random

from evotune.records import Config
from evotune.search.grid import OrderedWalk

__all__ = ["RandomStrategy"]


class RandomStrategy(OrderedWalk):
    """Valid configs uniformly without replacement: a seeded shuffle of the space.

    Seed configs are ignored on purpose: this is the uninformed baseline.
    """

    name = "random"
    operator = "random"

    def order(self, configs: list[Config]) -> list[Config]:
        random.Random(self.seed).shuffle(configs)
        return configs
