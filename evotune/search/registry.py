"""Strategy names to classes; the CLI and the runner build strategies only through here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evotune.errors import UserError
from evotune.records import Config, Dims
from evotune.search.base import Strategy
from evotune.search.evolution import EvolutionStrategy
from evotune.search.grid import GridStrategy
from evotune.search.optuna_strategies import CmaEsStrategy, NsgaIIStrategy, TpeStrategy
from evotune.search.random_search import RandomStrategy
from evotune.space import SearchSpace

__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "default_settings", "make_strategy"]

DEFAULT_STRATEGY = EvolutionStrategy.name

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        EvolutionStrategy,
        RandomStrategy,
        GridStrategy,
        TpeStrategy,
        CmaEsStrategy,
        NsgaIIStrategy,
    )
}


def _strategy_class(name: str) -> type[Strategy]:
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name]


def default_settings(name: str) -> dict[str, Any]:
    """Every setting the strategy reads, with its default: what a study stores."""
    return _strategy_class(name).default_settings()


def make_strategy(
    name: str,
    space: SearchSpace,
    dims: Dims,
    seed: int,
    settings: dict[str, Any] | None = None,
    seed_configs: Sequence[Config] = (),
) -> Strategy:
    """Build a strategy by name; unknown names and unknown settings are user errors."""
    cls = _strategy_class(name)
    unknown = sorted(set(settings or {}) - set(cls.default_settings()))
    if unknown:
        known = ", ".join(sorted(cls.default_settings()))
        raise UserError(f"strategy {name!r} has no setting {', '.join(unknown)}; known: {known}")
    return cls(space, dims, seed, settings, seed_configs)
