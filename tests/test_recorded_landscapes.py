"""The full-space landscapes shipped in tests/data/landscapes (recorded on a GPU).

They must stay landscapes of the current space file: a change to the space (or to the gluon
kernel's static refusals) fails here until they are re-recorded with
`tests/gpu/record_landscape.sh` (see docs/lab/benchmarks.md). The last test keeps issue 6's
benchmark from regressing; it is deterministic (fixed seeds, no timing).
"""

from __future__ import annotations

import pytest

from evotune.compare import compare_strategies
from evotune.landscape import Landscape, load_landscape
from evotune.plugin import DeviceInfo
from evotune.records import TrialStatus, config_hash
from evotune.search.grid import valid_configs
from evotune.space import load_space
from kernels.attention_gluon import gluon_unsupported

FULL_LANDSCAPES = {
    "mission": "tests/data/landscapes/mission-full-h200.json.gz",
    "llama-d128": "tests/data/landscapes/llama-d128-full-h200.json.gz",
}
HOPPER = DeviceInfo(name="NVIDIA H200", capability=(9, 0), interpreted=False)


def _load(shape: str) -> Landscape:
    return load_landscape(FULL_LANDSCAPES[shape])


@pytest.mark.parametrize("shape", sorted(FULL_LANDSCAPES))
def test_covers_every_valid_config_of_the_current_space_once(shape: str) -> None:
    landscape = _load(shape)
    space = load_space(landscape.kernel)
    assert landscape.shape.dims == space.shape(shape).dims
    expected = {config_hash(c) for c in valid_configs(space, landscape.shape.dims)}
    recorded = [config_hash(t.config) for t in landscape.trials]
    assert len(recorded) == len(set(recorded)), "a config recorded twice"
    assert set(recorded) == expected, "space file changed: re-record this landscape"
    assert landscape.space_size == len(expected)
    assert landscape.environment["gpu"].startswith("NVIDIA H")
    assert landscape.environment["interpreted"] is False


@pytest.mark.parametrize("shape", sorted(FULL_LANDSCAPES))
def test_every_config_the_kernels_accept_ran_correctly(shape: str) -> None:
    """On the GPU every config failed only where the gluon kernel refuses it before compiling:
    nothing crashed, timed out or missed the tolerance (each would be another status), so
    the kernel's static model is not too lax."""
    landscape = _load(shape)
    dims = landscape.shape.dims
    refused = {
        config_hash(t.config)
        for t in landscape.trials
        if t.config["impl"] == "gluon" and gluon_unsupported(t.config, dims, HOPPER)
    }
    invalid = {config_hash(t.config) for t in landscape.trials if not t.ok}
    assert invalid == refused
    assert all(t.status == TrialStatus.INVALID for t in landscape.trials if not t.ok)


def test_evolution_reaches_2_percent_of_the_llama_best_in_under_15_percent_of_the_space() -> None:
    landscape = _load("llama-d128")
    space = load_space(landscape.kernel)
    report = compare_strategies(landscape, space, ["evolution", "random"], seeds=6)
    evolution, random = report.summary("evolution"), report.summary("random")
    assert evolution.not_reached == 0
    assert evolution.median_evals <= 0.15 * landscape.space_size
    assert random.median_evals >= 1.5 * evolution.median_evals
