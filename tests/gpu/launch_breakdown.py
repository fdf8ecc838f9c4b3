"""Where the host time of an attention call goes, layer by layer (run by tests/gpu/launch_cost.sh).

For a planned call (kernels/launch_cache.py), host µs per call (enqueue time of 200 calls, median
of 5) of each layer, outermost first:

- attention(): the whole call, as a model makes it (target: <= 15 µs);
- key + lookup: its call key and the plan cache lookup;
- planned call: the plan's launch (arguments bound, the direct launch);
- direct launch: CompiledLaunch's launch alone (tensors to addresses, descriptors to their
  encodings, cached per base, and the C launch);
- C launch: Triton's C launch function alone, its arguments bound (the floor of the path);
- rest: attention() less key + lookup and planned call (the scale, the output check);

and, for comparison, what the direct launch replaced: Triton's launcher (CompiledKernel.run: its
Python wrapper, the descriptors encoded on every call, a driver query per tensor) and Triton's
JIT (`kernel[grid](...)`, which every call paid before plans). `check` compares the direct
launch's output with the float32 reference, on the timed tensors and on new ones (new bases:
descriptors encoded anew). Cases: the default (tl) config at `small` and `mission`; on Hopper
also the tl TMA path at `small` and the Gluon `g3` config at `stage1`.
Usage (repo root, on a GPU host): PYTHONPATH=. python3 tests/gpu/launch_breakdown.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from evotune.kernels import attention as attn
from evotune.kernels.launch_cache import CompiledLaunch, call_key, rebased

G3 = {
    "impl": "gluon",
    "PRODUCER_WARPS": 1,
    "TILE_ORDER": 1,
    "CTA_MULT": 1,
    "PRODUCER_REGS": 24,
    "CONSUMER_WGS": 3,
    "BLOCK_M": 192,
    "BLOCK_N": 128,
    "KV_STAGES": 3,
}
SMALL, MISSION, STAGE1 = (1, 8, 512, 64), (32, 8, 512, 64), (16, 16, 2048, 64)
# name: ([B, H, S, D], config, needs Hopper)
CASES: dict[str, tuple[tuple[int, int, int, int], dict[str, Any] | None, bool]] = {
    "small default": (SMALL, None, False),
    "mission default": (MISSION, None, False),
    "small tl TMA": (SMALL, {"TMA": True}, True),
    "stage1 gluon g3": (STAGE1, G3, True),
}
COLUMNS = (
    "attention()",
    "key+lookup",
    "planned call",
    "direct launch",
    "C launch",
    "rest",
    "Triton launcher",
    "via JIT",
)


def host_us(fn: Callable[[], Any], calls: int = 200, repeats: int = 5) -> float:
    """Median over `repeats` of the enqueue time of `calls` calls, per call."""
    samples = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - t0) / calls * 1e6)
    torch.cuda.synchronize()
    return statistics.median(samples)


def _inputs(shape: tuple[int, int, int, int], seed: int) -> list[torch.Tensor]:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    return [
        torch.randn(shape, generator=gen, device="cuda", dtype=torch.float32).half()
        for _ in range(3)
    ]


def _check(out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> float:
    """The largest error against the float32 reference (causal, default scale)."""
    ref = attn.reference({"q": q, "k": k, "v": v, "causal": True, "sm_scale": None})
    return float((out.float() - ref).abs().max())


def breakdown(
    shape: tuple[int, int, int, int], config: dict[str, Any] | None
) -> tuple[list[float | None], str, str]:
    """Host µs per call of each layer (see the module doc), the direct launch's kind, and the
    output check."""
    q, k, v = _inputs(shape, 0)
    out = torch.empty_like(q)
    scale = 1 / shape[3] ** 0.5
    for _ in range(2):  # plans and compiles; then launches directly
        attn.attention(q, k, v, causal=True, config=config, out=out)
    call = attn._CALLS.get(call_key((q, k, v, out), config, True))
    assert call is not None
    launch: CompiledLaunch = call._launch  # type: ignore[attr-defined]
    direct = launch.direct
    assert direct is not None, "no direct launch after the first call"
    seen: list[tuple[Any, ...]] = []
    call._launch = lambda *args: seen.append(args)  # type: ignore[attr-defined]
    call(q, k, v, out, scale)
    call._launch = launch  # type: ignore[attr-defined]
    args = seen[0]
    templates = dict(launch._descriptors)  # what the JIT gets: descriptors over the bases
    jit_args = tuple(rebased(templates[i], a) if i in templates else a for i, a in enumerate(args))
    kernel = launch.fn[launch.grid](*jit_args, **launch.constexprs, **launch.options)
    stream = torch.cuda.current_stream().cuda_stream
    head = (kernel.function, kernel.packed_metadata, None, None, None)

    def tritons_launcher() -> None:
        kernel.run(*launch.grid, stream, *head, *jit_args, *launch._tail)

    def through_jit() -> None:
        launch.fn[launch.grid](*jit_args, **launch.constexprs, **launch.options)

    c_launch: Callable[[], Any] | None = None
    c_function = getattr(direct, "_launch", None)
    if c_function is not None:  # a _RawLaunch: capture the C function's arguments of a call
        c_args: list[tuple[Any, ...]] = []
        direct._launch = lambda *a: c_args.append(a)  # type: ignore[attr-defined]
        direct(args)
        direct._launch = c_function  # type: ignore[attr-defined]
        c_launch = lambda: c_function(*c_args[0])  # noqa: E731

    times: list[float | None] = [
        host_us(lambda: attn.attention(q, k, v, causal=True, config=config, out=out)),
        host_us(lambda: attn._CALLS.get(call_key((q, k, v, out), config, True))),
        host_us(lambda: call(q, k, v, out, scale)),
        host_us(lambda: direct(args)),
        host_us(c_launch) if c_launch else None,
    ]
    total, key, planned = times[0], times[1], times[2]
    assert total is not None and key is not None and planned is not None
    times += [total - key - planned, host_us(tritons_launcher), host_us(through_jit)]

    errors = [_check(attn.attention(q, k, v, causal=True, config=config), q, k, v)]
    q2, k2, v2 = _inputs(shape, 1)
    errors.append(_check(attn.attention(q2, k2, v2, causal=True, config=config), q2, k2, v2))
    check = "ok" if max(errors) < 1e-2 else "WRONG"
    return times, type(direct).__name__, f"{check} (max error {max(errors):.1e})"


def main() -> None:
    import triton

    props = torch.cuda.get_device_properties(0)
    hopper = (props.major, props.minor) == (9, 0)
    print(f"{props.name}, torch {torch.__version__}, triton {triton.__version__}")
    print(f"{'case':<17}" + "".join(f"{c:>16}" for c in COLUMNS) + "   (host µs/call)")
    for name, (shape, config, needs_hopper) in CASES.items():
        if needs_hopper and not hopper:
            print(f"{name:<17}skipped: needs Hopper (sm_90)")
            continue
        times, kind, check = breakdown(shape, config)
        cells = "".join(f"{t:>16.1f}" if t is not None else f"{'-':>16}" for t in times)
        target = "meets" if times[0] is not None and times[0] <= 15 else "misses"
        print(f"{name:<17}{cells}   {kind}; {target} <= 15 µs; check {check}")


if __name__ == "__main__":
    main()
