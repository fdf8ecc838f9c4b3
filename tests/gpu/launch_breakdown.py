"""Where the host time of an attention call goes, layer by layer (run by tests/gpu/launch_cost.sh).

For a planned call (kernels/launch_cache.py) at `small` (the default config) and `stage1` (`g3`),
host µs per call (enqueue time of 200 calls, median of 5) of: the whole `attention()` call; its
call key and the cache lookup alone; the planned call alone (descriptors rebased, arguments bound, the launch); the
compiled kernel's launcher alone (Triton's CudaLauncher and its C launch); and, for comparison,
the same launch through Triton's JIT (`kernel[grid](...)`), which every call paid before.
Usage (repo root, on a GPU host): PYTHONPATH=. python3 tests/gpu/launch_breakdown.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from evotune.kernels import attention as attn
from evotune.kernels.launch_cache import CompiledLaunch, call_key

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
CASES: dict[str, tuple[tuple[int, int, int, int], dict[str, Any] | None]] = {
    "small default": ((1, 8, 512, 64), None),
    "stage1 g3": ((16, 16, 2048, 64), G3),
}


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


def breakdown(shape: tuple[int, int, int, int], config: dict[str, Any] | None) -> list[float]:
    """Host µs per call of each layer of one planned call (see the module doc)."""
    B, H, S, D = shape
    q, k, v = (torch.randn(B, H, S, D, device="cuda", dtype=torch.float16) for _ in range(3))
    out = torch.empty_like(q)
    scale = 1 / D**0.5
    for _ in range(2):  # plans and compiles; then launches directly
        attn.attention(q, k, v, causal=True, config=config, out=out)
    call = attn._CALLS.get(call_key((q, k, v, out), config, True))
    assert call is not None
    launch: CompiledLaunch = call._launch  # type: ignore[attr-defined]
    seen: list[tuple[Any, ...]] = []
    call._launch = lambda *args: seen.append(args)  # type: ignore[attr-defined]
    call(q, k, v, out, scale)
    call._launch = launch  # type: ignore[attr-defined]
    args = seen[0]
    g0, g1, g2 = launch.grid
    stream = launch._stream(launch.device)

    def raw_launch() -> None:
        launch._run(
            g0, g1, g2, stream, launch._function, launch._metadata, None, None, None,
            *args, *launch._tail,
        )  # fmt: skip

    def through_jit() -> None:
        launch.fn[launch.grid](*args, **launch.constexprs, **launch.options)

    return [
        host_us(lambda: attn.attention(q, k, v, causal=True, config=config, out=out)),
        host_us(lambda: attn._CALLS.get(call_key((q, k, v, out), config, True))),
        host_us(lambda: call(q, k, v, out, scale)),
        host_us(raw_launch),
        host_us(through_jit),
    ]


def main() -> None:
    print(torch.cuda.get_device_name(0))
    header = ("case", "attention()", "key + lookup", "planned call", "launcher", "via JIT")
    print(f"{header[0]:<16}" + "".join(f"{h:>14}" for h in header[1:]) + "   (host µs/call)")
    for name, (shape, config) in CASES.items():
        values = breakdown(shape, config)
        print(f"{name:<16}" + "".join(f"{v:>14.1f}" for v in values))


if __name__ == "__main__":
    main()
