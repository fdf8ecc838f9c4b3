"""Every strategy behind the ask/tell protocol: no repeats, valid configs, exact resume."""

from __future__ import annotations

import importlib.util
import random
from typing import Any

import pytest

from evotune.errors import UserError
from evotune.landscape import Landscape
from evotune.records import TrialStatus
from evotune.search import STRATEGIES, make_strategy
from evotune.search.base import Candidate, Observation, Strategy
from evotune.search.evolution import EvolutionStrategy
from evotune.search.grid import space_index, valid_configs
from evotune.search.registry import DEFAULT_STRATEGY, default_settings
from evotune.space import SearchSpace
from tests.search.toy import TOY_DIMS, toy_objective

HAS_CMAES = importlib.util.find_spec("cmaes") is not None
ALL = [
    pytest.param(name, marks=pytest.mark.skipif(not HAS_CMAES, reason="needs cmaes"))
    if name == "cmaes"
    else name
    for name in sorted(STRATEGIES)
]


def observe(landscape: Landscape, candidates: list[Candidate]) -> list[Observation]:
    out = []
    for c in candidates:
        trial = landscape.lookup(c.config)
        status = trial.status if trial else TrialStatus.INVALID
        p50 = trial.p50_us if trial else None
        out.append(Observation(c.config, status, p50, c.generation, c.parents, c.operator))
    return out


def drive(strategy: Strategy, landscape: Landscape, generations: int) -> list[Observation]:
    history: list[Observation] = []
    for _ in range(generations):
        candidates = strategy.ask(strategy.generation_size)
        if not candidates:
            break
        observations = observe(landscape, candidates)
        strategy.tell(observations)
        history += observations
    return history


def test_registry_knows_every_strategy_and_its_settings() -> None:
    assert set(STRATEGIES) == {"evolution", "random", "grid", "tpe", "cmaes", "nsga2"}
    assert DEFAULT_STRATEGY == "evolution"
    for name in STRATEGIES:
        settings = default_settings(name)
        assert {"batch_size", "patience_generations", "min_improvement"} <= set(settings)
    assert default_settings("evolution")["population"] >= 8


def test_make_strategy_rejects_unknown_names_and_settings(toy: SearchSpace) -> None:
    with pytest.raises(UserError, match="unknown strategy"):
        make_strategy("annealing", toy, TOY_DIMS, 0)
    with pytest.raises(UserError, match="no setting popsize"):
        make_strategy("evolution", toy, TOY_DIMS, 0, {"popsize": 3})
    strategy = make_strategy("evolution", toy, TOY_DIMS, 0, {"population": 6})
    assert strategy.settings["population"] == 6
    assert strategy.settings["elites"] == default_settings("evolution")["elites"]


@pytest.mark.parametrize("name", ALL)
def test_strategy_exhausts_the_space_without_repeating(
    name: str, toy: SearchSpace, toy_land: Landscape
) -> None:
    # The S=32 shape: constraints cut the toy space to 56 configs.
    dims = {"S": 32}
    strategy = make_strategy(name, toy, dims, seed=3, settings={"batch_size": 7})
    seen: set[str] = set()
    for _ in range(100):
        candidates = strategy.ask(7)
        if not candidates:
            break
        for c in candidates:
            assert not toy.violations(c.config, dims), c.config
            assert toy.normalize(c.config) == c.config
            assert c.config_hash not in seen, f"{name} repeated {c.config}"
            seen.add(c.config_hash)
        strategy.tell([Observation(c.config, *toy_objective(c.config)) for c in candidates])
    assert len(seen) == len(valid_configs(toy, dims)) == 56
    assert strategy.ask(5) == []
    assert strategy.exhausted


@pytest.mark.parametrize("name", ALL)
def test_restore_asks_what_the_uninterrupted_run_asks(
    name: str, toy: SearchSpace, toy_land: Landscape
) -> None:
    seeds = [toy.default_config()]
    settings: dict[str, Any] = {"batch_size": 6}
    if name == "evolution":
        settings["population"] = 6
    first = make_strategy(name, toy, TOY_DIMS, 11, settings, seeds)
    history = drive(first, toy_land, generations=4)
    assert len(history) == 24
    resumed = make_strategy(name, toy, TOY_DIMS, 11, settings, seeds)
    resumed.restore(history)
    expected, got = first.ask(6), resumed.ask(6)
    assert [(c.config, c.generation, c.parents, c.operator) for c in got] == [
        (c.config, c.generation, c.parents, c.operator) for c in expected
    ]
    assert expected and expected[0].generation == 4


def test_evolution_restore_ignores_the_order_results_arrived_in(
    attention: SearchSpace, mission_land: Landscape
) -> None:
    dims = mission_land.shape.dims
    first = make_strategy("evolution", attention, dims, 5, None, [attention.default_config()])
    history = drive(first, mission_land, generations=5)
    shuffled = list(history)
    random.Random(0).shuffle(shuffled)
    resumed = make_strategy("evolution", attention, dims, 5, None, [attention.default_config()])
    resumed.restore(shuffled)
    expected, got = first.ask(20), resumed.ask(20)
    assert isinstance(first, EvolutionStrategy) and isinstance(resumed, EvolutionStrategy)
    assert resumed.population == first.population
    assert resumed.strength == first.strength
    assert [c.config for c in got] == [c.config for c in expected]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shape", ["llama3-8b-prefill", "chunked-prefill", "decode"])
def test_no_strategy_proposes_gluon_where_the_shape_is_not_self_attention(
    name: str, shape: str, attention: SearchSpace
) -> None:
    """The gluon kernel refuses grouped K/V heads and fewer queries than keys: the space's
    constraint keeps every strategy off it there, even started from a gluon config."""
    dims = attention.shape(shape).dims
    assert "Hkv" in dims  # a grouped-query shape
    gluon = attention.normalize({"impl": "gluon", "BLOCK_M": 128, "CONSUMER_WGS": 2})
    assert any("gluon: K/V are indexed like Q" in v for v in attention.violations(gluon, dims))
    seeds = [attention.default_config(), *attention.seed_configs(dims)]
    assert "gluon" not in {c["impl"] for c in seeds}
    settings: dict[str, Any] = {"batch_size": 8}
    strategy = make_strategy(name, attention, dims, 7, settings, [*seeds, gluon])
    rng = random.Random(1)
    asked = 0
    for _ in range(4):
        candidates = strategy.ask(8)
        for c in candidates:
            assert c.config["impl"] != "gluon", c.config
            assert not attention.violations(c.config, dims), c.config
        strategy.tell(
            [Observation(c.config, TrialStatus.OK, rng.uniform(10, 20)) for c in candidates]
        )
        asked += len(candidates)
    assert asked >= 16


def test_grid_walks_the_enumeration_exactly_once(toy: SearchSpace) -> None:
    grid = make_strategy("grid", toy, TOY_DIMS, 0)
    asked = []
    while candidates := grid.ask(9):
        asked += [c.config for c in candidates]
        grid.tell([Observation(c.config, TrialStatus.OK, 1.0) for c in candidates])
    assert asked == list(toy.enumerate(TOY_DIMS))
    assert grid.exhausted


@pytest.mark.parametrize("dims", [TOY_DIMS, {"S": 32}])
def test_space_index_agrees_with_the_space(toy: SearchSpace, dims: dict[str, int]) -> None:
    # The fast walk must give exactly SearchSpace.enumerate(), in its order.
    assert valid_configs(toy, dims) == list(toy.enumerate(dims))
    index = space_index(toy, dims)
    rng = random.Random(1)
    for _ in range(300):
        raw = {n: rng.choice(p.choices()) for n, p in toy.parameters.items() if rng.random() < 0.8}
        assert index.active_names(raw) == toy.active_names(raw, dims)
        normal = index.normalize(raw)
        assert normal == toy.normalize(raw)
        assert index.is_valid(normal) == (not toy.violations(normal, dims))
        assert index.is_valid(raw) == (not toy.violations(raw, dims))


def test_seed_configs_come_first(toy: SearchSpace) -> None:
    seeds = [{"impl": "b", "BLOCK": 16, "flag": True, "ring": 3}, toy.default_config()]
    for name in ("evolution", "tpe"):
        first = make_strategy(name, toy, TOY_DIMS, 0, None, seeds).ask(5)
        assert [c.config for c in first[:2]] == seeds
    evo = make_strategy("evolution", toy, TOY_DIMS, 0, None, seeds).ask(5)
    assert [c.operator for c in evo] == ["seed", "seed", "random", "random", "random"]
