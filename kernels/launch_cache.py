"""What keeps a repeated kernel launch cheap on the host: a bounded cache of launch plans keyed by
what a plan depends on, and the launch of an already compiled Triton kernel without the JIT's
per-call dispatch.

A launcher that plans every call from scratch (validate the inputs, resolve the config, work out
grid, constexprs and TMA descriptors) and then goes through `kernel[grid](...)` spends tens of
µs of Python a call: at small shapes more than the kernel takes on the GPU. Everything a plan
holds follows from the call's key (`call_key`: each tensor's sizes, strides, dtype, device and
16-byte alignment, the other arguments, the config, the current CUDA device), so a launcher plans
a key once and, on a hit, only rebinds the tensors:

- `CompiledLaunch` launches the first time through the JIT (which compiles or finds the binary
  and specialises on exactly what the key holds: dtypes, alignment, integer values), then calls
  that compiled kernel's launcher directly, as `CompiledKernel.__getitem__`'s runner does, but
  without Triton's per-call binder, cache-key and launch-metadata work (about 10-15 µs of
  Python in Triton 3.6). With a launch hook registered (a profiler) every launch goes through
  the JIT, so the hooks see them all.
- `rebased` gives a tensor descriptor that was built (and checked) once per key another base of
  the same layout, without re-running the dataclass checks. (Triton's launcher encodes the TMA
  descriptor from it on every launch, so a descriptor holds no device state.)
- Nothing cached holds a caller's tensor, so the cache keeps no device memory alive but the
  launchers' own small tables.

CUDA graphs: a captured launch bakes in its pointers and, for TMA, the descriptors encoded at
capture (base addresses included), so replays must use the same buffers, as with any captured
kernel. Device tensors a captured launch reads (the gluon kernel's tile schedule) are handed to
`hold_for_graphs`, which keeps them for the life of the process: a graph does not own them, and
an evicted plan would otherwise free memory the graph still reads.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, Generic, TypeVar

import torch
from triton import knobs
from triton.runtime import driver

__all__ = [
    "BoundedCache",
    "CompiledLaunch",
    "call_key",
    "capturing",
    "check_not_capturing",
    "hold_for_graphs",
    "rebased",
    "tensor_key",
]

V = TypeVar("V")
D = TypeVar("D")


class BoundedCache(Generic[V]):
    """A dict of at most `max_entries` values; a new key past that evicts the oldest one."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: dict[Hashable, V] = {}

    def get(self, key: Hashable) -> V | None:
        """The value of `key`; None for a key that is None or cannot be hashed (a config value
        such as a list): such a call is planned from scratch, and its checks name it."""
        try:
            return self._entries.get(key)
        except TypeError:
            return None

    def put(self, key: Hashable, value: V) -> None:
        """Keep `value` under `key` (not under None or a key that cannot be hashed)."""
        if key is None:
            return
        try:
            if key not in self._entries and len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = value
        except TypeError:
            return

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def tensor_key(t: torch.Tensor) -> tuple[Any, ...]:
    """What a launch plan reads of a tensor: sizes, strides, dtype, device, and whether its base
    is 16-byte aligned (what TMA needs, and what Triton specialises pointers on)."""
    return (t.shape, t.stride(), t.dtype, t.device, t.data_ptr() % 16 == 0)


def _config_key(config: Mapping[str, Any] | None) -> Hashable:
    if config is None:
        return None
    # The types too: 64.0 == 64, but a config with BLOCK_M 64.0 must still be refused.
    return tuple(config.items()), tuple(map(type, config.values()))


def call_key(
    tensors: tuple[torch.Tensor, ...], config: Mapping[str, Any] | None, *other: Hashable
) -> Hashable | None:
    """The key of a call's launch plan: every tensor's `tensor_key`, the config, the current
    CUDA device (where Triton launches and loads kernels) and `other`. None when an argument is
    not a tensor or the config not a mapping; a key whose config holds a value that cannot be
    hashed is one that `BoundedCache` never finds. Either way the call is planned from scratch,
    and its checks name the argument."""
    try:
        device = torch.cuda.current_device() if tensors[0].is_cuda else -1
        return (tuple(map(tensor_key, tensors)), _config_key(config), device, *other)
    except (AttributeError, TypeError):
        return None


def rebased(template: D, base: Any) -> D:
    """A copy of tensor descriptor `template` over `base`, which has the layout the template was
    built and checked for (same dtype, alignment, sizes and strides: the call key holds them)."""
    fields = template.__dict__.copy()
    fields["base"] = base
    desc = object.__new__(template.__class__)
    desc.__dict__ = fields
    return desc


def capturing(device: torch.device) -> bool:
    """Whether the current CUDA stream is capturing a graph."""
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def check_not_capturing(device: torch.device, what: str) -> None:
    """Refuse to plan a launch while a CUDA graph is being captured: planning may compile, load
    a module or upload a table, none of which a capture records (RuntimeError)."""
    if capturing(device):
        raise RuntimeError(
            f"{what}: first call with these shapes, strides, dtypes and config while a CUDA "
            "graph is being captured; call it once before capturing (a warm-up run)"
        )


# Device tensors that captured launches read, kept alive for the process (see the module doc).
_GRAPH_HELD: dict[int, torch.Tensor] = {}


def hold_for_graphs(t: torch.Tensor) -> None:
    _GRAPH_HELD[id(t)] = t


def _hooked() -> bool:
    """Whether a launch hook is registered (a profiler such as proton): then the JIT launches."""
    enter, exit_ = knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook
    # Triton 3.6 keeps a HookChain (with its list of calls) where older versions kept None.
    return bool(getattr(enter, "calls", enter) or getattr(exit_, "calls", exit_))


class CompiledLaunch:
    """Launches of one jitted kernel for one call key: `fn`, its grid, constexprs and launch
    options are fixed; each call passes the runtime arguments in the kernel's order.

    The first call (and every call under the interpreter, or with a launch hook registered) goes
    through `fn[grid](...)`; later calls go straight to the compiled kernel's launcher. That is
    sound only for arguments that specialise the kernel alike, which the call key guarantees.
    """

    def __init__(
        self,
        fn: Any,
        grid: tuple[int, ...],
        constexprs: Mapping[str, Any],
        options: Mapping[str, Any],
        device: int,
    ) -> None:
        self.fn, self.constexprs, self.options, self.device = fn, dict(constexprs), options, device
        self.grid = (*grid, 1, 1)[:3]
        names = list(fn.arg_names)
        runtime_names = [n for n in names if n not in self.constexprs]
        if names[: len(runtime_names)] != runtime_names:
            raise TypeError(f"{fn}: constexpr parameters must come after the runtime ones")
        # The JIT hands the compiled kernel every parameter in order, constexprs included (its
        # launcher skips them).
        self._tail = tuple(self.constexprs[n] for n in names[len(runtime_names) :])
        self._interpreted = type(fn).__name__ == "InterpretedFunction"
        # Set by the first launch: the compiled kernel's launcher, its function handle and
        # packed metadata, and Triton's current-stream query.
        self._run: Any = None
        self._function: Any = None
        self._metadata: Any = None
        self._stream: Any = None

    @property
    def compiled(self) -> bool:
        """Whether calls go straight to the compiled kernel (after the first one, on a GPU)."""
        return self._run is not None

    def __call__(self, *args: Any) -> None:
        run = self._run
        if run is None or _hooked():
            kernel = self.fn[self.grid](*args, **self.constexprs, **self.options)
            if not self._interpreted and kernel is not None and run is None:
                # An asynchronous compile hands back a future.
                kernel = kernel.result() if hasattr(kernel, "result") else kernel
                run = kernel.run  # loads the module, if the JIT has not yet
                self._function, self._metadata = kernel.function, kernel.packed_metadata
                self._stream = driver.active.get_current_stream
                self._run = run
            return
        g0, g1, g2 = self.grid
        # What CompiledKernel's own runner passes, without launch metadata and hooks.
        run(
            g0,
            g1,
            g2,
            self._stream(self.device),
            self._function,
            self._metadata,
            None,  # launch metadata: only hooks read it
            None,  # enter hook
            None,  # exit hook
            *args,
            *self._tail,
        )
