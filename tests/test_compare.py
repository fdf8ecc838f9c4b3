"""Offline comparison on landscapes: sane numbers, and evolution beats random (synthetic)."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

from evotune.compare import compare_strategies, render_comparison, run_on_landscape
from evotune.errors import UserError
from evotune.landscape import Landscape, fit_to_space, load_landscape, save_landscape
from evotune.landscape_runs import start_configs
from evotune.pool_model import PoolModel
from evotune.records import config_hash
from evotune.search.registry import STRATEGIES
from evotune.space import SearchSpace, load_space
from evotune.storage import MemoryTrialStore, SqlTrialStore, TrialRecord, open_database
from evotune.synthetic_landscapes import synthetic_landscape
from tests.search.toy import toy_landscape, toy_space

ROOT_LANDSCAPES = Path(__file__).resolve().parent / "data" / "landscapes"


@pytest.fixture(scope="module")
def attention() -> SearchSpace:
    return load_space("attention")


@pytest.fixture(scope="module")
def land(attention: SearchSpace) -> Landscape:
    return synthetic_landscape(attention, "llama-d128", seed=0)


def test_run_counts_evaluations_until_the_target() -> None:
    space, landscape = toy_space(), toy_landscape()
    run = run_on_landscape(landscape, space, "grid", 0, target=0.0)
    best = landscape.best
    assert best is not None
    order = [c for c in space.enumerate(landscape.shape.dims)]
    assert run.evals_to_target == order.index(best.config) + 1
    # It stops with the generation (a batch of 32 for grid) in which it reached the target.
    assert run.evals_to_target <= run.evaluations < run.evals_to_target + 32
    assert run.best_curve[-1] == best.p50_us
    assert all(a >= b for a, b in zip(run.best_curve, run.best_curve[1:], strict=False))
    capped = run_on_landscape(landscape, space, "grid", 0, target=0.0, max_evals=5)
    assert capped.evaluations == 5 and capped.evals_to_target is None


def test_report_is_sane_and_evolution_beats_random(attention: SearchSpace, land: Landscape) -> None:
    report = compare_strategies(
        land, attention, ["evolution", "random"], seeds=5, target=0.02, max_evals=400
    )
    assert report.space_size == len(land) and report.best_p50_us == land.best_p50_us
    assert report.within_target == len(land.within(0.02)) >= 1
    for summary in report.summaries:
        assert len(summary.runs) == 5
        assert 1 <= summary.q25_evals <= summary.median_evals <= summary.q75_evals <= 401
        found = [summary.best_at_budget[b] for b in (10, 25, 50, 100)]
        assert all(v is not None and v >= land.best_p50_us for v in found)
        assert all(a >= b for a, b in itertools.pairwise(found))  # type: ignore[operator]
        for run in summary.runs:
            assert run.evaluations >= 100 or run.evaluations == 400
            if run.evals_to_target is not None:
                assert run.best_curve[run.evals_to_target - 1] <= land.best_p50_us * 1.02
    evolution, random = report.summary("evolution"), report.summary("random")
    assert evolution.not_reached < random.not_reached
    assert evolution.median_evals * 1.5 <= random.median_evals
    assert evolution.best_at_budget[100] < random.best_at_budget[100]  # type: ignore[operator]

    data = json.loads(json.dumps(report.to_dict()))
    assert [s["strategy"] for s in data["strategies"]] == ["evolution", "random"]
    assert data["strategies"][0]["median_evals"] == evolution.median_evals
    assert set(data["strategies"][0]["best_at_budget"]) == {"10", "25", "50", "100"}

    table = render_comparison(report)
    assert isinstance(table, Table) and table.row_count == 2
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "evolution" in text and "random" in text and "vs random" in text


def test_unreached_runs_count_as_max_plus_one() -> None:
    space, landscape = toy_space(), toy_landscape()
    report = compare_strategies(
        landscape, space, ["grid"], seeds=2, target=0.0, budgets=(3,), max_evals=3
    )
    summary = report.summary("grid")
    assert summary.median_evals == 4 and summary.not_reached == 1.0
    assert not math.isinf(summary.best_at_budget[3] or math.inf)


def test_bad_arguments_are_user_errors(attention: SearchSpace, land: Landscape) -> None:
    with pytest.raises(UserError, match="unknown strategies"):
        compare_strategies(land, attention, ["evolution", "hillclimb"], seeds=1)
    with pytest.raises(UserError, match="seeds"):
        compare_strategies(land, attention, ["random"], seeds=0)


def test_a_partial_landscape_costs_no_evaluation_for_missing_configs() -> None:
    space, full = toy_space(), toy_landscape()
    # Only impl b and the smallest tiles of impl a were recorded.
    keep = [t for t in full.trials if t.config["impl"] == "b" or t.config["BLOCK"] == 16]
    partial = Landscape(full.kernel, full.shape, full.environment, full.space_size, keep)
    run = run_on_landscape(partial, space, "grid", 0, target=0.0)
    assert run.misses > 0 and run.evals_to_target is not None
    ordered = [c for c in space.enumerate(full.shape.dims) if c in partial]
    assert partial.best is not None
    assert run.evals_to_target == ordered.index(partial.best.config) + 1
    counted = run_on_landscape(partial, space, "grid", 0, target=0.0, count_misses=True)
    assert counted.evals_to_target is not None and counted.evals_to_target >= run.evals_to_target
    report = compare_strategies(partial, space, ["random"], seeds=2, target=0.0, max_evals=50)
    console = Console(width=200, record=True)
    console.print(render_comparison(report))
    assert "not in landscape" in console.export_text()


def test_a_simulated_pool_keeps_a_synchronous_path_and_replays_an_asynchronous_one(
    attention: SearchSpace, land: Landscape
) -> None:
    pool = PoolModel(gpus=2, compilers=16, compile_rules=(("impl == 'gluon'", 3.0),))
    plain = run_on_landscape(land, attention, "evolution", 1, max_evals=300)
    timed = run_on_landscape(land, attention, "evolution", 1, max_evals=300, pool=pool)
    # Synchronous: the same generations are bred; only the order inside one can differ.
    assert plain.evals_to_target is not None and timed.evals_to_target is not None
    assert abs(plain.evals_to_target - timed.evals_to_target) < 12
    assert plain.simulated_s_to_target is None and timed.simulated_s_to_target is not None
    quick = run_on_landscape(
        land, attention, "evolution", 1, max_evals=300, pipeline_depth=0, pool=pool
    )
    assert quick.evals_to_target is not None and quick.simulated_s_to_target is not None
    # Results are told as they arrive, so the path is not the synchronous one.
    assert quick.best_curve[:36] != timed.best_curve[:36]
    assert quick.simulated_s_to_target > 0
    with pytest.raises(UserError, match="needs a pool model"):
        run_on_landscape(land, attention, "evolution", 1, pipeline_depth=0)
    report = compare_strategies(land, attention, ["evolution"], seeds=2, pool=pool)
    assert report.summaries[0].median_simulated_s is not None
    assert report.to_dict()["strategies"][0]["median_simulated_s_to_target"] is not None


def test_compare_on_a_short_studys_landscape_ends_and_shows_progress(tmp_path: Path) -> None:
    """A landscape of six configs of the whole space (what `landscape export` writes after a
    short search): the runs end once the strategy searches where nothing was recorded (or, as
    a search would, once its no-improvement rule sees generations of nothing but misses), and
    each run's end is reported as it happens. (It ran for many minutes, silent, before.)"""
    full = load_landscape("tests/data/landscapes/mission-full-h200.json.gz")
    few = Landscape(full.kernel, full.shape, full.environment, full.space_size, full.trials[:6])
    path = save_landscape(few, tmp_path / "short.json")
    result = subprocess.run(
        [sys.executable, "-m", "evotune", "compare", "--landscape", str(path),
         "--strategies", "evolution,random", "--seeds", "2", "--json"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    # (After a note: the file was recorded before the space's newest knobs, at their defaults.)
    progress = [line for line in result.stderr.strip().splitlines() if not line.startswith("note:")]
    assert progress[0] == "compare runs: 0/4" and progress[-1].startswith("compare runs: 4/4 (")
    report = json.loads(result.stdout)
    assert report["recorded"] == 6 and report["space_size"] == full.space_size
    for summary in report["strategies"]:
        assert set(summary["ended"]) <= {"exhausted", "off the landscape", "strategy"}


def test_a_run_ends_when_it_has_told_every_recorded_config() -> None:
    space, full = toy_space(), toy_landscape()
    few = Landscape(full.kernel, full.shape, full.environment, full.space_size, full.trials[:3])
    run = run_on_landscape(few, space, "grid", 0, target=-1.0)  # a target nothing reaches
    assert run.ended == "exhausted" and run.evaluations == 3


def test_start_configs() -> None:
    space, dims = toy_space(), toy_landscape().shape.dims
    assert start_configs("default", space, dims, 0) == [space.default_config()]
    assert start_configs("none", space, dims, 0) == []
    drawn = [start_configs("random", space, dims, seed) for seed in range(8)]
    assert all(len(c) == 1 and not space.violations(c[0], dims) for c in drawn)
    assert drawn[0] == start_configs("random", space, dims, 0)  # one seed, one start
    assert len({config_hash(c[0]) for c in drawn}) > 1
    with pytest.raises(UserError, match="--start must be one of default, random, none"):
        start_configs("best", space, dims, 0)


@pytest.mark.parametrize("start", ["default", "random"])
def test_a_run_first_evaluates_its_start(start: str) -> None:
    space, landscape = toy_space(), toy_landscape()
    run = run_on_landscape(landscape, space, "evolution", 3, max_evals=1, start=start)
    (first,) = start_configs(start, space, landscape.shape.dims, 3)
    trial = landscape.lookup(first)
    assert trial is not None and run.best_curve == [trial.p50_us]


def test_compare_without_a_start() -> None:
    space, landscape = toy_space(), toy_landscape()
    report = compare_strategies(
        landscape, space, ["evolution", "random", "tpe"], seeds=2, max_evals=30, start="none"
    )
    assert all(r.evaluations > 0 for s in report.summaries for r in s.runs)


def test_rows_of_a_strategy_tuned_on_the_landscape_are_marked(tmp_path: Path) -> None:
    """The hold-out protocol: on a landscape of its tuning subset (matched by content, not
    by name), the strategy's row says so; on any other, it does not."""
    tuned = ROOT_LANDSCAPES / "mission-triton.json"
    space = toy_space()
    copy = tmp_path / "tuned.json"
    copy.write_bytes(tuned.read_bytes())  # another name, the same content
    assert load_landscape(copy).content_sha256 == STRATEGIES["evolution"].tuned_on[0].sha256

    def marks(landscape: Landscape) -> list[bool]:
        report = compare_strategies(
            landscape, space, ["evolution", "random"], seeds=1, budgets=(3,), max_evals=3
        )
        data = report.to_dict()["strategies"]
        assert [s["tuned_here"] for s in data] == [s.tuned_here for s in report.summaries]
        console = Console(width=200, record=True)
        console.print(render_comparison(report))
        text = console.export_text()
        assert ("evolution (tuned here)" in text) == report.summaries[0].tuned_here
        return [s.tuned_here for s in report.summaries]

    # The toy landscape under the tuned file's hash stands in for it (a replay on the
    # attention space would depend on that space's file): the mark follows the hash.
    toy = toy_landscape()
    toy.content_sha256 = load_landscape(copy).content_sha256
    assert marks(toy) == [True, False]
    save_landscape(toy_landscape(), tmp_path / "toy.json")
    assert marks(load_landscape(tmp_path / "toy.json")) == [False, False]


@pytest.mark.parametrize("depth", [1, 2])
def test_compare_runs_the_search_that_evotune_search_runs(tmp_path: Path, depth: int) -> None:
    """A compare run of a strategy and seed is `evotune search --replay` of them: the same
    trials in the same order (seeds, pipeline, budget), on a recorded landscape."""
    path = ROOT_LANDSCAPES / "llama-d128-triton.json"
    landscape = fit_to_space(load_landscape(path), load_space("attention"), path)
    assert landscape.restrict is not None
    space = load_space("attention").searched(landscape.restrict, False)  # as `compare` has it
    store = MemoryTrialStore()
    # A target nothing reaches: the run takes its whole cap, 50 trials, as `--budget 50`
    # does (four generations of 12 and a last one of 2).
    run = run_on_landscape(
        landscape, space, "evolution", 3, target=-1.0, max_evals=50, pipeline_depth=depth,
        store=store,
    )  # fmt: skip
    assert (run.ended, run.evaluations, run.misses) == ("max_evals", 50, 0)

    db = f"sqlite:///{tmp_path / 'search.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "evotune", "search", "--db", db, "--shape", "llama-d128",
         "--replay", str(path), "--restrict", landscape.restrict, "--strategy", "evolution",
         "--seed", "3", "--budget", "50", "--pipeline-depth", str(depth), "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    searched = SqlTrialStore(open_database(db)).trials(json.loads(result.stdout)["study_id"])

    def path_of(trials: list[TrialRecord]) -> list[tuple[object, ...]]:
        return [(t.number, t.config_hash, t.status, t.generation, t.operator) for t in trials]

    compared = store.trials(1)  # the one study of the run's new store
    assert len(compared) == 50 and len({t.generation for t in compared}) == 5
    assert path_of(compared) == path_of(searched)
