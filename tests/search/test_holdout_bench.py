"""The hold-out bench's own parts: strategy specs, per-strategy plans, and its table's
peers (Kernel Tuner's strategies count as peers, beside TPE and CMA-ES)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.search.holdout_bench import (
    _split_specs,
    bench,
    is_peer,
    parse_strategy,
    replay_target,
    run_plan,
    table,
)

MISSION = Path("tests/data/landscapes/mission-triton.json")


def test_a_spec_carries_settings_and_its_own_cap_and_seeds() -> None:
    specs = _split_specs("evolution[parzen_weight=2.0,parzen_bandwidth=0.3],tpe@300/10,random")
    assert specs == ["evolution[parzen_weight=2.0,parzen_bandwidth=0.3]", "tpe@300/10", "random"]
    assert parse_strategy(specs[0]) == (
        "evolution",
        {"parzen_weight": 2.0, "parzen_bandwidth": 0.3},
    )
    assert parse_strategy("tpe@300/10") == ("tpe", {})
    assert run_plan("tpe@300/10", None, 20) == (300, 10)
    assert run_plan("tpe@300", 150, 20) == (300, 20)
    assert run_plan("random", 150, 20) == (150, 20)


def test_kernel_tuners_strategies_run_and_are_the_peers_of_the_table() -> None:
    names = ("tpe", "cmaes", "kt:diff_evo", "random", "evolution")
    assert [name for name in names if is_peer(name)] == ["tpe", "cmaes", "kt:diff_evo"]
    pytest.importorskip("kernel_tuner")
    rows = bench(MISSION, ["random", "kt:random_sample@60/3"], 2, 50, "random", [0.02])
    by_strategy = {row.strategy: row for row in rows}
    assert len(by_strategy["random"].evals) == 2
    assert (
        by_strategy["kt:random_sample@60/3"].cap,
        len(by_strategy["kt:random_sample@60/3"].evals),
    ) == (60, 3)
    assert all(e is None or 1 <= e <= 60 for e in by_strategy["kt:random_sample@60/3"].evals)
    random_line = next(line for line in table(rows).splitlines() if "| random |" in line)
    # The last column compares random with the best peer, here Kernel Tuner's random sampling.
    assert not random_line.endswith("| - |")


def test_made_up_landscapes_are_named_on_the_command_line() -> None:
    """`needle:SHAPE:SEED` is `synthetic:SHAPE:SEED` with one config alone within 2 %."""
    plain, space = replay_target(Path("synthetic:mission:3"))
    needled, _ = replay_target(Path("needle:mission:3"))
    assert space.kernel == plain.kernel == "attention" and len(plain) == len(needled)
    assert plain.best_p50_us is not None and needled.best_p50_us is not None
    assert needled.best_p50_us == pytest.approx(0.97 * plain.best_p50_us, abs=1e-3)
    assert len(needled.within(0.02)) == 1 < len(plain.within(0.02))
