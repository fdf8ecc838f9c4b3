"""What keeps a repeated kernel launch cheap on the host: a bounded cache of launch plans keyed by
what a plan depends on, and the launch of an already compiled Triton kernel without the JIT's
per-call dispatch.

A launcher that plans every call from scratch (validate the inputs, resolve the config, work out
grid, constexprs and TMA descriptors) and then goes through `kernel[grid](...)` spends tens of
µs of Python a call: at small shapes more than the kernel takes on the GPU. Everything a plan
holds follows from the call's key (`call_key`: the tensors' dtype and device, each one's sizes,
strides and 16-byte alignment, the other arguments, the config, the current CUDA device), so a
launcher plans a key once and, on a hit, only rebinds the tensors:

- The key is one tuple read off the tensors without a loop, the config in it a small int
  (`_ConfigTokens`: a config passed again is not read again), and `BoundedCache` compares a
  repeated key with the last one found before hashing it: ~2.5 µs of Python a hit on a CPU
  (tests/kernels/launch_key_bench.py), most of it reading the tensors' attributes.
- `CompiledLaunch` launches the first time through the JIT (which compiles or finds the binary
  and specialises on exactly what the key holds: dtypes, alignment, integer values), then calls
  the compiled kernel's C launch function directly, with what Triton's launcher would hand it:
  pointers as addresses, each tensor descriptor as its encoded TMA descriptor and sizes. That
  skips Triton's per-call binder, cache key and launch metadata, its Python launcher and
  descriptor expansion, and the driver's pointer query per tensor. Descriptors are encoded once
  per base address (`_EncodedDescriptor`), so calls on tensors seen before encode none. With a
  launch hook registered (a profiler) every launch goes through the JIT, so the hooks see them
  all; a Triton whose launcher is not laid out as 3.6's is called through its CompiledKernel.run.
- A tensor descriptor is built (and checked) once per key, without a base; a call passes the
  base tensor, and `rebased` gives the template that base where a launch needs the object.
- Nothing cached holds a caller's tensor, so the cache keeps no device memory alive but the
  launchers' own small tables (`_ConfigTokens` holds the last config passed, and a copy).

CUDA graphs: a captured launch bakes in its pointers and, for TMA, the descriptors encoded at
capture (base addresses included), so replays must use the same buffers, as with any captured
kernel. Device tensors a captured launch reads (the gluon kernel's tile schedule) are handed to
`hold_for_graphs`, which keeps them for the life of the process: a graph does not own them, and
an evicted plan would otherwise free memory the graph still reads.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Hashable, Mapping, Sequence
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
]

V = TypeVar("V")
D = TypeVar("D")

# Equal to no key: the last key found by an empty BoundedCache.
_NO_KEY: Any = object()


class BoundedCache(Generic[V]):
    """A dict of at most `max_entries` values; a new key past that evicts the oldest one."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: dict[Hashable, V] = {}
        # The last key found or put and its value, one tuple so that threads never pair one
        # key with another's value: a repeated key (a model's usual call) is found by comparing
        # it with that key, without hashing it (a call key's hash is ~40 % of a lookup).
        self._last: tuple[Any, V | None] = (_NO_KEY, None)

    def get(self, key: Hashable) -> V | None:
        """The value of `key`; None for a key that is None or cannot be hashed (a config value
        such as a list): such a call is planned from scratch, and its checks name it."""
        last_key, last_value = self._last
        if key == last_key:
            return last_value
        try:
            found = self._entries.get(key)
        except TypeError:
            return None
        if found is not None:
            self._last = (key, found)
        return found

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
        self._last = (key, value)

    def clear(self) -> None:
        self._entries.clear()
        self._last = (_NO_KEY, None)

    def __len__(self) -> int:
        return len(self._entries)


class _ConfigTokens:
    """A small int standing for a config's contents in call keys, so that a key holds (and a
    lookup hashes and compares) one int, not the config's names, values and their types.

    Contents are the names, values and the values' types, in order (64.0 == 64, but a config
    with BLOCK_M 64.0 must still be refused). The config of the last call, passed again (a
    model passes the same dict every call), skips working them out (~0.5 µs) while it equals the
    copy taken of it: a value or a name changed in place is a new token. Not seen: a value
    replaced in place by an equal one of another type (64 by 64.0), which keeps the token of
    the first (checking the types too would double the ~0.2 µs a config passed again costs).
    Tokens of at most `max_contents` contents are kept (a token forgotten and issued anew only
    plans a key again).
    """

    def __init__(self, max_contents: int = 256) -> None:
        self._tokens: BoundedCache[int] = BoundedCache(max_contents)
        self._next = itertools.count()
        # The last call's config, its copy (None until it was passed twice in a row: a config
        # made anew for every call, a literal dict, is not copied) and its token; one tuple, so
        # that threads never pair one config with another's copy.
        self._last: tuple[Mapping[str, Any] | None, dict[str, Any] | None, int] = (None, None, -1)

    def token(self, config: Mapping[str, Any]) -> int:
        """The token of `config`'s contents: TypeError for a value that cannot be hashed,
        AttributeError for a config that is not a mapping."""
        last, copy, token = self._last
        if config is last and config == copy:
            return token
        values = tuple(config.values())
        contents = (tuple(config), values, tuple(map(type, values)))
        found = self._tokens.get(contents)
        if found is None:
            hash(contents)  # a value that cannot be hashed: TypeError, before a token is issued
            found = next(self._next)
            self._tokens.put(contents, found)
        self._last = (config, dict(config) if config is last else None, found)
        return found


_config_tokens = _ConfigTokens()


def call_key(
    tensors: Sequence[torch.Tensor], config: Mapping[str, Any] | None, *other: Hashable
) -> Hashable | None:
    """The key of an attention call's launch plan, `tensors` its q, k, v and out (ValueError for
    any other number of tensors): their dtype and device, each one's sizes, strides and 16-byte
    alignment (what TMA needs, and what Triton specialises pointers on), the config
    (`_ConfigTokens`), the current CUDA device (where Triton launches and loads kernels) and
    `other`.

    None when an argument is not a tensor, the tensors differ in dtype or device, or the config
    is not a mapping or holds a value that cannot be hashed: the call is planned from scratch,
    and its checks name the argument. One tuple, the four tensors read without a loop: a hit is
    most of a call's host time, and a loop building the key costs ~0.4 µs more (15 % of a hit).
    """
    q, k, v, out = tensors
    try:
        dtype, device = q.dtype, q.device
        if (
            k.dtype is not dtype
            or v.dtype is not dtype
            or out.dtype is not dtype
            or k.device != device
            or v.device != device
            or out.device != device
        ):
            return None
        return (
            dtype,
            device,
            torch._C._cuda_getDevice() if q.is_cuda else -1,
            None if config is None else _config_tokens.token(config),
            *other,
            q.shape,
            q.stride(),
            q.data_ptr() % 16 == 0,
            k.shape,
            k.stride(),
            k.data_ptr() % 16 == 0,
            v.shape,
            v.stride(),
            v.data_ptr() % 16 == 0,
            out.shape,
            out.stride(),
            out.data_ptr() % 16 == 0,
        )
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
    runtime = knobs.runtime
    # Triton 3.6 keeps a HookChain (with its list of calls) where older versions kept None or
    # the hook itself. Attributes, not getattr with a default: half the cost, on every launch.
    try:
        return bool(runtime.launch_enter_hook.calls or runtime.launch_exit_hook.calls)
    except AttributeError:
        return bool(runtime.launch_enter_hook or runtime.launch_exit_hook)


class CompiledLaunch:
    """Launches of one jitted kernel for one call key: `fn`, its grid, constexprs and launch
    options are fixed; each call passes the runtime arguments in the kernel's order, and at each
    position of `descriptors` (a tensor descriptor built for the key, its base dropped) the
    descriptor's base tensor.

    The first call (and every call under the interpreter, or with a launch hook registered) goes
    through `fn[grid](...)`; later calls go straight to the compiled kernel's launch function.
    That is sound only for arguments that specialise the kernel alike, which the call key
    guarantees.
    """

    def __init__(
        self,
        fn: Any,
        grid: tuple[int, ...],
        constexprs: Mapping[str, Any],
        options: Mapping[str, Any],
        device: int,
        descriptors: Mapping[int, Any] | None = None,
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
        self._descriptors = tuple(sorted((descriptors or {}).items()))
        self._interpreted = type(fn).__name__ == "InterpretedFunction"
        # Set by the first launch: what later calls run (given their runtime arguments).
        self._direct: _RawLaunch | _KernelRun | None = None

    @property
    def direct(self) -> _RawLaunch | _KernelRun | None:
        """What calls run after the first on a GPU, called with their runtime arguments (None
        before and under the interpreter)."""
        return self._direct

    def __call__(self, *args: Any) -> None:
        direct = self._direct
        if direct is not None and not _hooked():
            # The method itself: calling the instance looks __call__ up, ~50 ns more a launch.
            direct.__call__(args)
            return
        args = _with_descriptors(args, self._descriptors)
        kernel = self.fn[self.grid](*args, **self.constexprs, **self.options)
        if self._interpreted or kernel is None or direct is not None:
            return
        # An asynchronous compile hands back a future.
        kernel = kernel.result() if hasattr(kernel, "result") else kernel
        stream = functools.partial(driver.active.get_current_stream, self.device)
        self._direct = _raw_launch(
            kernel, self.grid, stream, args, self._tail, self._descriptors
        ) or _KernelRun(kernel, self.grid, stream, self._tail, self._descriptors)


def _with_descriptors(
    args: tuple[Any, ...], descriptors: tuple[tuple[int, Any], ...]
) -> tuple[Any, ...]:
    """`args` with the base at each descriptor position given its template."""
    if not descriptors:
        return args
    bound = list(args)
    for i, template in descriptors:
        bound[i] = rebased(template, bound[i])
    return tuple(bound)


class _KernelRun:
    """A launch through the compiled kernel's `run` (its Triton launcher), as CompiledKernel's
    own runner makes it, without launch metadata and hooks."""

    def __init__(
        self,
        kernel: Any,
        grid: tuple[int, ...],
        stream: Callable[[], int],
        tail: tuple[Any, ...],
        descriptors: tuple[tuple[int, Any], ...],
    ) -> None:
        self._run = kernel.run  # loads the module, if the JIT has not yet
        self._grid, self._stream, self._tail, self._descriptors = grid, stream, tail, descriptors
        # The kernel's handle and packed metadata; no launch metadata and hooks (only hooks
        # read the metadata).
        self._head = (kernel.function, kernel.packed_metadata, None, None, None)

    def __call__(self, args: tuple[Any, ...]) -> None:
        args = _with_descriptors(args, self._descriptors)
        self._run(*self._grid, self._stream(), *self._head, *args, *self._tail)


# What the C launch function of Triton 3.6's CudaLauncher parses before the kernel's arguments:
# grid x/y/z, stream, function, cooperative grid, PDL, global and profile scratch, kernel
# metadata, launch metadata, enter and exit hooks.
_LAUNCH_HEAD_FORMAT = "iiiKKppOOOOOO"


class _RawLaunch:
    """A launch through the C function of Triton 3.6's CudaLauncher, with what its Python
    wrappers would pass it: each tensor as its address (a CUDA tensor's data_ptr is its device
    address, which the C function would otherwise ask the driver for), each descriptor as its
    expansion (`_EncodedDescriptor`); no scratch buffers, launch metadata or hooks."""

    def __init__(
        self,
        launch: Callable[..., Any],
        grid: tuple[int, ...],
        stream: Callable[[], int],
        head: tuple[Any, ...],
        pointers: tuple[int, ...],
        descriptors: tuple[tuple[int, _EncodedDescriptor], ...],
        tail: tuple[Any, ...],
    ) -> None:
        self._launch, self._grid, self._stream, self._head = launch, grid, stream, head
        self._pointers, self._tail = pointers, tail
        # Expanded from the last, so that the positions before stay put.
        self._descriptors = tuple(sorted(descriptors, key=lambda d: d[0], reverse=True))

    def __call__(self, args: tuple[Any, ...]) -> None:
        bound = list(args)
        for i in self._pointers:
            bound[i] = bound[i].data_ptr()
        for i, encoded in self._descriptors:
            bound[i : i + 1] = encoded(bound[i])
        self._launch(*self._grid, self._stream(), *self._head, *bound, *self._tail)


class _EncodedDescriptor:
    """What Triton's launcher passes for one descriptor parameter (Triton's own
    `make_tensordesc_arg`: the encoded TMA descriptor, or the base, then sizes and strides), per
    base address: the layout is the template's, fixed by the call key, so an address seen before
    needs no new encoding. Addresses stand in for the base tensors, which are not kept."""

    def __init__(self, template: Any, meta: Any, expand: Callable[[Any, Any], list[Any]]) -> None:
        self._template, self._meta, self._expand = template, meta, expand
        self._by_address: BoundedCache[list[Any]] = BoundedCache(16)

    def __call__(self, base: torch.Tensor) -> list[Any]:
        address = base.data_ptr()
        found = self._by_address.get(address)
        if found is None:
            expanded = self._expand(rebased(self._template, base), self._meta)
            found = [address if a is base else a for a in expanded]
            self._by_address.put(address, found)
        return found


def _raw_launch(
    kernel: Any,
    grid: tuple[int, ...],
    stream: Callable[[], int],
    args: tuple[Any, ...],
    tail: tuple[Any, ...],
    descriptors: tuple[tuple[int, Any], ...],
) -> _RawLaunch | None:
    """The direct launch of a compiled kernel whose launcher is Triton 3.6's CudaLauncher, laid
    out for the first call's `args` (descriptors bound); None for any other launcher, or one
    that needs scratch memory per launch (it allocates that itself)."""
    try:
        from triton.backends.nvidia import driver as nvidia
    except ImportError:
        return None
    run = kernel.run
    flags = [getattr(run, name, None) for name in ("launch_cooperative_grid", "launch_pdl")]
    if (
        not isinstance(run, nvidia.CudaLauncher)
        or getattr(nvidia, "_BASE_ARGS_FORMAT", None) != _LAUNCH_HEAD_FORMAT
        or getattr(run, "global_scratch_size", 1)
        or getattr(run, "profile_scratch_size", 1)
        or None in flags
    ):
        return None
    signature = list(getattr(getattr(kernel, "src", None), "signature", {}).values())
    if len(signature) != len(args) + len(tail) or not all(isinstance(s, str) for s in signature):
        return None
    launch, meta = run.launch, []
    if getattr(launch, "__closure__", None):
        # wrap_handle_tensordesc's wrapper: it expands descriptors into what `launcher` takes.
        cells = dict(zip(launch.__code__.co_freevars, launch.__closure__, strict=True))
        if "launcher" not in cells or "tensordesc_meta" not in cells:
            return None
        launch, meta = cells["launcher"].cell_contents, cells["tensordesc_meta"].cell_contents
    positions = [i for i, s in enumerate(signature) if s.startswith("tensordesc")]
    expand = getattr(nvidia, "make_tensordesc_arg", None)
    if [i for i, _ in descriptors] != positions or len(meta) != len(positions) or not expand:
        return None
    pointers = tuple(i for i, a in enumerate(args) if isinstance(a, torch.Tensor))
    if not all(signature[i].startswith("*") for i in pointers):
        return None
    head = (
        kernel.function,
        *flags,  # cooperative grid, PDL
        None,  # global scratch
        None,  # profile scratch
        kernel.packed_metadata,
        None,  # launch metadata: only hooks read it
        None,  # enter hook
        None,  # exit hook
    )
    encoded = tuple(
        (i, _EncodedDescriptor(template, meta[n], expand))
        for n, (i, template) in enumerate(descriptors)
    )
    return _RawLaunch(launch, grid, stream, head, pointers, encoded, tail)
