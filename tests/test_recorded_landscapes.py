"""The full-space landscapes shipped in tests/data/landscapes (recorded on a GPU).

They must stay landscapes of the current space file, replayed as `evotune compare` replays them
(`fit_to_space`): every valid config of the sub-space they record, where the knobs the space
gained since are at their defaults (PINGPONG and P_BUFFERS, issue 24). A new value
of a knob (or a change of the kernel's static refusals) fails here until they are extended or
re-recorded with `tests/gpu/record_landscape.sh` (see docs/lab/benchmarks.md). The last test
keeps issue 6's benchmark from regressing; it is deterministic (fixed seeds, no timing).
"""

from __future__ import annotations

import pytest

from evotune.compare import compare_strategies
from evotune.kernels.attention_gluon import gluon_unsupported
from evotune.landscape import Landscape, fit_to_space, load_landscape
from evotune.plugin import DeviceInfo
from evotune.records import TrialStatus, config_hash
from evotune.search.grid import valid_configs
from evotune.space import load_space

FULL_LANDSCAPES = {
    "mission": "tests/data/landscapes/mission-full-h200.json.gz",
    "llama-d128": "tests/data/landscapes/llama-d128-full-h200.json.gz",
}
HOPPER = DeviceInfo(name="NVIDIA H200", capability=(9, 0), interpreted=False)


def _load(shape: str) -> Landscape:
    path = FULL_LANDSCAPES[shape]
    return fit_to_space(load_landscape(path), load_space("attention"), path)


@pytest.mark.parametrize("shape", sorted(FULL_LANDSCAPES))
def test_covers_every_valid_config_of_the_recorded_sub_space_once(shape: str) -> None:
    """Every valid config of the recorded sub-space; the recorded configs the space rules out
    are those the kernel refuses before compiling (stored invalid): the space has learnt its
    refusals since."""
    landscape = _load(shape)
    space = load_space(landscape.kernel)
    assert landscape.shape.dims == space.shape(shape).dims
    assert landscape.restrict == "PINGPONG == 1 and P_BUFFERS == 1"
    recorded_space = space.restricted(landscape.restrict)
    expected = {config_hash(c) for c in valid_configs(recorded_space, landscape.shape.dims)}
    recorded = [config_hash(t.config) for t in landscape.trials]
    assert len(recorded) == len(set(recorded)), "a config recorded twice"
    assert expected <= set(recorded), "space file changed: extend or re-record this landscape"
    ruled_out = [t for t in landscape.trials if config_hash(t.config) not in expected]
    assert all(t.status == TrialStatus.INVALID for t in ruled_out)
    assert landscape.space_size == len(recorded)  # the space it was recorded in
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
    searched = space.restricted(landscape.restrict)  # as `evotune compare` searches it
    report = compare_strategies(landscape, searched, ["evolution", "random"], seeds=6)
    evolution, random = report.summary("evolution"), report.summary("random")
    assert evolution.not_reached == 0
    assert evolution.median_evals <= 0.15 * landscape.space_size
    assert random.median_evals >= 1.5 * evolution.median_evals
