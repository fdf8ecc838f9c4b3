"""GenerationPipeline: generations asked ahead, told whole and in ask order; and the
asynchronous AsyncPipeline."""

from __future__ import annotations

import random

import pytest

from evotune.landscape import Landscape
from evotune.search import Candidate, Observation, make_strategy
from evotune.search.pipeline import AsyncPipeline, GenerationPipeline
from evotune.space import SearchSpace
from tests.search.toy import TOY_DIMS


class _Recording:
    """Wraps a strategy's tell to record what it was told, generation by generation."""

    def __init__(self, pipeline: GenerationPipeline) -> None:
        self.told: list[list[str]] = []
        tell = pipeline.strategy.tell

        def recording_tell(observations: list[Observation]) -> None:
            self.told.append([o.config_hash for o in observations])
            tell(observations)

        pipeline.strategy.tell = recording_tell  # type: ignore[method-assign]


def _answer(land: Landscape, cand: Candidate) -> Observation:
    trial = land.lookup(cand.config)
    assert trial is not None
    return Observation(
        cand.config, trial.status, trial.p50_us, cand.generation, cand.parents, cand.operator
    )


def _pipeline(toy: SearchSpace, depth: int, seed: int = 3) -> GenerationPipeline:
    strategy = make_strategy("evolution", toy, TOY_DIMS, seed, {"population": 6})
    return GenerationPipeline(strategy, depth=depth)


def test_depth_one_opens_one_generation_at_a_time(toy: SearchSpace, toy_land: Landscape) -> None:
    pipeline = _pipeline(toy, depth=1)
    record = _Recording(pipeline)
    assert pipeline.advance()
    first = pipeline.ask(6)
    assert len(first) == 6 and pipeline.outstanding == 1
    for cand in reversed(first[1:]):  # results in any order
        pipeline.tell(_answer(toy_land, cand))
    assert not pipeline.advance() and record.told == []
    pipeline.tell(_answer(toy_land, first[0]))
    assert pipeline.outstanding == 0 and record.told == []  # told only when the next ask needs it
    assert pipeline.advance()
    assert record.told == [[c.config_hash for c in first]]  # whole, in ask order


def test_each_ask_sees_exactly_the_generations_depth_behind(
    toy: SearchSpace, toy_land: Landscape
) -> None:
    pipeline = _pipeline(toy, depth=2)
    record = _Recording(pipeline)
    assert pipeline.advance()
    g0 = pipeline.ask(6)
    assert pipeline.advance()
    g1 = pipeline.ask(6)
    assert not pipeline.advance() and pipeline.outstanding == 2
    for cand in g1:  # the later generation finishes first
        pipeline.tell(_answer(toy_land, cand))
    assert not pipeline.advance() and record.told == []  # g0 is not complete
    for cand in g0:
        pipeline.tell(_answer(toy_land, cand))
    # g2 is asked from g0 alone, although g1 is complete too.
    assert pipeline.advance() and record.told == [[c.config_hash for c in g0]]
    pipeline.ask(6)
    assert pipeline.advance() and record.told[1] == [c.config_hash for c in g1]
    with pytest.raises(RuntimeError):
        pipeline.ask(6)
        pipeline.ask(6)


def test_skip_leaves_out_measured_configs(toy: SearchSpace) -> None:
    pipeline = _pipeline(toy, depth=1)
    probe = _pipeline(toy, depth=1).ask(6)
    assert pipeline.advance()
    asked = pipeline.ask(6, skip={probe[0].config_hash})
    assert probe[0].config_hash not in {c.config_hash for c in asked}


def _trajectory(toy: SearchSpace, land: Landscape, depth: int, shuffle_seed: int) -> list[str]:
    """Drive the pipeline as the runner does, with results arriving in a shuffled order."""
    pipeline = _pipeline(toy, depth=depth)
    rng = random.Random(shuffle_seed)
    asked: list[str] = []
    in_flight: list[Candidate] = []
    while len(asked) < 48:
        while pipeline.advance():
            new = pipeline.ask(6)
            if not new:
                return asked
            asked += [c.config_hash for c in new]
            in_flight += new
        # Any in-flight trial may finish next, from any open generation.
        cand = in_flight.pop(rng.randrange(len(in_flight)))
        pipeline.tell(_answer(land, cand))
    return asked


def test_the_trajectory_does_not_depend_on_arrival_order(
    toy: SearchSpace, toy_land: Landscape
) -> None:
    for depth in (1, 2):
        # A run stops at the first ask past 48, so lengths may differ; the order never does.
        runs = [_trajectory(toy, toy_land, depth, shuffle_seed=s)[:48] for s in range(4)]
        assert all(run == runs[0] for run in runs[1:])
        assert len(set(runs[0])) == len(runs[0])  # never a config twice
    # Asking ahead changes what is bred from what: the two depths differ.
    assert _trajectory(toy, toy_land, 1, 0) != _trajectory(toy, toy_land, 2, 0)


def test_async_pipeline_tells_at_once_and_keeps_a_generation_in_flight(
    toy: SearchSpace, toy_land: Landscape
) -> None:
    strategy = make_strategy("evolution", toy, TOY_DIMS, 3, {"population": 6})
    pipeline = AsyncPipeline(strategy)
    told: list[str] = []
    tell = strategy.tell

    def recording_tell(observations: list[Observation]) -> None:
        told.extend(o.config_hash for o in observations)
        tell(observations)

    strategy.tell = recording_tell  # type: ignore[method-assign]
    assert pipeline.advance()
    first = pipeline.ask(6)
    assert pipeline.outstanding == 6 and not pipeline.advance()
    pipeline.tell(_answer(toy_land, first[3]))
    assert told == [first[3].config_hash]  # no waiting for the rest of its generation
    assert pipeline.advance()  # fewer than a generation in flight: ask the next
    second = pipeline.ask(6)
    assert pipeline.outstanding == 11
    assert not {c.config_hash for c in second} & {c.config_hash for c in first}


def test_async_window_keeps_what_the_evaluator_can_work_on_in_flight(
    toy: SearchSpace, toy_land: Landscape
) -> None:
    strategy = make_strategy("evolution", toy, TOY_DIMS, 3, {"population": 6})
    assert AsyncPipeline(strategy, window=2).window == 6  # never less than a generation
    pipeline = AsyncPipeline(strategy, window=10)
    first = pipeline.ask(6)
    assert pipeline.advance()  # 6 in flight, room for 10
    second = pipeline.ask(6)
    assert pipeline.outstanding == 12 and not pipeline.advance()
    pipeline.tell(_answer(toy_land, first[0]))
    pipeline.tell(_answer(toy_land, second[0]))
    assert pipeline.outstanding == 10 and not pipeline.advance()
    pipeline.tell(_answer(toy_land, first[1]))
    assert pipeline.advance()
