"""Made-up landscapes: the same seed makes the same landscape in any process, another seed
another one, a needle landscape has exactly one config within 2 % of its best, and a branch
landscape has every config within 5 % in one corner of a non-default branch."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evotune.landscape import Landscape
from evotune.records import TrialStatus, config_hash
from evotune.space import load_space
from evotune.synthetic_landscapes import (
    SyntheticSpec,
    synthetic_landscape,
    with_branch_corner,
    with_needle,
)

ROOT = Path(__file__).resolve().parents[1]


def _digest(landscape: Landscape) -> str:
    """Every trial's config, status and p50, in order."""
    rows = [(config_hash(t.config), t.status.value, t.p50_us) for t in landscape.trials]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


@pytest.fixture(scope="module")
def plain() -> Landscape:
    return synthetic_landscape(None, "llama-d128", seed=1)


def test_the_same_seed_makes_the_same_landscape_in_another_process(plain: Landscape) -> None:
    # Another hash seed: nothing may depend on the order of a set or the process's hashing.
    code = (
        "from evotune.synthetic_landscapes import synthetic_landscape\n"
        "from tests.test_synthetic_landscapes import _digest\n"
        "print(_digest(synthetic_landscape(None, 'llama-d128', seed=1)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == _digest(plain)


def test_another_seed_is_another_landscape_of_the_same_configs(plain: Landscape) -> None:
    other = synthetic_landscape(None, "llama-d128", seed=2)
    assert [t.config for t in other.trials] == [t.config for t in plain.trials]
    assert [t.p50_us for t in other.trials] != [t.p50_us for t in plain.trials]
    assert len(plain) == plain.space_size
    # It fails in regions, as recordings do: shared memory, and gluon's registers.
    statuses = {t.status for t in plain.trials}
    assert {TrialStatus.OK, TrialStatus.OUT_OF_RESOURCES, TrialStatus.INVALID} <= statuses


def test_a_needle_is_the_one_config_within_2_percent(plain: Landscape) -> None:
    needled = with_needle(plain, seed=1)
    assert plain.best is not None and plain.best_p50_us is not None and needled.best is not None
    assert len(plain.within(0.02)) > 1 and len(needled.within(0.02)) == 1
    assert needled.best_p50_us == pytest.approx(0.97 * plain.best_p50_us, abs=1e-3)
    changed = [(a, b) for a, b in zip(plain.trials, needled.trials, strict=True) if a != b]
    assert len(changed) == 1
    before, after = changed[0]
    assert after.config == needled.best.config != plain.best.config
    # Drawn from the best 3 % of the working configs, by the seed.
    ranked = sorted(t.p50_us for t in plain.trials if t.ok and t.p50_us)
    assert before.p50_us is not None and before.p50_us <= ranked[int(0.03 * len(ranked))]
    other = with_needle(plain, seed=2)
    assert other.best is not None and other.best.config != needled.best.config


def test_a_spec_builds_its_kind_with_one_seed_for_the_model_and_the_needle(
    plain: Landscape,
) -> None:
    needle = SyntheticSpec("needle", "llama-d128", 1)
    assert needle.name == "needle:llama-d128:1"
    assert _digest(needle.build()) == _digest(with_needle(plain, seed=1))
    assert _digest(SyntheticSpec("plain", "llama-d128", 1).build()) == _digest(plain)
    branch = SyntheticSpec("branch", "llama-d128", 1)
    assert _digest(branch.build()) == _digest(with_branch_corner(plain, seed=1))


def test_a_branch_corner_holds_every_config_within_5_percent(plain: Landscape) -> None:
    cornered = with_branch_corner(plain, seed=1)
    params = load_space("attention").parameters
    corner = cornered.environment["corner"]
    # Another impl than the default's, and two knobs besides, each off its default.
    assert len(corner) == 3 and all(corner[name] != params[name].default for name in corner)

    def inside(config: dict[str, object]) -> bool:
        return all(config.get(name) == value for name, value in corner.items())

    ok = cornered.ok_trials
    assert 0.05 <= sum(inside(t.config) for t in ok) / len(ok) <= 0.25
    within = cornered.within(0.05)
    assert all(inside(t.config) for t in within)
    assert abs(len(within) - 0.03 * len(ok)) <= 2
    assert cornered.best_p50_us is not None
    assert min(t.p50_us or 0.0 for t in ok if not inside(t.config)) >= 1.059 * cornered.best_p50_us
    # Only the corner's latencies change: every config keeps its status, the rest its p50.
    for before, after in zip(plain.trials, cornered.trials, strict=True):
        assert (before.config, before.status) == (after.config, after.status)
        assert before == after or (inside(after.config) and after.ok)
    # The corner is the seed's.
    assert with_branch_corner(plain, seed=2).environment["corner"] != corner
