"""What a decorated kernel may be launched with: `configs` (and `constraints`) as a SearchSpace.

Two forms of `configs`:

- a dict of knob -> values (`{"BLOCK": [32, 64], "num_warps": [2, 4]}`): one parameter per
  knob, `ordered` when every value is a number, else `categorical`; the first value of each is
  its default. Every combination is a config, less those a constraint rules out. Constraints
  are expressions of the space-file language over the knobs and the `key` arguments.
- a list of `triton.Config`: exactly those configs, as one categorical parameter `config`
  whose values are labels (`BLOCK=64, num_warps=4, num_stages=3`); a stored trial's config is
  `{"config": <label>}`. Constraints are refused here: filter the list instead.

A launch gets the config's knobs as keyword arguments: the kernel's constexpr arguments and
Triton's launch options (`num_warps`, `num_stages`, `num_ctas`, `maxnreg`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from evotune.errors import UserError
from evotune.expressions import ExpressionError
from evotune.records import Config, Dims
from evotune.search.grid import valid_configs
from evotune.space import SearchSpace

__all__ = ["DTYPES_DIM", "LAUNCH_OPTIONS", "TuningSpace", "tuning_space"]

LAUNCH_OPTIONS = frozenset({"num_warps", "num_stages", "num_ctas", "maxnreg"})
# The dim that holds the dtypes of the tensor arguments (Triton's autotuner keys on them too).
DTYPES_DIM = "dtypes"
_LABEL = "config"  # the one parameter of a space made from a list of triton.Config


@dataclass(frozen=True)
class TuningSpace:
    """The SearchSpace of a decorated kernel, and how its configs become launch arguments."""

    space: SearchSpace
    # label -> launch keyword arguments, for a space made from a list of triton.Config
    labelled: Mapping[str, Config] | None = None

    @property
    def knob_names(self) -> frozenset[str]:
        """The launch arguments a config sets (a caller must not pass them)."""
        if self.labelled is None:
            return frozenset(self.space.parameters)
        return frozenset(name for kwargs in self.labelled.values() for name in kwargs)

    def launch_kwargs(self, config: Config) -> Config:
        """The keyword arguments a launch with this (stored) config passes to the kernel."""
        if self.labelled is None:
            return dict(config)
        return dict(self.labelled[config[_LABEL]])

    def first_config(self, dims: Dims) -> Config:
        """The first valid config for these dims: the reference, and what a miss launches."""
        configs = valid_configs(self.space, dims)
        if not configs:
            raise UserError(
                f"no config of kernel {self.space.kernel!r} is valid for {dims}: "
                "the constraints rule out every one"
            )
        return configs[0]

    def admits(self, config: Config, dims: Dims) -> bool:
        """Whether a stored config is still one of this space's valid configs for these dims
        (the `configs` given to the decorator may have changed since it was stored)."""
        try:
            return not self.space.violations(config, dims)
        except ExpressionError:
            return False


def tuning_space(
    kernel: str,
    module: str,
    arg_names: Sequence[str],
    key: Sequence[str],
    configs: Mapping[str, Sequence[Any]] | Sequence[Any],
    constraints: Sequence[str],
) -> TuningSpace:
    """Check `configs` against the kernel's arguments and build its TuningSpace."""
    unknown_keys = [k for k in key if k not in arg_names]
    if unknown_keys:
        raise UserError(f"key {unknown_keys} names no argument of {kernel} ({list(arg_names)})")
    if DTYPES_DIM in key:
        raise UserError(f"key: {DTYPES_DIM!r} is reserved for the tensor arguments' dtypes")
    if isinstance(configs, Mapping):
        knobs = {str(name): list(values) for name, values in configs.items()}
        labelled = None
    else:
        if constraints:
            raise UserError("constraints apply to a dict of knobs; filter a list of Config instead")
        labelled = _labelled(configs)
        knobs = {_LABEL: list(labelled)}
    _check_knobs(kernel, arg_names, key, knobs if labelled is None else _launch_names(labelled))
    data = {
        "kernel": kernel,
        "module": module,
        "dims": {**dict.fromkeys(key, "int"), DTYPES_DIM: "str"},
        "parameters": {name: _parameter(name, values) for name, values in knobs.items()},
        "constraints": [{"expr": expr} for expr in constraints],
        "tolerances": {},
        "shapes": {},
    }
    try:
        return TuningSpace(SearchSpace.model_validate(data), labelled)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        raise UserError(f"configs of {kernel}: {where + ': ' if where else ''}{message}") from None
    except ExpressionError as exc:
        raise UserError(f"constraints of {kernel}: {exc}") from None


def _parameter(name: str, values: list[Any]) -> dict[str, Any]:
    if not values:
        raise UserError(f"configs: {name!r} has no values")
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    return {"kind": "ordered" if numeric else "categorical", "values": values, "default": values[0]}


def _labelled(configs: Sequence[Any]) -> dict[str, Config]:
    """label -> launch kwargs of each triton.Config, in the list's order."""
    labelled: dict[str, Config] = {}
    for config in configs:
        if not callable(getattr(config, "all_kwargs", None)):
            raise UserError(
                f"configs: expected a dict of knobs or triton.Config items, got {config!r}"
            )
        if getattr(config, "pre_hook", None) is not None:
            raise UserError("configs: a triton.Config with a pre_hook is not supported")
        kwargs = {k: v for k, v in config.all_kwargs().items() if k != "ir_override"}
        labelled[", ".join(f"{k}={v}" for k, v in kwargs.items())] = kwargs
    if not labelled:
        raise UserError("configs: the list is empty")
    return labelled


def _launch_names(labelled: Mapping[str, Config]) -> dict[str, list[Any]]:
    return {name: [] for kwargs in labelled.values() for name in kwargs}


def _check_knobs(
    kernel: str, arg_names: Sequence[str], key: Sequence[str], knobs: Mapping[str, Any]
) -> None:
    for name in knobs:
        if name in key:
            raise UserError(f"configs: {name!r} is a key argument, it cannot be tuned as well")
        if name not in arg_names and name not in LAUNCH_OPTIONS:
            raise UserError(
                f"configs: {name!r} is neither an argument of {kernel} nor a launch option "
                f"({', '.join(sorted(LAUNCH_OPTIONS))})"
            )
