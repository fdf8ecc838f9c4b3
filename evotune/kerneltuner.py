"""Kernel Tuner's own strategies as peers in `evotune compare`, through its simulation mode.

Kernel Tuner (an optional extra: `pip install 'evotune[kerneltuner]'`) replays a search from
a cache file of measured configs instead of a GPU. `landscape_to_cache` writes a landscape as
such a file; `run_kernel_tuner` runs one of Kernel Tuner's strategies on it (`kt:NAME` in
`evotune compare --strategies`) and rebuilds the configs it evaluated, in order, into the
`RunResult` that the other strategies' runs give, so the table compares against an
independent tuner's implementation rather than a re-implementation.

How the landscape maps onto Kernel Tuner's model:

- Kernel Tuner's parameters form a plain product; a knob of ours that does not apply to a
  config (its `when` is false) sits at its default in Kernel Tuner's tuple, as our
  constraints see it. Each knob lists the values that some searchable config has.
- Kernel Tuner searches exactly the configs that the landscape records and the space allows
  (a restriction: membership in that set). Configs the landscape lacks are outside Kernel
  Tuner's search space, so proposing one costs its strategies no evaluation, as configs the
  landscape lacks cost ours none (`count_misses` puts them in, marked `InvalidConfig`, so
  that they cost one, as it does for ours). In simulation mode Kernel Tuner refuses to run
  a config of its search space that the cache lacks, so none can be.
- The cache holds every recorded config: ok ones with `time` (milliseconds, Kernel Tuner's
  unit), failures with Kernel Tuner's error marker (`__error__`: `CompilationFailedConfig`,
  `RuntimeFailedConfig` or `InvalidConfig`, `_ERROR_MARKERS`), and configs the space now
  rules out as `InvalidConfig`, outside the search space.
- Kernel Tuner counts an evaluation the first time a strategy runs a config from the cache,
  failures included; repeats are free. The rebuilt run does the same: each config once, in
  the order first evaluated, every recorded failure one evaluation, as in our replays.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evotune.errors import UserError
from evotune.landscape_runs import RunResult, default_max_evals, start_configs
from evotune.records import Config, TrialStatus, config_hash

# The rest of evotune (and numpy) is imported where used: `evotune compare --help` reads
# KERNEL_TUNER_STRATEGIES from here, so this module stays light, and evotune.compare, which
# the runner builds on, imports it.
if TYPE_CHECKING:
    from evotune.landscape import Landscape
    from evotune.pool_model import PoolModel
    from evotune.space import SearchSpace

__all__ = [
    "KERNEL_TUNER_LEFT_OUT",
    "KERNEL_TUNER_PREFIX",
    "KERNEL_TUNER_STRATEGIES",
    "KernelTunerCache",
    "check_kernel_tuner_strategies",
    "is_kernel_tuner_strategy",
    "landscape_to_cache",
    "run_kernel_tuner",
]

KERNEL_TUNER_PREFIX = "kt:"

# The strategies of Kernel Tuner 1.5 (`kernel_tuner.interface.strategy_map`) that replay in
# simulation mode on its required dependencies, repeat a run for a seed and end in minutes.
# Left out: brute_force (it takes no budget; `grid` is ours), bayes_opt (its first sample
# draws from unseeded entropy, so a seed does not repeat its run), skopt and
# pyatf_strategies (they need packages Kernel Tuner does not install), nsga2 and nsga3
# (pymoo's multi-objective algorithms: once a population has converged they re-evaluate it,
# free, for about a thousand calls per new config, over 15 minutes a run on the attention
# landscapes; evotune's `nsga2` is Optuna's). Spelled here, not read from the package, so
# that `evotune compare --help` needs no Kernel Tuner; tests/test_kerneltuner.py holds the
# list to the installed release.
KERNEL_TUNER_STRATEGIES = (
    "adaptive_tabu_greywolf",
    "basinhopping",
    "diff_evo",
    "dual_annealing",
    "firefly_algorithm",
    "genetic_algorithm",
    "greedy_ils",
    "greedy_mls",
    "hybrid_vndx",
    "minimize",
    "mls",
    "ordered_greedy_mls",
    "pso",
    "random_sample",
    "simulated_annealing",
)
# What it ships that we leave out, and why (above); the tests hold the two lists together.
KERNEL_TUNER_LEFT_OUT = ("bayes_opt", "brute_force", "nsga2", "nsga3", "pyatf_strategies", "skopt")

# Kernel Tuner's strategies that refuse a start point (`x0`): they start where Kernel Tuner
# starts them, whatever `start` says.
_REFUSE_START = frozenset({"adaptive_tabu_greywolf", "hybrid_vndx", "random_sample"})

# Our failure statuses as Kernel Tuner's error markers: it failed to compile; it compiled
# but failed or misbehaved when run; the plug-in refused it (Kernel Tuner's InvalidConfig is
# a config it could not instantiate).
_ERROR_MARKERS = {
    TrialStatus.COMPILE_ERROR: "CompilationFailedConfig",
    TrialStatus.OUT_OF_RESOURCES: "RuntimeFailedConfig",
    TrialStatus.TIMEOUT: "RuntimeFailedConfig",
    TrialStatus.CRASHED: "RuntimeFailedConfig",
    TrialStatus.CUDA_ERROR: "RuntimeFailedConfig",
    TrialStatus.WRONG_RESULT: "RuntimeFailedConfig",
    TrialStatus.INVALID: "InvalidConfig",
}
# A config the space rules out (recorded before a constraint came), or one the landscape
# lacks: neither can run.
_INVALID = "InvalidConfig"

# What Kernel Tuner checks a simulated run's cache against: a kernel name and problem size
# that the call gives too (the shape is recorded beside them, under "evotune").
_KERNEL_NAME = "evotune_landscape"
_PROBLEM_SIZE = 1


def is_kernel_tuner_strategy(name: str) -> bool:
    """Whether a strategy name is Kernel Tuner's (`kt:NAME`)."""
    return name.startswith(KERNEL_TUNER_PREFIX)


def check_kernel_tuner_strategies(
    names: Sequence[str], pipeline_depth: int = 1, pool: PoolModel | None = None
) -> None:
    """Refuse (UserError) `kt:` names that are unknown, any of them without Kernel Tuner
    installed, or with a replay other than synchronous: Kernel Tuner evaluates one config
    after another (`pipeline_depth` 1, no simulated `pool`)."""
    wanted = [n for n in names if is_kernel_tuner_strategy(n)]
    if not wanted:
        return
    if pipeline_depth != 1 or pool is not None:
        raise UserError(
            "Kernel Tuner's strategies (kt:) replay one config after another: "
            "no --pipeline-depth other than 1, no --sim-gpus"
        )
    unknown = [
        n for n in wanted if n.removeprefix(KERNEL_TUNER_PREFIX) not in KERNEL_TUNER_STRATEGIES
    ]
    if unknown:
        known = ", ".join(KERNEL_TUNER_PREFIX + s for s in KERNEL_TUNER_STRATEGIES)
        raise UserError(f"unknown Kernel Tuner strategies {', '.join(unknown)}; known: {known}")
    _kernel_tuner()


def _kernel_tuner() -> Any:
    """The `kernel_tuner` package, or one UserError line saying how to install it."""
    try:
        import kernel_tuner
    except ImportError:
        raise UserError(
            "the kt: strategies need Kernel Tuner: install evotune's kerneltuner extra "
            "(pip install kernel_tuner)"
        ) from None
    return kernel_tuner


@dataclass(frozen=True)
class KernelTunerCache:
    """A landscape as Kernel Tuner's cache file, and what maps its answers back to configs."""

    tune_params: dict[str, list[Any]]
    # Each knob's default: its value in Kernel Tuner's tuple of a config it does not apply to.
    defaults: dict[str, Any]
    entries: dict[str, dict[str, Any]]  # cache key -> entry (the params, time or __error__)
    searchable: dict[str, Config]  # cache key -> config, for the configs Kernel Tuner searches
    header: dict[str, Any]  # the file's other fields (device, kernel, problem size, shape)

    def named(self, config: Config) -> dict[str, Any]:
        """A config as Kernel Tuner's parameters: every knob, those that do not apply at
        their default."""
        return {name: config.get(name, default) for name, default in self.defaults.items()}

    def key(self, named: Mapping[str, Any]) -> str:
        """Kernel Tuner's cache key of a configuration (every knob by name, as `named` gives
        or Kernel Tuner's results hold)."""
        return ",".join(str(named[name]) for name in self.defaults)

    def to_json(self) -> dict[str, Any]:
        """The file's content; `cache` last, since Kernel Tuner checks how the file ends."""
        return {
            **self.header,
            "tune_params_keys": list(self.tune_params),
            "tune_params": self.tune_params,
            "objective": "time",
            "cache": self.entries,
        }

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json()) + "\n")
        return path

    def restriction(self) -> Any:
        """Kernel Tuner's restriction to the searchable configs, as a python-constraint
        FunctionConstraint that also rules out partial assignments that no searchable config
        extends: Kernel Tuner builds its search space by backtracking, and a check of whole
        tuples alone would walk the product of every knob's values (millions)."""
        from constraint import FunctionConstraint, Unassigned

        # For each knob and value, the searchable configs that have it, as bits of an int.
        masks: list[dict[Any, int]] = [{} for _ in self.defaults]
        for bit, config in enumerate(self.searchable.values()):
            for i, value in enumerate(self.named(config).values()):
                masks[i][value] = masks[i].get(value, 0) | (1 << bit)
        everything = (1 << len(self.searchable)) - 1

        def searchable(*values: Any) -> bool:
            left = everything
            for i, value in enumerate(values):
                if value is not Unassigned:
                    left &= masks[i].get(value, 0)
                    if not left:
                        return False
            return True

        return FunctionConstraint(searchable, assigned=False)


def landscape_to_cache(
    landscape: Landscape, space: SearchSpace, count_misses: bool = False
) -> KernelTunerCache:
    """The landscape as Kernel Tuner's cache, for replays in `space` (the space a comparison
    searches, which the landscape was fitted to: `fit_to_space`). Kernel Tuner searches the
    valid configs that the landscape records; with `count_misses`, every valid config (those
    it lacks marked `InvalidConfig`, so that each costs an evaluation)."""
    from evotune.search.grid import valid_configs

    dims = dict(landscape.shape.dims)
    valid = valid_configs(space, dims)
    searchable = [c for c in valid if count_misses or c in landscape]
    if not searchable:
        raise UserError("none of the configs the landscape records is valid in the space")
    defaults = {name: param.default for name, param in space.parameters.items()}
    # Each knob's values that some searchable config has, in the space's order.
    used: dict[str, set[Any]] = {name: set() for name in defaults}
    for config in searchable:
        for name in defaults:
            used[name].add(config.get(name, defaults[name]))
    tune_params = {
        name: [v for v in space.parameters[name].choices() if v in used[name]] for name in defaults
    }
    cache = KernelTunerCache(
        tune_params=tune_params,
        defaults=defaults,
        entries={},
        searchable={},
        header={
            "device_name": str(landscape.environment.get("gpu") or "unknown GPU"),
            "kernel_name": _KERNEL_NAME,
            "problem_size": _PROBLEM_SIZE,
            "evotune": {"kernel": landscape.kernel, "shape": dims, "restrict": landscape.restrict},
        },
    )
    for config in searchable:
        cache.searchable[cache.key(cache.named(config))] = config
    if len(cache.searchable) < len(searchable):
        raise UserError(
            "two configs of the space have the same Kernel Tuner cache key (values that print "
            "alike): Kernel Tuner cannot tell them apart"
        )
    valid_hashes = {config_hash(c) for c in valid}
    for trial in landscape.trials:
        entry = cache.named(trial.config)
        if config_hash(trial.config) not in valid_hashes:
            entry["__error__"] = _INVALID
        elif trial.ok and trial.p50_us is not None:
            entry["time"] = trial.p50_us / 1000.0  # Kernel Tuner's times are milliseconds
        else:
            entry["__error__"] = _ERROR_MARKERS[trial.status]
        cache.entries.setdefault(cache.key(entry), entry)
    for key, config in cache.searchable.items():
        if key not in cache.entries:  # a config the landscape lacks (count_misses)
            cache.entries[key] = {**cache.named(config), "__error__": _INVALID}
    return cache


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Kernel Tuner's strategies draw from the global `random` and `numpy.random` generators
    (scipy's optimizers too): seeded for the run, and put back after it. Its search space's
    Latin hypercube samples (diff_evo's first population) come from scipy's
    `qmc.LatinHypercube`, which takes fresh OS entropy unless given a generator: given one
    here, drawn from the seeded numpy state, or a seed would not repeat its run."""
    import numpy as np
    from scipy.stats import qmc

    python_state, numpy_state = random.getstate(), np.random.get_state()
    unseeded = qmc.LatinHypercube

    def seeded_latin_hypercube(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("rng") is None and kwargs.get("seed") is None:
            kwargs["rng"] = np.random.default_rng(np.random.randint(2**32, dtype=np.uint64))
        return unseeded(*args, **kwargs)

    random.seed(seed)
    np.random.seed(seed)
    qmc.LatinHypercube = seeded_latin_hypercube
    try:
        yield
    finally:
        qmc.LatinHypercube = unseeded
        random.setstate(python_state)
        np.random.set_state(numpy_state)


# A run ends after this many calls of Kernel Tuner's cost function in a row that evaluate
# nothing new. Repeats are free in Kernel Tuner, and a strategy that has seen every config
# near it can ask them forever (greedy_ils does, on the attention landscapes, until out of
# memory), as ours end after OFF_LANDSCAPE_MISSES unrecorded configs in a row.
_IDLE_CALLS = 10_000


def _ending_when_idle(name: str) -> Any:
    """Kernel Tuner's strategy `name` as a user-defined strategy (an object with `tune`,
    which `tune_kernel` takes) whose budget also runs out after `_IDLE_CALLS` calls of the
    cost function that evaluate nothing new: Kernel Tuner's own stop, raised where it checks
    its budget, so the strategy ends as it does at `max_fevals`."""
    from kernel_tuner.interface import strategy_map
    from kernel_tuner.util import StopCriterionReached, TuningBudget

    class IdleBudget(TuningBudget):  # type: ignore[misc,unused-ignore]  # Any where kernel_tuner is absent
        def __init__(self, budget: Any) -> None:
            super().__init__(budget.time_limit, budget.max_fevals)
            self.idle_calls = 0
            self.evaluated = 0

        def raise_exception_if_done(self) -> None:
            super().raise_exception_if_done()
            # The cost function checks its budget before and after each batch it runs.
            self.idle_calls = 0 if self.num_fevals > self.evaluated else self.idle_calls + 1
            self.evaluated = self.num_fevals
            if self.idle_calls >= 2 * _IDLE_CALLS:
                raise StopCriterionReached(f"{_IDLE_CALLS} calls in a row evaluated nothing new")

    class EndingWhenIdle:
        def tune(self, searchspace: Any, runner: Any, tuning_options: Any) -> Any:
            tuning_options["budget"] = IdleBudget(tuning_options["budget"])
            tuning_options["strategy"] = name  # as tune_kernel was called (some read it)
            return strategy_map[name].tune(searchspace, runner, tuning_options)

    return EndingWhenIdle()


def run_kernel_tuner(
    landscape: Landscape,
    space: SearchSpace,
    strategy: str,
    seed: int,
    target: float = 0.02,
    max_evals: int | None = None,
    min_evals: int = 0,
    settings: Mapping[str, Any] | None = None,
    start: str = "default",
    count_misses: bool = False,
    pipeline_depth: int = 1,
    pool: PoolModel | None = None,
    cache: KernelTunerCache | None = None,
) -> RunResult:
    """Run Kernel Tuner's strategy `kt:NAME` on the landscape in simulation mode, with at most
    `max_evals` evaluations (its `max_fevals`), and rebuild what it evaluated into a
    RunResult as `run_on_landscape` gives: ended once the target is reached and `min_evals`
    made. `settings` are the strategy's options (Kernel Tuner's `strategy_options`); `start`
    gives its start point (`x0`) where the strategy takes one. `cache` saves converting the
    landscape again for each run (`landscape_to_cache` with the same arguments).
    `pipeline_depth` and `pool` are `run_on_landscape`'s, and refused unless synchronous
    (`check_kernel_tuner_strategies`)."""

    check_kernel_tuner_strategies([strategy], pipeline_depth, pool)
    best_p50 = landscape.best_p50_us
    if best_p50 is None:
        raise UserError("the landscape has no ok trial: nothing to compare against")
    threshold = best_p50 * (1.0 + target)
    limit = max_evals if max_evals is not None else default_max_evals(landscape.space_size)
    cache = cache or landscape_to_cache(landscape, space, count_misses)
    name = strategy.removeprefix(KERNEL_TUNER_PREFIX)
    options: dict[str, Any] = {**(settings or {}), "max_fevals": limit}
    first = start_configs(start, space, dict(landscape.shape.dims), seed)
    if first and name not in _REFUSE_START:
        named = cache.named(first[0])
        if cache.key(named) in cache.searchable:
            options["x0"] = list(named.values())
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="evotune-kt-") as tmp, _seeded(seed):
        path = cache.write(Path(tmp) / "cache.json")
        # Some strategies print (progress, restarts) whatever `quiet` says, and stdout is
        # where `compare --json` writes.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            # Kernel Tuner's note that no knob is a CUDA thread-block size: none is, by design.
            warnings.filterwarnings("ignore", "None of the tunable parameters specify thread")
            results, _ = _kernel_tuner().tune_kernel(
                _KERNEL_NAME,
                "",
                _PROBLEM_SIZE,
                [],
                cache.tune_params,
                restrictions=[cache.restriction()],
                cache=str(path),
                simulation_mode=True,
                strategy=_ending_when_idle(name),
                strategy_options=options,
                quiet=True,
            )
    evaluated = _first_evaluations(cache, results)
    curve: list[float] = []
    best = math.inf
    reached: int | None = None
    misses = 0
    for config in evaluated[:limit]:
        trial = landscape.lookup(config)
        if trial is None:
            misses += 1  # a config the landscape lacks (in the search space with count_misses)
        fitness = trial.p50_us if trial is not None and trial.ok and trial.p50_us else math.inf
        best = min(best, fitness)
        curve.append(best)
        if reached is None and best <= threshold:
            reached = len(curve)
        if reached is not None and len(curve) >= min_evals:
            break  # where a replay of ours stops; what came after it changes nothing before
    # Why the run ended, as `run_on_landscape` says it.
    if len(curve) >= limit:
        ended = "max_evals"
    elif reached is not None and len(curve) >= min_evals:
        ended = "target"
    elif len(evaluated) == len(cache.searchable):
        ended = "exhausted"
    else:
        ended = "strategy"  # Kernel Tuner's strategy stopped before its budget
    return RunResult(
        strategy=strategy,
        seed=seed,
        evaluations=len(curve),
        evals_to_target=reached,
        best_curve=curve,
        misses=misses,
        seconds=time.perf_counter() - started,
        ended=ended,
    )


def _first_evaluations(cache: KernelTunerCache, results: Sequence[Any]) -> list[Config]:
    """The configs Kernel Tuner evaluated, each once, in the order first evaluated (its
    results list every run, repeats served from the cache included)."""
    seen: set[str] = set()
    configs: list[Config] = []
    for result in results:
        if not result:
            continue  # a strategy's placeholder for a config its budget left unrun
        key = cache.key(result)
        if key in seen:
            continue
        config = cache.searchable.get(key)
        if config is None:
            raise RuntimeError(f"Kernel Tuner evaluated {key}, which is not in its search space")
        seen.add(key)
        configs.append(config)
    return configs
