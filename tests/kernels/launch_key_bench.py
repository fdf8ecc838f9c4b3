"""Host µs of what a repeated attention() call does in Python, timed on CPU tensors of the
`small` and `mission` shapes (reading a tensor's attributes costs about the same on a CPU and a
CUDA tensor; `torch._C._cuda_getDevice`, which the key reads for CUDA tensors, is left out):

- key + lookup: the call key and the plan lookup (kernels/launch_cache.py), the cache holding
  the key (a hit, as every call after a model's first), for config=None, for the space's
  default config passed as the same dict every call (what a model and `evotune bench` do) and
  as a new copy every call (the copy's own cost included);
- planned call: the plan of the tl default config, launched with Triton 3.6's C launch function
  stubbed (a no-op): through Triton's Python launcher (CudaLauncher.__call__ and its arguments,
  the path before the direct launch) and through the direct launch;
- attention(): the whole call of a planned key (the same dict config, the stubbed launch), with
  `out` given and with out=None, which allocates it: `torch.empty_like` alone is the last row.

What the stub leaves out (argument parsing, the driver's pointer queries and the launch itself)
only a GPU measures: tests/gpu/launch_breakdown.py.

Each value: the median over `--repeats` batches of `--calls` calls of the time per call.
Usage (repo root): .venv/bin/python tests/kernels/launch_key_bench.py [--calls N] [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import torch

from evotune.kernels import attention as attn
from evotune.kernels.launch_cache import BoundedCache, call_key

SHAPES = {"small": (1, 8, 512, 64), "mission": (32, 8, 512, 64)}  # [B, H, S, D], fp16, causal


def per_call_us(fn: Callable[[], Any], calls: int, repeats: int) -> float:
    """Median over `repeats` batches of the time per call of `calls` calls, in µs."""
    batches = timeit.repeat(fn, number=calls, repeat=repeats)
    return statistics.median(batches) / calls * 1e6


def _inputs(shape: tuple[int, int, int, int]) -> list[torch.Tensor]:
    return [torch.randn(shape, dtype=torch.float16) for _ in range(4)]


def key_and_lookup_us(
    shape: tuple[int, int, int, int], config: dict[str, Any] | None, calls: int, repeats: int
) -> list[float]:
    """Per call: with `config` itself, and (config given) with a new copy of it."""
    q, k, v, out = _inputs(shape)
    plans: BoundedCache[object] = BoundedCache(64)
    plans.put(call_key((q, k, v, out), config, True), object())

    def lookup() -> object:
        return plans.get(call_key((q, k, v, out), config, True))

    def lookup_copy() -> object:
        return plans.get(call_key((q, k, v, out), dict(config or {}), True))

    if lookup() is None or (config and lookup_copy() is None):
        raise RuntimeError("the key of a repeated call missed the cache")
    times = [per_call_us(lookup, calls, repeats)]
    if config:
        times.append(per_call_us(lookup_copy, calls, repeats))
    return times


def _c_launch_stub(*args: Any) -> None:
    """Stands in for the C launch function that Triton generates for a kernel."""


class _StandInJit:
    """Stands in for the kernel's JITFunction: a launch hands back `kernel`, compiles nothing."""

    def __init__(self, arg_names: list[str], kernel: Any) -> None:
        self.arg_names, self.kernel = arg_names, kernel

    def __getitem__(self, grid: Any) -> Callable[..., Any]:
        return lambda *args, **kwargs: self.kernel


class _NoGpu:
    """Triton's active driver without a GPU: stream 0."""

    def get_current_stream(self, device: int) -> int:
        return 0


@contextmanager
def _stand_in_plan(shape: tuple[int, int, int, int]) -> Iterator[tuple[Any, Any, list[Any]]]:
    """The plan of the tl default config for CPU tensors of `shape`, launched once (through the
    stand-in JIT; then directly, into the stub), its kernel and the call's tensors."""
    from triton.backends.nvidia import driver as nvidia
    from triton.runtime import driver

    q, k, v, out = _inputs(shape)
    B, H, S, D = shape
    cfg = attn.resolve_config(None)
    call = attn._TritonCall(q, k, v, out, attn._Shape(B, H, H, S, S, D), True, cfg)
    launch = call._launch
    # A compiled kernel whose launcher is a CudaLauncher (not compiled) over the stub.
    launcher = object.__new__(nvidia.CudaLauncher)
    launcher.__dict__.update(
        num_ctas=1,
        launch=_c_launch_stub,
        global_scratch_size=0,
        global_scratch_align=1,
        profile_scratch_size=0,
        profile_scratch_align=1,
        launch_cooperative_grid=False,
        launch_pdl=False,
    )
    names = list(launch.fn.arg_names)
    types = ["*fp16"] * 4 + ["i32"] * 24 + ["fp32"] + ["constexpr"] * len(launch.constexprs)
    kernel = SimpleNamespace(
        run=launcher,
        function=0,
        packed_metadata=(cfg["num_warps"], 1, 0),
        src=SimpleNamespace(signature=dict(zip(names, types, strict=True))),
    )
    launch.fn = _StandInJit(names, kernel)
    active, driver._active = driver._active, _NoGpu()
    try:
        call(q, k, v, out, 1 / D**0.5)  # through the stand-in JIT; then directly
        assert type(launch.direct).__name__ == "_RawLaunch", launch.direct
        yield call, kernel, [q, k, v, out]
    finally:
        driver._active = active


def planned_call_us(shape: tuple[int, int, int, int], calls: int, repeats: int) -> list[float]:
    """Host µs per planned call of the tl default config (Triton's C launch stubbed), through
    Triton's Python launcher and through the direct launch."""
    from evotune.kernels import launch_cache

    with _stand_in_plan(shape) as (call, kernel, (q, k, v, out)):
        scale = 1 / shape[3] ** 0.5
        direct = per_call_us(lambda: call(q, k, v, out, scale), calls, repeats)
        launch = call._launch
        launch._direct = launch_cache._KernelRun(
            kernel, launch.grid, lambda: 0, launch._tail, launch._descriptors
        )
        through_triton = per_call_us(lambda: call(q, k, v, out, scale), calls, repeats)
    return [through_triton, direct]


def attention_us(shape: tuple[int, int, int, int], calls: int, repeats: int) -> list[float]:
    """Host µs per attention() call of a planned key (the stubbed direct launch), with `out`
    given and with out=None; then torch.empty_like alone."""
    config = dict(attn.DEFAULT_CONFIG)
    with _stand_in_plan(shape) as (call, _, (q, k, v, out)):
        planned_call, attn._planned_call = attn._planned_call, lambda *args: call
        plans, attn._CALLS = attn._CALLS, BoundedCache(64)
        try:
            attn.attention(q, k, v, causal=True, config=config, out=out)  # plans the key
            given = per_call_us(
                lambda: attn.attention(q, k, v, causal=True, config=config, out=out),
                calls,
                repeats,
            )
            allocated = per_call_us(
                lambda: attn.attention(q, k, v, causal=True, config=config), calls, repeats
            )
            if len(attn._CALLS) != 1:
                raise RuntimeError("a repeated attention() call was planned anew")
        finally:
            attn._planned_call, attn._CALLS = planned_call, plans
    return [given, allocated, per_call_us(lambda: torch.empty_like(q), calls, repeats)]


ROWS = (
    "key+lookup, config=None",
    "key+lookup, config=same dict",
    "key+lookup, config=new copy",
    "planned call, Triton launcher",
    "planned call, direct",
    "attention(), out given",
    "attention(), out=None",
    "torch.empty_like(q)",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    columns: dict[str, list[float]] = {}
    for name, shape in SHAPES.items():
        columns[name] = [
            *key_and_lookup_us(shape, None, args.calls, args.repeats),
            *key_and_lookup_us(shape, dict(attn.DEFAULT_CONFIG), args.calls, args.repeats),
            *planned_call_us(shape, args.calls, args.repeats),
            *attention_us(shape, args.calls, args.repeats),
        ]
    print(f"torch {torch.__version__}; µs per call, median of {args.repeats} x {args.calls} calls")
    print(f"{'':<32}" + "".join(f"{name:>10}" for name in columns))
    for i, row in enumerate(ROWS):
        print(f"{row:<32}" + "".join(f"{values[i]:>10.2f}" for values in columns.values()))


if __name__ == "__main__":
    main()
