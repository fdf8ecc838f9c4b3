"""Exhaustive grid search, and the fixed-order walk of the space it shares with random."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from evotune.expressions import evaluate, names_in
from evotune.records import Config, config_hash
from evotune.search.base import Candidate, Strategy
from evotune.space import SearchSpace

__all__ = ["GridStrategy", "OrderedWalk", "SpaceIndex", "space_index", "valid_configs"]

# SearchSpace.enumerate() walks the product of every parameter's values, active or not,
# and checks each combination whole: minutes for a space with conditional branches. The
# walk below branches only on active parameters and checks each constraint as soon as the
# parameters it reads are decided; it yields the same configs. The last few results are
# kept, since several strategies of one process walk the same space.
_CACHE: dict[tuple[int, str], SpaceIndex] = {}
_CACHE_SIZE = 8


class SpaceIndex:
    """The valid configs of one (space, dims), with fast answers to what strategies ask in
    their inner loops: is this config valid, which parameters are active, normalize.

    Same answers as `SearchSpace.violations` (empty or not), `active_names` and `normalize`,
    without evaluating expressions each time: validity is a set lookup, and activity is
    cached on the values of the parameters that `when` conditions read.
    """

    def __init__(self, space: SearchSpace, dims: Mapping[str, Any]) -> None:
        self.space = space
        self.dims = dict(dims)
        self.configs = list(_walk(space, dims))
        self.hashes = {config_hash(c) for c in self.configs}
        # Parameters that `when` conditions read (e.g. `impl`): they pick a branch of the space.
        self.branch_names = sorted(
            {n for p in space.parameters.values() if p.when for n in names_in(p.when)}
            & set(space.parameters)
        )
        self._active: dict[tuple[Any, ...], list[str]] = {}

    def is_valid(self, config: Config) -> bool:
        return config_hash(config) in self.hashes

    def active_names(self, config: Mapping[str, Any]) -> list[str]:
        params = self.space.parameters
        key = tuple(repr(config.get(n, params[n].default)) for n in self.branch_names)
        names = self._active.get(key)
        if names is None:
            names = self.space.active_names(config, self.dims)
            self._active[key] = names
        return names

    def branch(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        """Which conditional branch a config is in (the values of the branch parameters)."""
        params = self.space.parameters
        return tuple(repr(config.get(n, params[n].default)) for n in self.branch_names)

    def normalize(self, config: Mapping[str, Any]) -> Config:
        params = self.space.parameters
        return {n: config.get(n, params[n].default) for n in self.active_names(config)}


def space_index(space: SearchSpace, dims: Mapping[str, Any]) -> SpaceIndex:
    """The (cached) index of a space's valid configs for these dims."""
    key = (id(space), json.dumps(dims, sort_keys=True, default=str))
    hit = _CACHE.get(key)
    if hit is None or hit.space is not space:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        hit = SpaceIndex(space, dims)
        _CACHE[key] = hit
    return hit


def valid_configs(space: SearchSpace, dims: Mapping[str, Any]) -> list[Config]:
    """Every valid config of the space for these dims, each once, in a fixed order: the
    configs of `space.enumerate(dims)`, in its order, much faster (cached; a fresh list of
    shared config dicts, which callers must not mutate)."""
    return list(space_index(space, dims).configs)


def _walk(space: SearchSpace, dims: Mapping[str, Any]) -> Iterator[Config]:
    names = list(space.parameters)
    base = space.namespace(dims)
    # Constraint i can be checked once parameter ready[i] is decided (-1: from the start).
    checks_after: dict[int, list[str]] = {}
    for constraint in space.constraints:
        read = [names.index(n) for n in names_in(constraint.expr) if n in space.parameters]
        checks_after.setdefault(max(read, default=-1), []).append(constraint.expr)

    def holds(exprs: list[str], ns: Mapping[str, Any]) -> bool:
        return all(bool(evaluate(expr, ns)) for expr in exprs)

    def step(
        i: int, config: Config, when_ns: dict[str, Any], rule_ns: dict[str, Any]
    ) -> Iterator[Config]:
        # when_ns: dims and active values (what `when` sees, as in SearchSpace.active_names);
        # rule_ns: dims and every parameter, inactive ones at their default (as in violations).
        if i == len(names):
            yield dict(config)
            return
        name = names[i]
        param = space.parameters[name]
        active = param.when is None or bool(evaluate(param.when, when_ns))
        for value in param.choices() if active else [param.default]:
            rules = {**rule_ns, name: value}
            if not holds(checks_after.get(i, []), rules):
                continue
            if active:
                yield from step(i + 1, {**config, name: value}, {**when_ns, name: value}, rules)
            else:
                yield from step(i + 1, config, when_ns, rules)

    if holds(checks_after.get(-1, []), base):
        yield from step(0, {}, dict(base), dict(base))


class OrderedWalk(Strategy):
    """Proposes the valid configs of the space in one fixed order, each once.

    The order depends only on the space, the dims and the seed, so a resumed study (whose
    history is marked as seen) goes on exactly where the uninterrupted one would.
    """

    name = "ordered-walk"
    operator = "grid"

    def _setup(self) -> None:
        self._order = self.order(valid_configs(self.space, self.dims))
        self._next = 0

    def order(self, configs: list[Config]) -> list[Config]:
        """The walk's order; the grid keeps the space's enumeration order."""
        return configs

    def ask(self, n: int) -> list[Candidate]:
        out: list[Candidate] = []
        generation = self.generation
        while self._next < len(self._order) and len(out) < n:
            config = self._order[self._next]
            self._next += 1
            key = config_hash(config)
            if key not in self.seen:
                self.seen.add(key)
                out.append(Candidate(config, generation=generation, operator=self.operator))
        if out:
            self.begin_generation()
        return out

    @property
    def exhausted(self) -> bool:
        return all(config_hash(c) in self.seen for c in self._order[self._next :])

    @property
    def space_size(self) -> int:
        """How many valid configs the walk covers."""
        return len(self._order)


class GridStrategy(OrderedWalk):
    """Every valid config once, in the space's enumeration order: how landscapes are made."""

    name = "grid"
    operator = "grid"

    @classmethod
    def default_settings(cls) -> dict[str, Any]:
        return {**super().default_settings(), "batch_size": 32}
