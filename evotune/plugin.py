"""The kernel plug-in interface: how evotune runs a kernel it knows nothing about.

A plug-in is the Python module a search space names in `module:`. It exposes these
module-level functions (see `kernels/attention.py` for the reference plug-in):

- `make_inputs(dims, seed, device) -> dict[str, Tensor]`: fresh random inputs for a shape.
- `empty_output(inputs) -> Tensor`: an output buffer (evotune fills it with NaN first).
- `run(inputs, out, config) -> None`: launch the kernel with a config, writing into `out`.
- `reference(inputs) -> Tensor`: the float32 (or better) reference output.
- `flops(dims) -> float`: useful floating-point operations of one call (for TFLOPS).
- optional `bytes(dims) -> float`: the fewest bytes one call must move (inputs read once,
  outputs written once); with `flops` it gives the physical floor a p50 may not beat
  (evotune/worker/hardware.py).
- `unsupported(config, dims, device) -> str | None`: why this config cannot run on this
  device at all (e.g. a Hopper-only implementation in the interpreter), else None.
- optional `compile_only(dims, config, device) -> None`: compile without launching, so a
  pool of CPU processes can fill Triton's cache ahead of the GPU worker.
- optional `baselines(inputs) -> dict[str, Callable[[], Tensor]]`: what `evotune bench`
  compares the kernel with (label -> a call on these inputs that returns its output).

`run` must not keep device memory alive after it returns: a trial that leaves more behind
than it found fails as a leak (evotune/worker/hygiene.py). The kernel source hash covers
the plug-in module and whatever it imports from its own package (evotune/source_hash.py).
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol, cast

from evotune.errors import SpaceFileError
from evotune.records import Config, Dims

__all__ = ["DeviceInfo", "KernelPlugin", "load_plugin"]


@dataclass(frozen=True)
class DeviceInfo:
    """What a plug-in may ask of the device it runs on (picklable)."""

    interpreted: bool
    name: str
    capability: tuple[int, int] | None = None
    sm_count: int = 0

    @property
    def is_hopper(self) -> bool:
        return not self.interpreted and self.capability == (9, 0)


class KernelPlugin(Protocol):
    def make_inputs(self, dims: Dims, seed: int, device: str) -> dict[str, Any]: ...
    def empty_output(self, inputs: dict[str, Any]) -> Any: ...
    def run(self, inputs: dict[str, Any], out: Any, config: Config) -> None: ...
    def reference(self, inputs: dict[str, Any]) -> Any: ...
    def flops(self, dims: Dims) -> float: ...
    def unsupported(self, config: Config, dims: Dims, device: DeviceInfo) -> str | None: ...


_REQUIRED = ("make_inputs", "empty_output", "run", "reference", "flops", "unsupported")


def load_plugin(module_name: str) -> KernelPlugin:
    """Import a kernel plug-in module and check it has the whole interface."""
    module = _import(module_name)
    missing = [name for name in _REQUIRED if not callable(getattr(module, name, None))]
    if missing:
        raise SpaceFileError(f"kernel module {module_name!r} lacks {', '.join(missing)}")
    return cast(KernelPlugin, module)


def _import(module_name: str) -> ModuleType:
    try:
        return sys.modules.get(module_name) or importlib.import_module(module_name)
    except ImportError as exc:
        raise SpaceFileError(f"cannot import kernel module {module_name!r}: {exc}") from None
