"""The tree-Parzen surrogate that screens the evolution's offspring (evotune/search/surrogate.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from evotune.records import Config
from evotune.search.grid import valid_configs
from evotune.search.surrogate import KnobEncoding, ParzenRatio, good_count
from evotune.space import SearchSpace
from tests.search.toy import TOY_DIMS, toy_objective


def test_configs_encode_as_value_indices_with_absent_knobs_as_one_more_slot(
    toy: SearchSpace,
) -> None:
    encoding = KnobEncoding(toy)
    assert encoding.names == ["impl", "BLOCK", "warps", "stages", "flag", "ring"]
    assert encoding.sizes == [2, 4, 3, 4, 2, 2]
    rows = encoding.encode(
        [
            {"impl": "a", "BLOCK": 64, "warps": 8, "stages": 1, "flag": True},
            {"impl": "b", "BLOCK": 16, "flag": False, "ring": 3},
        ]
    )
    assert rows.tolist() == [[0, 2, 2, 0, 1, 2], [1, 0, 3, 4, 0, 1]]


def test_kernels_are_distributions_that_favour_the_centre_and_its_neighbours(
    toy: SearchSpace,
) -> None:
    kernels = KnobEncoding(toy).log_kernels(spread=0.2, bandwidth=1.0)
    for kernel in kernels:
        probabilities = np.exp(kernel)
        assert np.allclose(probabilities.sum(axis=0), 1.0)  # each column: one measured value
        assert (probabilities.argmax(axis=0) == np.arange(len(kernel))).all()
    block = np.exp(kernels[1])  # ordered 16, 32, 64, 128: nearer values weigh more
    assert block[1, 0] > block[2, 0] > block[3, 0]


def test_good_count_is_a_share_of_the_working_configs_within_bounds() -> None:
    assert good_count(1, 0.1, 25) == 1
    assert good_count(40, 0.1, 25) == 4
    assert good_count(1000, 0.1, 25) == 25


def _ratio(toy: SearchSpace, measured: list[Config], fitness: dict[str, float]) -> ParzenRatio:
    encoding = KnobEncoding(toy)
    ranked = sorted(measured, key=lambda c: (fitness[repr(c)], repr(c)))
    n_good = good_count(len(ranked), 0.2, 25)
    return ParzenRatio.fit(
        encoding, encoding.encode(ranked[:n_good]), encoding.encode(ranked[n_good:])
    )


@pytest.mark.parametrize("seed", range(5))
def test_it_ranks_the_good_region_above_the_bad_one_after_a_few_observations(
    toy: SearchSpace, seed: int
) -> None:
    """30 random configs of the toy landscape measured: its unmeasured configs in the bowl
    (impl a, BLOCK 64, stages 3: 10-15 us) score well above those with the smallest tiles
    (impl a, BLOCK 16: 16 us and slower). (Measured when written: by 0.6 to 1.5.)"""
    configs = valid_configs(toy, TOY_DIMS)
    measured = random.Random(seed).sample(configs, 30)
    fitness = {repr(c): toy_objective(c)[1] or float("inf") for c in measured}
    ratio = _ratio(toy, measured, fitness)
    unmeasured = [c for c in configs if repr(c) not in fitness]
    good = [c for c in unmeasured if c["impl"] == "a" and c["BLOCK"] == 64 and c["stages"] == 3]
    bad = [c for c in unmeasured if c["impl"] == "a" and c["BLOCK"] == 16]
    assert good and bad
    encoding = KnobEncoding(toy)
    good_scores, bad_scores = ratio.score(encoding.encode(good)), ratio.score(encoding.encode(bad))
    assert good_scores.mean() > bad_scores.mean() + 0.5


def test_it_sees_a_combination_that_no_single_value_explains(toy: SearchSpace) -> None:
    """Fast only where BLOCK 16 goes with the flag on, or BLOCK 128 with it off: each value
    alone is as good as the other, so only a multivariate model ranks the pairs right."""
    configs = [c for c in valid_configs(toy, TOY_DIMS) if c["impl"] == "b"]

    def slow(config: Config) -> float:
        pair = (config["BLOCK"], config["flag"])
        return 1.0 if pair in ((16, True), (128, False)) else 2.0

    measured = [c for c in configs if c["ring"] == 2]
    fitness = {repr(c): slow(c) for c in measured}
    ratio = _ratio(toy, measured, fitness)
    encoding = KnobEncoding(toy)
    unmeasured = [c for c in configs if c["ring"] == 3]
    scores = ratio.score(encoding.encode(unmeasured))
    fast = [s for c, s in zip(unmeasured, scores, strict=True) if slow(c) == 1.0]
    other = [s for c, s in zip(unmeasured, scores, strict=True) if slow(c) == 2.0]
    assert min(fast) > max(other)


def test_scores_depend_on_what_was_measured_not_on_its_order(toy: SearchSpace) -> None:
    configs = valid_configs(toy, TOY_DIMS)
    measured = random.Random(5).sample(configs, 20)
    fitness = {repr(c): toy_objective(c)[1] or float("inf") for c in measured}
    encoding = KnobEncoding(toy)
    first = _ratio(toy, measured, fitness).score(encoding.encode(configs))
    again = _ratio(toy, list(reversed(measured)), fitness).score(encoding.encode(configs))
    assert np.allclose(first, again, rtol=0, atol=1e-12)
