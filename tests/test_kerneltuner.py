"""Kernel Tuner's strategies on our landscapes: the landscape as its cache file, and its
simulated runs rebuilt into our RunResult (the runs need kernel_tuner, the extra)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evotune import kerneltuner
from evotune.compare import compare_strategies
from evotune.errors import UserError
from evotune.kerneltuner import (
    KERNEL_TUNER_LEFT_OUT,
    KERNEL_TUNER_STRATEGIES,
    KernelTunerCache,
    check_kernel_tuner_strategies,
    landscape_to_cache,
    run_kernel_tuner,
)
from evotune.landscape import Landscape, LandscapeTrial
from evotune.landscape_runs import start_configs
from evotune.records import TrialStatus, config_hash
from evotune.search.grid import valid_configs
from evotune.space import SearchSpace
from tests.search.toy import toy_landscape, toy_space

# A config the toy space rules out (BLOCK * stages > 256), recorded before that constraint.
RULED_OUT = {"impl": "a", "BLOCK": 128, "warps": 4, "stages": 4, "flag": False}


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return toy_space()


@pytest.fixture(scope="module")
def land(space: SearchSpace) -> Landscape:
    """The toy landscape (four configs out of resources) with one config that failed to
    compile and one the space now rules out."""
    full = toy_landscape(space)
    trials = list(full.trials)
    trials[0] = LandscapeTrial(trials[0].config, TrialStatus.COMPILE_ERROR, error="ptxas")
    trials.append(LandscapeTrial(RULED_OUT, TrialStatus.OK, p50_us=99.0))
    return Landscape(full.kernel, full.shape, full.environment, full.space_size, trials)


@pytest.fixture(scope="module")
def cache(land: Landscape, space: SearchSpace) -> KernelTunerCache:
    return landscape_to_cache(land, space)


def _kernel_tuner() -> Any:
    return pytest.importorskip("kernel_tuner")


def test_the_cache_holds_every_recorded_config_by_its_kernel_tuner_key(
    land: Landscape, space: SearchSpace, cache: KernelTunerCache
) -> None:
    # One list of values per knob, in the space's order; impl b's configs hold warps and
    # stages at their defaults (4, 2), impl a's hold ring at 2.
    assert cache.tune_params == {
        "impl": ["a", "b"],
        "BLOCK": [16, 32, 64, 128],
        "warps": [2, 4, 8],
        "stages": [1, 2, 3, 4],
        "flag": [False, True],
        "ring": [2, 3],
    }
    config = {"impl": "b", "BLOCK": 64, "flag": True, "ring": 3}
    assert cache.key(cache.named(config)) == "b,64,4,2,True,3"
    assert len(cache.entries) == len(land.trials)
    for trial in land.trials:
        entry = cache.entries[cache.key(cache.named(trial.config))]
        assert {k: entry[k] for k in trial.config} == trial.config
        if trial.config == RULED_OUT:
            assert entry["__error__"] == "InvalidConfig" and "time" not in entry
        elif trial.ok:
            assert trial.p50_us is not None
            assert entry["time"] * 1000 == pytest.approx(trial.p50_us, rel=1e-12)
            assert "__error__" not in entry
        elif trial.status is TrialStatus.COMPILE_ERROR:
            assert entry["__error__"] == "CompilationFailedConfig"
        else:
            assert trial.status is TrialStatus.OUT_OF_RESOURCES
            assert entry["__error__"] == "RuntimeFailedConfig"
    # Kernel Tuner searches the valid configs, failures included, never the ruled-out one.
    valid = valid_configs(space, land.shape.dims)
    assert sorted(map(config_hash, cache.searchable.values())) == sorted(map(config_hash, valid))
    assert cache.key(cache.named(RULED_OUT)) not in cache.searchable


def test_configs_the_landscape_lacks_are_left_out_unless_misses_count(
    land: Landscape, space: SearchSpace
) -> None:
    kept = [t for t in land.trials if t.config.get("impl") == "b"]
    partial = Landscape(land.kernel, land.shape, land.environment, land.space_size, kept)
    lean = landscape_to_cache(partial, space)
    assert len(lean.searchable) == len(lean.entries) == len(kept)
    assert lean.tune_params["impl"] == ["b"] and lean.tune_params["warps"] == [4]
    counted = landscape_to_cache(partial, space, count_misses=True)
    assert len(counted.searchable) == len(valid_configs(space, land.shape.dims))
    missing = [e for k, e in counted.entries.items() if e.get("impl") == "a"]
    assert missing and all(e["__error__"] == "InvalidConfig" for e in missing)
    nothing = Landscape(land.kernel, land.shape, land.environment, 1, [land.trials[-1]])
    with pytest.raises(UserError, match="none of the configs the landscape records is valid"):
        landscape_to_cache(nothing, space)


def test_the_file_is_kernel_tuners_cache_format(tmp_path: Path, cache: KernelTunerCache) -> None:
    path = cache.write(tmp_path / "cache.json")
    data = json.loads(path.read_text())
    assert data["tune_params_keys"] == list(cache.tune_params)
    assert list(data)[-1] == "cache"  # Kernel Tuner checks how the file ends
    assert path.read_text().rstrip().endswith("}}}")
    kernel_tuner = _kernel_tuner()
    read = kernel_tuner.util.read_cache(str(path), open_cache=False)
    errors = {str(e["__error__"]) for e in read["cache"].values() if "__error__" in e}
    assert errors == {"InvalidConfig", "CompilationFailedConfig", "RuntimeFailedConfig"}
    assert all(
        isinstance(e["__error__"], kernel_tuner.util.ErrorConfig)
        for e in read["cache"].values()
        if "__error__" in e
    )


def test_the_strategy_list_is_the_installed_releases() -> None:
    kernel_tuner = _kernel_tuner()
    from kernel_tuner.interface import strategy_map

    assert sorted([*KERNEL_TUNER_STRATEGIES, *KERNEL_TUNER_LEFT_OUT]) == sorted(strategy_map)
    assert kernel_tuner.__version__.startswith("1.5.")


def test_kernel_tuners_search_space_is_the_searchable_configs(cache: KernelTunerCache) -> None:
    _kernel_tuner()
    from kernel_tuner.searchspace import Searchspace

    built = Searchspace(cache.tune_params, [cache.restriction()], 10**9)
    expected = {tuple(cache.named(c).values()) for c in cache.searchable.values()}
    assert set(built.list) == expected and built.size == len(expected)


def test_a_short_simulated_run_evaluates_only_the_cache(
    land: Landscape, space: SearchSpace, cache: KernelTunerCache
) -> None:
    _kernel_tuner()
    state = random.getstate()
    run = run_kernel_tuner(land, space, "kt:mls", 3, target=-1.0, max_evals=20, cache=cache)
    assert random.getstate() == state  # the global generators are put back
    assert run.evaluations == 20 and run.ended == "max_evals" and run.evals_to_target is None
    assert run.misses == 0
    # It starts from the space's default config (x0), as our strategies do.
    (first,) = start_configs("default", space, land.shape.dims, 3)
    assert run.best_curve[0] == land.lookup(first).p50_us  # type: ignore[union-attr]
    recorded = {t.p50_us for t in land.trials if t.ok}
    assert all(b in recorded for b in run.best_curve)
    assert all(a >= b for a, b in zip(run.best_curve, run.best_curve[1:], strict=False))
    again = run_kernel_tuner(land, space, "kt:mls", 3, target=-1.0, max_evals=20, cache=cache)
    assert again.best_curve == run.best_curve  # a seed repeats its run
    # Simulated annealing's schedule reaches its end temperature at 3/4 of the budget.
    annealed = run_kernel_tuner(
        land, space, "kt:simulated_annealing", 3, target=-1.0, max_evals=20, cache=cache
    )
    assert annealed.evaluations == 15 and annealed.ended == "strategy"


def test_every_failure_costs_an_evaluation_and_a_run_can_exhaust_the_cache(
    land: Landscape, space: SearchSpace, cache: KernelTunerCache
) -> None:
    _kernel_tuner()
    # random_sample draws without repeats: past the size, it evaluates every searchable config.
    run = run_kernel_tuner(land, space, "kt:random_sample", 0, target=-1.0, max_evals=500)
    assert run.evaluations == len(cache.searchable) == 100 and run.ended == "exhausted"
    assert run.best_curve[-1] == land.best_p50_us


def test_a_seed_repeats_a_run_that_samples_a_latin_hypercube(
    land: Landscape, space: SearchSpace, cache: KernelTunerCache
) -> None:
    _kernel_tuner()
    # diff_evo's first population is a Latin hypercube sample (scipy, seeded by the run).
    for seed in (5, 6, 7):
        first, again = (
            run_kernel_tuner(land, space, "kt:diff_evo", seed, target=-1, max_evals=60, cache=cache)
            for _ in range(2)
        )
        assert first.evaluations == 60 and again.best_curve == first.best_curve


def test_a_run_that_evaluates_nothing_new_for_long_ends(
    land: Landscape, space: SearchSpace, cache: KernelTunerCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    _kernel_tuner()
    whole = run_kernel_tuner(land, space, "kt:greedy_ils", 0, target=-1, max_evals=100)
    assert whole.evaluations == 100 and whole.ended == "max_evals"
    # Greedy ILS revisits its neighbours (free in Kernel Tuner): with a short patience it ends.
    monkeypatch.setattr(kerneltuner, "_IDLE_CALLS", 3)
    idle = run_kernel_tuner(land, space, "kt:greedy_ils", 0, target=-1, max_evals=100)
    assert idle.ended == "strategy" and idle.evaluations < 100
    assert idle.best_curve == whole.best_curve[: idle.evaluations]


def test_a_run_stops_at_the_target_as_ours_do(land: Landscape, space: SearchSpace) -> None:
    _kernel_tuner()
    run = run_kernel_tuner(land, space, "kt:genetic_algorithm", 1, target=0.5, min_evals=10)
    assert run.evals_to_target is not None and run.ended == "target"
    assert run.evaluations == max(run.evals_to_target, 10)


def test_with_misses_counted_a_config_the_landscape_lacks_costs_an_evaluation(
    land: Landscape, space: SearchSpace
) -> None:
    _kernel_tuner()
    kept = [t for t in land.trials if t.config.get("impl") == "b" or t.config == RULED_OUT]
    partial = Landscape(land.kernel, land.shape, land.environment, land.space_size, kept)
    run = run_kernel_tuner(partial, space, "kt:random_sample", 0, target=-1, max_evals=500)
    assert run.misses == 0 and run.evaluations == len(kept) - 1
    counted = run_kernel_tuner(
        partial, space, "kt:random_sample", 0, target=-1, max_evals=500, count_misses=True
    )
    assert counted.evaluations == 100 and counted.misses == 100 - (len(kept) - 1)


def test_compare_puts_kernel_tuner_beside_our_strategies(
    land: Landscape, space: SearchSpace
) -> None:
    _kernel_tuner()
    report = compare_strategies(
        land, space, ["random", "kt:pso"], seeds=2, target=0.05, max_evals=60
    )
    assert [s.strategy for s in report.summaries] == ["random", "kt:pso"]
    pso = report.summary("kt:pso")
    assert [r.seed for r in pso.runs] == [0, 1]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["strategies"][1]["evals_to_target"] == [r.evals_to_target for r in pso.runs]


def test_refusals_are_one_line_user_errors(land: Landscape, space: SearchSpace) -> None:
    with pytest.raises(UserError, match="unknown Kernel Tuner strategies kt:bogus; known: "):
        check_kernel_tuner_strategies(["random", "kt:bogus"])
    with pytest.raises(UserError, match="one config after another"):
        compare_strategies(land, space, ["kt:pso"], seeds=1, pipeline_depth=2)
    with pytest.raises(UserError, match=r"known: .*Kernel Tuner's as kt:NAME"):
        compare_strategies(land, space, ["pso"], seeds=1)


def test_without_kernel_tuner_a_kt_strategy_is_one_line_and_exit_2() -> None:
    script = (
        "import sys; sys.modules['kernel_tuner'] = None; sys.argv = ['evotune', 'compare', "
        "'--landscape', 'tests/data/landscapes/mission-triton.json', '--strategies', "
        "'random,kt:pso', '--seeds', '1']; from evotune.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        "error: the kt: strategies need Kernel Tuner: install evotune's kerneltuner extra "
        "(pip install kernel_tuner)"
    )


def test_the_cli_compares_kernel_tuner_strategies() -> None:
    _kernel_tuner()
    result = subprocess.run(
        [sys.executable, "-m", "evotune", "compare", "--landscape",
         "tests/data/landscapes/llama-d128-triton.json", "--strategies",
         "random,kt:simulated_annealing", "--seeds", "2", "--max-evals", "40", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert [s["strategy"] for s in report["strategies"]] == ["random", "kt:simulated_annealing"]
    assert "compare runs: 4/4" in result.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "evotune", "compare", "--help"],
        capture_output=True, text=True, timeout=60, env={"COLUMNS": "400", "PATH": ""},
    ).stdout  # fmt: skip
    assert all(f"kt:{name}" in help_text for name in KERNEL_TUNER_STRATEGIES)
