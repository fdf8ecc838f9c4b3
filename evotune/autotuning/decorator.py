"""`evotune.autotune`: a drop-in for `@triton.autotune` that launches stored winners.

At a launch, the config comes from, in turn: this object's cache (per key values and
device); the best published in the store for exactly this kernel source, device and key
values; else, with `tune=True`, an in-process search on this call's arguments
(evotune/autotuning/tuner.py); else the first config, and the miss is recorded as a pending
study, with the recipe of its call (evotune/autotuning/recipe.py) so that `evotune
tune-pending` can tune it later without this program. What a launch chose stays cached for
the life of the object: a best published by another process later is seen by the next
process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from evotune.autotuning.configs import DTYPES_DIM, TuningSpace, tuning_space
from evotune.autotuning.recipe import record
from evotune.autotuning.store import Target, TuningStore, check_store, open_store
from evotune.errors import UserError
from evotune.fingerprint import device_environment
from evotune.records import Config, Dims
from evotune.source_hash import function_source_hash
from evotune.space import Shape

__all__ = ["Autotuned", "autotune"]

DEFAULT_BUDGET = 32


class Autotuned:
    """A `@triton.jit` kernel that launches with its tuned config: `kernel[grid](*args)`."""

    def __init__(
        self,
        fn: Any,
        configs: Mapping[str, Sequence[Any]] | Sequence[Any],
        key: Sequence[str],
        *,
        store: str | None,
        tune: bool,
        constraints: Sequence[str],
        budget: int,
        seed: int,
        tolerance: tuple[float, float] | None,
        inputs: Callable[[dict[str, Any]], Mapping[str, Any]] | None,
    ) -> None:
        python_fn = getattr(fn, "fn", None)
        if python_fn is None or not hasattr(fn, "arg_names"):
            raise UserError(f"evotune.autotune decorates a @triton.jit kernel, not {fn!r}")
        self.fn = fn
        self.kernel = f"{python_fn.__module__}.{python_fn.__qualname__}"
        self.arg_names: list[str] = list(fn.arg_names)
        self.key = list(key)
        self.tuning: TuningSpace = tuning_space(
            self.kernel, python_fn.__module__, self.arg_names, self.key, configs, constraints
        )
        self.source_hash = function_source_hash(python_fn)
        check_store(store)  # now, not at the first launch
        self.store_url, self.tune, self.budget, self.seed = store, tune, budget, seed
        self.tolerance = tolerance
        if inputs is not None and not callable(inputs):
            raise UserError(f"inputs= takes a function, not {inputs!r}")
        self.inputs = inputs
        self.last_config: Config | None = None
        self._cache: dict[tuple[str, str], Config] = {}
        self._environments: dict[str, dict[str, Any]] = {}
        self._store: TuningStore | None = None

    def __getitem__(self, grid: Any) -> Callable[..., Any]:
        return lambda *args, **kwargs: self.run(*args, grid=grid, **kwargs)

    def run(self, *args: Any, grid: Any, **kwargs: Any) -> Any:
        """Launch with the config for these arguments (looked up, tuned, or the first)."""
        named = self._bind(args, kwargs)
        dims = self._dims(named)
        device = _device_of(named)
        cache_key = (json.dumps(dims, sort_keys=True), device)
        config = self._cache.get(cache_key)
        if config is None:
            config = self._choose(
                Target(self.kernel, Shape(None, dims), self._env(device)), named, grid, args, kwargs
            )
            self._cache[cache_key] = config
        launch = self.tuning.launch_kwargs(config)
        self.last_config = launch
        return self.fn[grid](*args, **kwargs, **launch)

    def _choose(
        self,
        target: Target,
        named: Mapping[str, Any],
        grid: Any,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
    ) -> Config:
        store = self._open()
        dims = target.shape.dims
        best = store.best(target)
        if best is not None and self.tuning.admits(best, dims):
            return best
        first = self.tuning.first_config(dims)
        if not self.tune:
            recipe = record(self.fn, self.tuning, named, dims, grid, self.tolerance, self.inputs)
            store.record_miss(target, self.budget, self.seed, recipe)
            return first
        from evotune.autotuning.tuner import CallArgs, tune

        tensors = {name: v for name, v in named.items() if isinstance(v, torch.Tensor)}
        tuned = tune(
            store,
            target,
            self.tuning,
            CallArgs(tensors),
            lambda launch: self.fn[grid](*args, **kwargs, **launch),
            budget=self.budget,
            seed=self.seed,
            tolerance=self.tolerance,
        )
        return first if tuned.winner is None else dict(tuned.winner.config)

    def _open(self) -> TuningStore:
        if self._store is None:
            self._store = TuningStore(open_store(self.store_url))
        return self._store

    def _bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        if len(args) > len(self.arg_names):
            raise UserError(f"{self.kernel} takes {len(self.arg_names)} arguments, got {len(args)}")
        tuned = sorted(set(kwargs) & self.tuning.knob_names)
        if tuned:
            raise UserError(f"{self.kernel}: {', '.join(tuned)} is tuned; do not pass it")
        named = dict(zip(self.arg_names, args, strict=False))  # the rest by keyword
        named.update(kwargs)
        missing = [k for k in self.key if k not in named]
        if missing:
            raise UserError(f"{self.kernel}: key argument {', '.join(missing)} not given")
        return named

    def _dims(self, named: Mapping[str, Any]) -> Dims:
        dims: Dims = {}
        for name in self.key:
            value = named[name]
            if not isinstance(value, bool | int | float | str):
                raise UserError(
                    f"{self.kernel}: key argument {name!r} must be a number, bool or string, "
                    f"not {type(value).__name__}"
                )
            dims[name] = value
        dtypes = [str(v.dtype) for v in named.values() if isinstance(v, torch.Tensor)]
        dims[DTYPES_DIM] = ",".join(d.removeprefix("torch.") for d in dtypes)
        return dims

    def _env(self, device: str) -> dict[str, Any]:
        env = self._environments.get(device)
        if env is None:
            interpreted = _interpreted(self.fn)
            index = 0 if interpreted else torch.device(device).index or 0
            env = device_environment(self.source_hash, interpreted=interpreted, device=index)
            self._environments[device] = env
        return env


def _device_of(named: Mapping[str, Any]) -> str:
    tensor = next((v for v in named.values() if isinstance(v, torch.Tensor)), None)
    return str(tensor.device) if tensor is not None else "cpu"


def _interpreted(fn: Any) -> bool:
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(fn, InterpretedFunction)


def autotune(
    configs: Mapping[str, Sequence[Any]] | Sequence[Any],
    key: Sequence[str],
    *,
    store: str | None = None,
    tune: bool = False,
    constraints: Sequence[str] = (),
    budget: int = DEFAULT_BUDGET,
    seed: int = 0,
    tolerance: tuple[float, float] | None = None,
    inputs: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
) -> Callable[[Any], Autotuned]:
    """Decorate a `@triton.jit` kernel so that each launch uses the best stored config.

    configs: a dict of knob -> values (constexpr arguments, `num_warps`, `num_stages`, ...),
        every combination a config; or a list of `triton.Config`.
    key: the arguments whose values select a config (with the tensor arguments' dtypes).
    store: a SQLAlchemy database URL or file path; None: $EVOTUNE_DB, else ./evotune.db.
    tune: on a miss, search in-process on the call's arguments (else launch the first
        config and record the miss).
    constraints: expressions of the space-file language over knobs and key arguments.
    budget: trials per tune (at most the number of valid configs).
    tolerance: (atol, rtol) against the first config's output, |out - ref| <= atol +
        rtol * |ref|; None: by dtype (float16 1e-2, bfloat16 2e-2, float32 1e-4, others exact).
    inputs: for `evotune tune-pending`, which rebuilds a missed call from its recorded
        argument specs with random contents: a module-level function that takes those
        arguments by name and returns the ones to replace (say, index tensors whose values
        matter), by name.
    """

    def decorate(fn: Any) -> Autotuned:
        return Autotuned(
            fn,
            configs,
            key,
            store=store,
            tune=tune,
            constraints=constraints,
            budget=budget,
            seed=seed,
            tolerance=tolerance,
            inputs=inputs,
        )

    return decorate
