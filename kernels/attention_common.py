"""What both attention launchers read: search_spaces/attention.yaml (the one table of defaults,
of config parameters and of shape dims, the sm_90 limits and the constraints the launchers
evaluate rather than spell again) and the device limits they plan grids with.

`kernels/attention.py` imports `kernels/attention_gluon.py`; both import this module, which
imports neither. The space file is read with pyyaml and evotune.expressions (no pydantic), so a
bare GPU host runs it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from evotune.dims import complete_dims
from evotune.expressions import evaluate

if TYPE_CHECKING:
    import torch

__all__ = [
    "SPACE_FILE",
    "complete_shape_dims",
    "default_config",
    "device_limits",
    "parameter_defaults",
    "space_constant",
    "space_constraint",
]

SPACE_FILE = Path(__file__).resolve().parents[1] / "search_spaces" / "attention.yaml"


@functools.lru_cache(maxsize=1)
def _space() -> dict[str, Any]:
    space: dict[str, Any] = yaml.safe_load(SPACE_FILE.read_text())
    return space


def default_config() -> dict[str, Any]:
    """The space's default config: every parameter's default whose `when` holds for the
    defaults before it (what SearchSpace.default_config gives)."""
    config: dict[str, Any] = {}
    for name, spec in _space()["parameters"].items():
        when = spec.get("when")
        if when is None or evaluate(when, config):
            config[name] = spec["default"]
    return config


def complete_shape_dims(dims: Mapping[str, Any]) -> dict[str, Any]:
    """A shape's dims with those it leaves out at the space's `dim_defaults` (Hkv = H,
    Skv = S): evotune hands plug-ins a shape's dims as it stores them, defaults left out."""
    return complete_dims(dims, _space().get("dim_defaults", {}))


def parameter_defaults() -> dict[str, Any]:
    """Every parameter's default, active in the default config or not."""
    return {name: spec["default"] for name, spec in _space()["parameters"].items()}


def space_constant(name: str) -> Any:
    """A derived value of the space that reads no dims (e.g. `smem_limit`)."""
    return evaluate(_space()["derived"][name], {})


def space_constraint(why_prefix: str) -> str:
    """The expression of the one constraint whose `why` starts with `why_prefix`."""
    found = [c["expr"] for c in _space()["constraints"] if c["why"].startswith(why_prefix)]
    if len(found) != 1:
        raise LookupError(f"{SPACE_FILE.name}: {len(found)} constraints' why start {why_prefix!r}")
    return found[0]


@functools.lru_cache(maxsize=8)
def _device_limits(index: int) -> tuple[int, int]:
    """(SM count, L2 bytes) of a CUDA device."""
    import torch

    props = torch.cuda.get_device_properties(index)
    return props.multi_processor_count, int(getattr(props, "L2_cache_size", 50 << 20))


def device_limits(device: torch.device) -> tuple[int, int]:
    """(SM count, L2 bytes) that the launchers plan tile grids and tile order with."""
    import torch

    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        return _device_limits(index)
    return 4, 8 << 20  # interpreter: a few "SMs" so that the persistent loop really loops
