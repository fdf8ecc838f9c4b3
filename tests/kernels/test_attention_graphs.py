"""Both attention implementations on a CUDA GPU as models call them: repeated calls that reuse a
planned launch (kernels/launch_cache.py), and CUDA graph capture and replay with new data copied
into the captured inputs, against the float32 reference; `evotune bench`'s launch-cost columns.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.gpu

# The tl-level kernel's paths (pointers, descriptors, persistent, warp-specialized) and the
# Gluon kernel's (persistent with a tile table, and one CTA a tile).
CONFIGS: dict[str, dict[str, Any]] = {
    "triton": {},
    "triton_tma": {"TMA": True},
    "triton_persistent": {"CTA_MULT": 1, "TMA": True},
    "triton_ws": {"BLOCK_M": 128, "num_warps": 8, "TMA": True, "WARP_SPECIALIZE": True},
    "gluon_g3": {
        "impl": "gluon",
        "BLOCK_M": 192,
        "BLOCK_N": 128,
        "CONSUMER_WGS": 3,
        "KV_STAGES": 3,
        "CTA_MULT": 1,
        "TILE_ORDER": 1,
    },
    "gluon_persistent": {
        "impl": "gluon",
        "BLOCK_M": 128,
        "BLOCK_N": 128,
        "CONSUMER_WGS": 2,
        "CTA_MULT": 1,
        "TILE_ORDER": 1,
    },
    "gluon_tile_a_cta": {"impl": "gluon", "BLOCK_M": 128, "BLOCK_N": 64, "CONSUMER_WGS": 2},
}
# (B, H, S, D, causal)
SHAPES: dict[str, tuple[int, int, int, int, bool]] = {
    "causal_d64": (2, 4, 512, 64, True),
    "odd_d128": (1, 3, 1000, 128, False),
}
TOL = {torch.float16: 1e-2, torch.bfloat16: 2e-2}


def _device_info() -> Any:
    from evotune.plugin import DeviceInfo

    props = torch.cuda.get_device_properties(0)
    return DeviceInfo(
        interpreted=False,
        name=props.name,
        capability=(props.major, props.minor),
        sm_count=props.multi_processor_count,
    )


def _skip_unsupported(config: dict[str, Any], B: int, H: int, S: int, D: int, causal: bool) -> None:
    from evotune.kernels import attention as attn

    dims = {"B": B, "H": H, "S": S, "D": D, "causal": causal, "dtype": "float16"}
    reason = attn.unsupported(config, dims, _device_info())
    if reason:
        pytest.skip(reason)


def _randn(*shape: int, seed: int, dtype: torch.dtype = torch.float16) -> torch.Tensor:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randn(shape, generator=gen, device="cuda", dtype=torch.float32).to(dtype)


def _check(
    out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool
) -> None:
    from evotune.kernels import attention as attn

    ref = attn.reference({"q": q, "k": k, "v": v, "causal": causal, "sm_scale": None})
    tol = TOL[out.dtype]
    assert not torch.isnan(out).any(), "NaN in the output (unwritten?)"
    torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol)


def _warm_up(fn: Any) -> None:
    """One call on a side stream before capturing, as torch's CUDA graph docs ask (it also
    plans the launch: a first call inside a capture is refused)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()


@pytest.fixture(autouse=True)
def fresh_plans() -> Iterator[None]:
    """Every test plans its own launches (and what it captured stays held for its graphs)."""
    from evotune.kernels import attention as attn
    from evotune.kernels import attention_gluon

    attn._CALLS.clear()
    attention_gluon._CALLS.clear()
    yield


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_replay_with_new_inputs_matches_reference(name: str, shape: str) -> None:
    from evotune.kernels import attention as attn

    B, H, S, D, causal = SHAPES[shape]
    config = CONFIGS[name]
    _skip_unsupported(config, B, H, S, D, causal)
    q, k, v = (_randn(B, H, S, D, seed=i) for i in range(3))
    out = torch.empty_like(q)

    def call() -> None:
        attn.attention(q, k, v, causal=causal, config=config, out=out)

    _warm_up(call)
    _check(out, q, k, v, causal)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    for seed in (10, 20):
        for i, t in enumerate((q, k, v)):
            t.copy_(_randn(B, H, S, D, seed=seed + i))
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        _check(out, q, k, v, causal)


@pytest.mark.parametrize("name", ["triton", "triton_tma", "gluon_persistent"])
def test_an_output_allocated_inside_the_capture_is_the_graphs_output(name: str) -> None:
    from evotune.kernels import attention as attn

    B, H, S, D, causal = 1, 4, 640, 128, True
    config = CONFIGS[name]
    _skip_unsupported(config, B, H, S, D, causal)
    q, k, v = (_randn(B, H, S, D, seed=i) for i in range(3))
    _warm_up(lambda: attn.attention(q, k, v, causal=causal, config=config))
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = attn.attention(q, k, v, causal=causal, config=config)
    q.copy_(_randn(B, H, S, D, seed=7))
    graph.replay()
    torch.cuda.synchronize()
    _check(static_out, q, k, v, causal)


@pytest.mark.parametrize("config", [{}, {"TMA": True}])
def test_grouped_heads_and_a_cached_prefix_replay(config: dict[str, Any]) -> None:
    """q [1, 8, 100, 64] against k/v [1, 2, 300, 64], causal (bottom-right), in a graph."""
    from evotune.kernels import attention as attn

    q = _randn(1, 8, 100, 64, seed=1)
    k, v = _randn(1, 2, 300, 64, seed=2), _randn(1, 2, 300, 64, seed=3)
    out = torch.empty_like(q)

    def call() -> None:
        attn.attention(q, k, v, causal=True, config=config, out=out)

    _warm_up(call)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    k.copy_(_randn(1, 2, 300, 64, seed=4))
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    _check(out, q, k, v, True)


def test_gluon_replays_non_contiguous_inputs_through_copies() -> None:
    """Operands a descriptor cannot address are copied inside the captured call; so is O."""
    from evotune.kernels import attention as attn

    config = CONFIGS["gluon_persistent"]
    B, H, S, D = 2, 4, 300, 64
    _skip_unsupported(config, B, H, S, D, True)
    q = _randn(B, S, H, D, seed=1).transpose(1, 2)  # [B, S, H, D] storage
    k, v = _randn(B, H, S, D, seed=2), _randn(B, H, S, D, seed=3)
    out = torch.empty(B, S, H, D, device="cuda", dtype=torch.float16).transpose(1, 2)

    def call() -> None:
        attn.attention(q, k, v, causal=True, config=config, out=out)

    _warm_up(call)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    q.copy_(_randn(B, S, H, D, seed=5).transpose(1, 2))
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    _check(out, q, k, v, True)


def test_a_first_call_inside_a_capture_is_refused_with_a_reason() -> None:
    from evotune.kernels import attention as attn

    q, k, v = (_randn(1, 2, 333, 64, seed=i) for i in range(3))
    refused = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="before capturing"), torch.cuda.graph(refused):
        attn.attention(q, k, v, causal=True)
    # Nothing broke: the same call runs eagerly, and after that captures.
    _check(attn.attention(q, k, v, causal=True), q, k, v, True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = attn.attention(q, k, v, causal=True)
    graph.replay()
    torch.cuda.synchronize()
    _check(out, q, k, v, True)


def test_a_captured_tile_table_outlives_its_plan() -> None:
    """The persistent Gluon kernel reads its tile table at every replay: evicting the plan (and
    the table cache) must not free it while a graph still reads it."""
    from evotune.kernels import attention as attn
    from evotune.kernels import attention_gluon
    from evotune.kernels.tile_schedule import schedule_tensor

    config = CONFIGS["gluon_persistent"]
    B, H, S, D = 4, 8, 1024, 128
    _skip_unsupported(config, B, H, S, D, True)
    q, k, v = (_randn(B, H, S, D, seed=i) for i in range(3))
    out = torch.empty_like(q)

    def call() -> None:
        attn.attention(q, k, v, causal=True, config=config, out=out)

    _warm_up(call)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    attn._CALLS.clear()
    attention_gluon._CALLS.clear()
    schedule_tensor.cache_clear()
    gc.collect()
    torch.cuda.empty_cache()
    junk = [torch.full((n,), -1, dtype=torch.int32, device="cuda") for n in (64, 4096, 1 << 16)]
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    _check(out, q, k, v, True)
    del junk


class _CountingJit:
    """A jitted kernel whose JIT launches are counted (the direct launches bypass it)."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.arg_names, self.jit_launches = fn, fn.arg_names, 0

    def __getitem__(self, grid: Any) -> Any:
        self.jit_launches += 1
        return self.fn[grid]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_direct_launches_compute_what_the_jit_launch_did(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evotune.kernels import _gluon_attention_kernel
    from evotune.kernels import attention as attn
    from evotune.kernels.launch_cache import call_key

    config = CONFIGS[name]
    B, H, S, D, causal = SHAPES["causal_d64"]
    _skip_unsupported(config, B, H, S, D, causal)
    if config.get("impl") == "gluon":
        counting = _CountingJit(_gluon_attention_kernel.gluon_attn_fwd)
        monkeypatch.setattr(_gluon_attention_kernel, "gluon_attn_fwd", counting)
    else:
        counting = _CountingJit(attn.attn_fwd_kernel)
        monkeypatch.setattr(attn, "attn_fwd_kernel", counting)
    q, k, v = (_randn(B, H, S, D, seed=i) for i in range(3))
    first = attn.attention(q, k, v, causal=causal, config=config)
    second = attn.attention(q, k, v, causal=causal, config=config)
    out = torch.full_like(q, float("nan"))
    attn.attention(q, k, v, causal=causal, config=config, out=out)
    # New tensors of the same layout: the same plan, new addresses (descriptors encoded anew).
    q2, k2, v2 = (_randn(B, H, S, D, seed=i) for i in range(3, 6))
    other = attn.attention(q2, k2, v2, causal=causal, config=config)
    torch.cuda.synchronize()
    assert counting.jit_launches == 1 and len(attn._CALLS) == 1
    assert torch.equal(first, second) and torch.equal(first, out)
    _check(first, q, k, v, causal)
    _check(other, q2, k2, v2, causal)
    plan = attn._CALLS.get(call_key((q2, k2, v2, other), config, causal))
    if _tritons_launcher_is_36():
        # The direct launch calls Triton's C launch function itself (kernels/launch_cache.py).
        assert type(plan._launch.direct).__name__ == "_RawLaunch"


def _tritons_launcher_is_36() -> bool:
    from triton.backends.nvidia import driver as nvidia

    return getattr(nvidia, "_BASE_ARGS_FORMAT", None) == "iiiKKppOOOOOO"


def test_the_direct_launch_costs_the_host_less_than_the_jit() -> None:
    """Host time per call (enqueue, 100 calls) of a planned call, with and without a launch
    hook registered (a hook sends every launch through Triton's JIT)."""
    from triton import knobs

    from evotune.kernels import attention as attn
    from evotune.worker.launch_cost import wall_per_call

    q, k, v = (_randn(1, 8, 512, 64, seed=i) for i in range(3))
    out = torch.empty_like(q)

    def call() -> None:
        attn.attention(q, k, v, causal=True, out=out)

    direct = wall_per_call(call)

    def hook(metadata: Any) -> None:
        pass

    knobs.runtime.launch_enter_hook.add(hook)
    try:
        through_jit = wall_per_call(call)
    finally:
        knobs.runtime.launch_enter_hook.remove(hook)
    print(f"host µs/call: direct {direct.host_us:.1f}, through the JIT {through_jit.host_us:.1f}")
    assert direct.host_us < 0.8 * through_jit.host_us


def test_bench_rows_carry_wall_host_and_graph_times() -> None:
    from evotune.bench import bench_dims
    from evotune.kernels import attention as attn

    dims = {"B": 1, "H": 8, "S": 512, "D": 64, "causal": True, "dtype": "float16"}
    rows = bench_dims(attn, dims, {"default": {}}, tolerance={"atol": 1e-2, "rtol": 1e-2})
    kernel = rows[0]
    assert kernel.p50_us and kernel.error is None, kernel
    assert kernel.wall_us_per_call and kernel.host_us_per_call and kernel.graph_us_per_call
    assert kernel.graph_error is None
    for row in rows[1:]:
        if row.p50_us:  # a backend SDPA runs here
            assert row.wall_us_per_call and row.host_us_per_call
            assert row.graph_us_per_call or row.graph_error
