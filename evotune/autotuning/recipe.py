"""What a recorded miss keeps so that `evotune tune-pending` can rebuild its call offline.

A recipe is JSON, stored in the pending study's `settings` under `offline` (no schema change):

- `kernel`: the import path (module, qualified name) of the `@triton.jit` function;
- `space`, `labelled`: the decorator's tuning space (`configs` and `constraints`, checked);
- `args`: each argument of the call: a tensor's shape, strides, storage offset, dtype and
  device; a scalar's value;
- `grid`: the launch grid of every valid config. The grid is usually a lambda over the
  caller's variables (`lambda meta: (cdiv(n, meta["BLOCK"]),)`), which cannot be stored, so
  it is evaluated at the miss, for every valid config, with the `meta` Triton passes it;
- `tolerance`, `inputs`: the decorator's tolerance and its optional `inputs=` hook.

What makes a call impossible to rebuild (a kernel defined in `__main__` or inside a
function, an argument that is neither a tensor nor a scalar, arguments that share memory,
too many configs to record a grid for) is recorded instead, as `{"refused": why}`.

Offline, tensors get seeded random contents: floats standard normal, integers in
[0, INT_HIGH), booleans either. A kernel whose correctness depends on what its arguments hold
(index tensors, offsets) names an `inputs=` hook on the decorator that replaces them.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from evotune.autotuning.configs import TuningSpace
from evotune.errors import NotTunableOfflineError
from evotune.records import Config, Dims
from evotune.search.grid import valid_configs
from evotune.space import SearchSpace

__all__ = [
    "INT_HIGH",
    "MAX_GRID_CONFIGS",
    "RECIPE_KEY",
    "RebuiltCall",
    "import_kernel",
    "rebuild_call",
    "record",
    "tuning_of",
]

RECIPE_KEY = "offline"  # the key of a decorator study's settings that holds its recipe
INT_HIGH = 4  # integer tensors are filled with values in [0, INT_HIGH): safe as small indices
# A callable grid is recorded per valid config; beyond this many the miss is refused (a
# decorator's configs are a few dozen, and the recipe stays a few tens of kB).
MAX_GRID_CONFIGS = 1024

_Json = dict[str, Any]


def record(
    jit_fn: Any,
    tuning: TuningSpace,
    named: Mapping[str, Any],
    dims: Dims,
    grid: Any,
    tolerance: tuple[float, float] | None,
    inputs: Callable[..., Any] | None,
) -> _Json:
    """The recipe of one call (`named`: its arguments by name; `dims`: its key values), or
    `{"refused": why}`."""
    try:
        kernel = _reference(jit_fn.fn, "the kernel")
        _check_importable_kernel(jit_fn, kernel)
        hook = None if inputs is None else _reference(inputs, "the inputs= hook")
        args = {name: _arg_spec(name, value) for name, value in named.items()}
        _check_no_shared_memory(named)
        grids = _grids(jit_fn, tuning, named, dims, grid)
    except NotTunableOfflineError as exc:
        return {"refused": str(exc)}
    except Exception as exc:  # recording is for later: it must never fail the launch itself
        return {"refused": f"the call could not be recorded: {type(exc).__name__}: {exc}"}
    return {
        "kernel": kernel,
        "space": tuning.space.model_dump(mode="json"),
        "labelled": None if tuning.labelled is None else dict(tuning.labelled),
        "args": args,
        "grid": grids,
        "tolerance": None if tolerance is None else list(tolerance),
        "inputs": hook,
    }


def _reference(fn: Any, what: str) -> _Json:
    """Module and qualified name of a function another process can import."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname:
        raise NotTunableOfflineError(f"{what} {fn!r} has no module and name to import it by")
    if module == "__main__":
        raise NotTunableOfflineError(
            f"{what} {qualname} is defined in __main__ (a script), which another process "
            "cannot import: move it into a module the program imports"
        )
    if "<locals>" in qualname:
        raise NotTunableOfflineError(
            f"{what} {module}.{qualname} is defined inside a function: define it at module level"
        )
    return {"module": module, "qualname": qualname}


def _check_importable_kernel(jit_fn: Any, kernel: _Json) -> None:
    """The module's attribute must lead to this very kernel (not one made at run time)."""
    module = sys.modules.get(kernel["module"])
    found = None if module is None else _jit_kernel(_resolve(module, kernel["qualname"]))
    if found is None or found.fn is not jit_fn.fn:
        raise NotTunableOfflineError(
            f"{kernel['module']}.{kernel['qualname']} does not lead to this kernel when "
            "imported (was it created at run time?)"
        )


def _resolve(module: Any, qualname: str) -> Any:
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _jit_kernel(obj: Any) -> Any:
    """The `@triton.jit` kernel an attribute holds: itself, or the one that
    `evotune.autotune` wraps (a jit kernel's `fn` is a plain Python function)."""
    for candidate in (obj, getattr(obj, "fn", None)):
        if hasattr(candidate, "arg_names") and inspect.isfunction(getattr(candidate, "fn", None)):
            return candidate
    return None


def _arg_spec(name: str, value: Any) -> _Json:
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided:
            raise NotTunableOfflineError(
                f"argument {name!r} is a {value.layout} tensor: offline tuning rebuilds "
                "strided (dense) tensors only"
            )
        return {
            "tensor": {
                "shape": list(value.shape),
                "strides": list(value.stride()),
                "offset": int(value.storage_offset()),
                "dtype": str(value.dtype).removeprefix("torch."),
                "device": str(value.device),
            }
        }
    if isinstance(value, float):  # as text: JSON has no inf or nan, and repr round-trips
        return {"float": repr(value)}
    if value is None or isinstance(value, bool | int | str):
        return {"value": value}
    raise NotTunableOfflineError(
        f"argument {name!r} is a {type(value).__name__}: offline tuning rebuilds tensors, "
        "numbers, booleans, strings and None only"
    )


def _check_no_shared_memory(named: Mapping[str, Any]) -> None:
    """Offline each tensor gets its own memory: a call whose tensors alias cannot be rebuilt."""
    owners: dict[int, str] = {}
    for name, value in named.items():
        if not isinstance(value, torch.Tensor) or value.numel() == 0:
            continue
        storage = value.untyped_storage().data_ptr()
        if storage in owners:
            raise NotTunableOfflineError(
                f"arguments {owners[storage]!r} and {name!r} share memory, and offline each "
                "tensor gets its own"
            )
        owners[storage] = name


def _grids(
    jit_fn: Any, tuning: TuningSpace, named: Mapping[str, Any], dims: Dims, grid: Any
) -> _Json:
    """`{"fixed": grid}`, or `{"per_config": {launch kwargs as JSON: grid}}` for a callable."""
    if not callable(grid):
        return {"fixed": _grid_value(grid, None)}
    configs = valid_configs(tuning.space, dims)
    if len(configs) > MAX_GRID_CONFIGS:
        raise NotTunableOfflineError(
            f"the grid is a function and the configs valid here are {len(configs)}; evotune "
            f"records a grid for at most {MAX_GRID_CONFIGS}"
        )
    defaults = {
        name: p.default
        for name, p in inspect.signature(jit_fn.fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    per_config: dict[str, list[int]] = {}
    for config in configs:
        launch = tuning.launch_kwargs(config)
        # As Triton calls it: every kernel argument by name (launch options are not in it).
        meta = {**defaults, **named, **{k: v for k, v in launch.items() if k in jit_fn.arg_names}}
        try:
            value = grid(meta)
        except Exception as exc:
            raise NotTunableOfflineError(
                f"the grid raised {type(exc).__name__} for config {launch}: {exc}"
            ) from None
        per_config[_launch_key(launch)] = _grid_value(value, launch)
    return {"per_config": per_config}


def _grid_value(value: Any, launch: Config | None) -> list[int]:
    try:
        sizes = [int(v) for v in value]
    except (TypeError, ValueError):
        sizes = []
    if not 1 <= len(sizes) <= 3:
        where = "" if launch is None else f" for config {launch}"
        raise NotTunableOfflineError(f"the grid{where} is {value!r}, not 1 to 3 integers")
    return sizes


def _launch_key(launch: Config) -> str:
    """The key of a config's grid in a recipe: its launch kwargs as canonical JSON."""
    return json.dumps(launch, sort_keys=True)


def tuning_of(recipe: Mapping[str, Any]) -> TuningSpace:
    """The decorator's tuning space, as the miss recorded it."""
    labelled = recipe.get("labelled")
    return TuningSpace(SearchSpace.model_validate(recipe["space"]), labelled)


def import_kernel(recipe: Mapping[str, Any]) -> Any:
    """The `@triton.jit` kernel the recipe names, imported here."""
    ref = recipe["kernel"]
    kernel = _jit_kernel(_import(ref, "the kernel"))
    if kernel is None:
        raise NotTunableOfflineError(
            f"{ref['module']}.{ref['qualname']} is no longer a @triton.jit kernel"
        )
    return kernel


def _import(ref: Mapping[str, str], what: str) -> Any:
    path = f"{ref['module']}.{ref['qualname']}"
    try:
        module = importlib.import_module(ref["module"])
    except Exception as exc:  # the user's module runs here: anything may come out of it
        raise NotTunableOfflineError(
            f"cannot import {what} {path}: {type(exc).__name__}: {exc} (is its folder on "
            "PYTHONPATH?)"
        ) from None
    found = _resolve(module, ref["qualname"])
    if found is None:
        raise NotTunableOfflineError(f"{what} {path} is gone: the module has no such name now")
    return found


@dataclass
class RebuiltCall:
    """A call rebuilt from its recipe: the kernel, its arguments, and its grid per config."""

    kernel: Any
    args: dict[str, Any]
    grid: Mapping[str, Any]

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: v for name, v in self.args.items() if isinstance(v, torch.Tensor)}

    def launch(self, launch: Config) -> None:
        """Launch the kernel with one config's launch kwargs (every argument by name)."""
        if "fixed" in self.grid:
            grid = tuple(self.grid["fixed"])
        else:
            grid = tuple(self.grid["per_config"][_launch_key(launch)])
        self.kernel[grid](**self.args, **launch)


def rebuild_call(recipe: Mapping[str, Any], kernel: Any, seed: int) -> RebuiltCall:
    """The call's arguments, synthesized from their specs (seeded), then the `inputs=` hook."""
    generator = torch.Generator().manual_seed(seed)
    args = {name: _synthesize(spec, generator) for name, spec in recipe["args"].items()}
    hook_ref = recipe.get("inputs")
    if hook_ref is not None:
        hook = _import(hook_ref, "the inputs= hook")
        try:
            replaced = hook(dict(args))
        except Exception as exc:
            raise NotTunableOfflineError(
                f"the inputs= hook raised {type(exc).__name__}: {exc}"
            ) from None
        unknown = sorted(set(replaced or {}) - set(args))
        if unknown:
            raise NotTunableOfflineError(
                f"the inputs= hook returned {', '.join(unknown)}, which the kernel does not take"
            )
        args.update(replaced or {})
    return RebuiltCall(kernel, args, recipe["grid"])


def _synthesize(spec: Mapping[str, Any], generator: torch.Generator) -> Any:
    if "float" in spec:
        return float(spec["float"])
    if "value" in spec:
        return spec["value"]
    return _random_tensor(spec["tensor"], generator)


def _random_tensor(spec: Mapping[str, Any], generator: torch.Generator) -> torch.Tensor:
    """Seeded random contents in exactly the recorded layout (strides, storage offset);
    drawn on the CPU, so the same seed gives the same values on any device."""
    dtype = getattr(torch, spec["dtype"], None)
    if not isinstance(dtype, torch.dtype):
        raise NotTunableOfflineError(f"unknown dtype {spec['dtype']!r} in the recorded call")
    shape, strides, offset = spec["shape"], spec["strides"], int(spec["offset"])
    size = offset + _extent(shape, strides)
    if dtype.is_complex:
        base = torch.randn(size, generator=generator, dtype=torch.complex64)
    elif dtype.is_floating_point:
        base = torch.randn(size, generator=generator)
    elif dtype == torch.bool:
        base = torch.randint(0, 2, (size,), generator=generator)
    else:
        base = torch.randint(0, INT_HIGH, (size,), generator=generator)
    try:
        storage = base.to(dtype).to(spec["device"])
    except (RuntimeError, AssertionError) as exc:  # no such device here (torch asserts on some)
        raise NotTunableOfflineError(
            f"cannot make a tensor on {spec['device']}: {str(exc).splitlines()[0]}"
        ) from None
    return storage.as_strided(shape, strides, offset)


def _extent(shape: list[int], strides: list[int]) -> int:
    """Elements of storage a tensor of this shape and strides spans (0 if it is empty;
    torch has no negative strides)."""
    if any(s == 0 for s in shape):
        return 0
    return 1 + sum((s - 1) * st for s, st in zip(shape, strides, strict=True))
