"""The split-KV (flash-decoding) attention of `impl: decode` (kernels/attention_decode.py).

CPU tests run the kernels through Triton's interpreter (tiny sizes, fp16/fp32) against float64
attention with the grouped K/V heads expanded; an ahead-of-time compile for sm_90a checks the
code a Hopper launch would run. The `gpu` tests (fp16 and bf16 at the named decode shapes, CUDA
graph capture and replay) print one table at the end of the module; nothing here has run on a
GPU yet. tests/gpu/decode_bench.py times the decode configs against SDPA.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import yaml

from evotune.kernels import attention as attn
from evotune.kernels import attention_decode as decode
from evotune.plugin import DeviceInfo
from tests.kernels.aot import ROOT, run_script
from tests.kernels.model_calls import TOLERANCES, check, qkv, reference

SPACE: dict[str, Any] = yaml.safe_load((ROOT / "search_spaces" / "attention.yaml").read_text())
CPU = DeviceInfo(interpreted=True, name="interpreter")
HOPPER = DeviceInfo(interpreted=False, name="NVIDIA H100", capability=(9, 0), sm_count=132)

interpreter_only = pytest.mark.skipif(
    torch.cuda.is_available(), reason="CPU interpreter tests (the GPU runs real kernels)"
)


def _decode(**knobs: Any) -> dict[str, Any]:
    return {"impl": "decode", **knobs}


F16, F32 = torch.float16, torch.float32
CASES: list[tuple[int, int, int, int, int, int, bool, torch.dtype, dict[str, Any]]] = [
    # B, H, Hkv, Sq, Skv, D, causal, dtype, config
    (2, 2, 2, 1, 64, 32, False, F32, _decode(KV_SPLITS=1, BLOCK_N=16)),  # MHA, one split
    (2, 8, 2, 1, 100, 32, False, F16, _decode(KV_SPLITS=4, BLOCK_N=16)),  # GQA, key tail
    (1, 4, 1, 1, 77, 16, True, F32, _decode(KV_SPLITS=3, BLOCK_N=32)),  # MQA, causal (a no-op)
    (1, 8, 2, 1, 90, 64, False, F16, _decode(BLOCK_N=16)),  # KV_SPLITS=0: from the SM count
    # Sq = 3: the rows are 4 heads x 3 queries; causal rows see different key ranges, and the
    # last of 5 splits (BLOCK_N 16, Skv 65) holds key 64 only, which queries 0 and 1 do not see.
    (1, 8, 2, 3, 65, 16, True, F32, _decode(KV_SPLITS=8, BLOCK_N=16)),
    (2, 4, 4, 3, 50, 32, True, F16, _decode(KV_SPLITS=2, BLOCK_N=16)),  # MHA, causal
    (1, 6, 3, 3, 40, 16, False, F16, _decode(KV_SPLITS=64, BLOCK_N=32)),  # 64 splits of 2 blocks
    # 32 heads x 3 queries = 96 rows of one K/V head: two row tiles of 64.
    (1, 32, 1, 3, 48, 16, True, F32, _decode(KV_SPLITS=2, BLOCK_N=16)),
]


@interpreter_only
@pytest.mark.parametrize(("B", "H", "Hkv", "Sq", "Skv", "D", "causal", "dtype", "config"), CASES)
def test_matches_float64_attention(
    B: int,
    H: int,
    Hkv: int,
    Sq: int,
    Skv: int,
    D: int,
    causal: bool,
    dtype: torch.dtype,
    config: dict[str, Any],
) -> None:
    q, k, v = qkv(B, H, Hkv, Sq, Skv, D, dtype, seed=H + Skv)
    out = torch.full_like(q, float("nan"))
    attn.attention(q, k, v, causal=causal, config=config, out=out)
    check(out, reference(q, k, v, causal))


@interpreter_only
def test_more_splits_than_key_blocks_launches_no_empty_split() -> None:
    """KV_SPLITS 32 over 5 key blocks: the grid holds the 5 non-empty splits, and no NaN."""
    q, k, v = qkv(1, 4, 2, 1, 70, 16, F32)
    plan = decode.decode_plan(1, 4, 2, 1, 70, 16, decode.resolve_decode_config(
        {"KV_SPLITS": 32, "BLOCK_N": 16}), 4)  # fmt: skip
    assert (plan.splits, plan.blocks_per_split, plan.split_grid) == (5, 1, (2 * 5,))
    out = attn.attention(q, k, v, config=_decode(KV_SPLITS=32, BLOCK_N=16))
    check(out, reference(q, k, v, False))


@interpreter_only
def test_splits_agree_with_one_split() -> None:
    q, k, v = qkv(1, 4, 2, 2, 96, 32, F32, seed=7)
    one = attn.attention(q, k, v, causal=True, config=_decode(KV_SPLITS=1, BLOCK_N=16))
    for splits in (2, 3, 6):
        many = attn.attention(q, k, v, causal=True, config=_decode(KV_SPLITS=splits, BLOCK_N=16))
        torch.testing.assert_close(many, one, atol=1e-5, rtol=1e-5)


@interpreter_only
def test_grouped_heads_read_their_own_kv_head() -> None:
    """Guards the cases above against a kernel that reads K/V head 0 for every group."""
    q, k, v = qkv(1, 4, 2, 1, 32, 16, F32, seed=3)
    config = _decode(KV_SPLITS=2, BLOCK_N=16)
    out = attn.attention(q, k, v, config=config)
    swapped = attn.attention(q, k[:, [1, 0]], v[:, [1, 0]], config=config)
    assert (out[:, :2] - swapped[:, :2]).abs().max() > 0.1
    for h in range(4):
        kv = slice(h // 2, h // 2 + 1)
        alone = attn.attention(q[:, h : h + 1], k[:, kv], v[:, kv], config=config)
        torch.testing.assert_close(out[:, h : h + 1], alone, atol=1e-6, rtol=1e-6)


@interpreter_only
@pytest.mark.parametrize("splits", [1, 4])
def test_non_contiguous_inputs(splits: int) -> None:
    """k/v: the first Skv rows of a longer KV cache; q: [B, Sq, H, D] storage seen as
    [B, H, Sq, D]; out: a column slice of a wider buffer that must stay untouched."""
    B, H, Hkv, Sq, Skv, D = 2, 4, 2, 2, 37, 32
    gen = torch.Generator().manual_seed(11)
    cache_k = torch.randn(B, Hkv, 64, D, generator=gen).half()
    cache_v = torch.randn(B, Hkv, 64, D, generator=gen).half()
    k, v = cache_k[:, :, :Skv], cache_v[:, :, :Skv]
    q = torch.randn(B, Sq, H, D, generator=gen).half().transpose(1, 2)
    wide = torch.full((B, H, Sq, 2 * D), float("nan"), dtype=F16)
    out = wide[..., :D]
    config = _decode(KV_SPLITS=splits, BLOCK_N=16)
    attn.attention(q, k, v, causal=True, sm_scale=0.3, config=config, out=out)
    check(out, reference(q, k, v, True, 0.3))
    assert torch.isnan(wide[..., D:]).all()


# --- plans ---------------------------------------------------------------------------------


def _plan(dims: dict[str, Any], **knobs: Any) -> decode.DecodePlan:
    launch = decode.resolve_decode_config(knobs)
    sizes = (dims["B"], dims["H"], dims["Hkv"], dims["S"], dims["Skv"], dims["D"])
    return decode.decode_plan(*sizes, launch, 132)


def test_plan_at_the_named_decode_shapes() -> None:
    shapes = SPACE["shapes"]
    # decode: 4 query heads x 1 query per K/V head, padded to 16 rows; 512 (batch, K/V head)
    # pairs, fewer than 4 a SM: KV_SPLITS=0 takes 2 splits.
    plan = _plan(shapes["decode"])
    assert (plan.block_m, plan.num_m, plan.splits, plan.split_grid) == (16, 1, 2, (1024,))
    assert plan.scratch_numel == 64 * 32 * 2 * (128 + 1)
    # decode-long: 64 pairs: 16 splits of 2048 keys.
    plan = _plan(shapes["decode-long"], BLOCK_N=64)
    assert (plan.splits, plan.blocks_per_split, plan.split_grid) == (16, 32, (1024,))
    assert _plan(shapes["decode-long"], KV_SPLITS=1).scratch_numel == 0


def test_splits_are_whole_key_blocks_and_never_empty() -> None:
    dims = {"B": 1, "H": 4, "Hkv": 1, "S": 1, "Skv": 64 * 64, "D": 64}
    # 64 blocks in 12 splits: 6 blocks a split leave 11 splits (a 12th would hold nothing).
    plan = _plan(dims, KV_SPLITS=12, BLOCK_N=64)
    assert (plan.blocks_per_split, plan.splits) == (6, 11)
    assert _plan(dims, KV_SPLITS=16, BLOCK_N=64).splits == 16
    assert _plan({**dims, "Skv": 65}, KV_SPLITS=64, BLOCK_N=64).splits == 2  # 2 blocks


def test_rows_per_program_are_capped_by_the_accumulator() -> None:
    dims = {"B": 1, "H": 64, "Hkv": 1, "S": 4, "Skv": 1024, "D": 256}
    assert (_plan(dims).block_m, _plan(dims).num_m) == (32, 8)  # 256 rows x D 256
    assert _plan({**dims, "D": 128}).block_m == 64


@pytest.mark.parametrize(
    ("programs", "key_blocks", "expected"), [(512, 64, 2), (64, 512, 16), (4, 3, 2), (600, 64, 1)]
)
def test_auto_splits(programs: int, key_blocks: int, expected: int) -> None:
    assert decode.auto_splits(programs, key_blocks, 132) == expected


# --- bad inputs and configs ----------------------------------------------------------------


def _zeros(*shape: int) -> torch.Tensor:
    return torch.zeros(*shape, dtype=F16)


@interpreter_only
@pytest.mark.parametrize(
    ("q", "k", "config", "match"),
    [
        (_zeros(1, 4, 1, 16), _zeros(1, 3, 8, 16), _decode(), "^k has 3 heads"),
        (_zeros(1, 2, 9, 16), _zeros(1, 2, 8, 16), _decode(), "^q has 9 queries"),
        (_zeros(1, 2, 1, 16), _zeros(2, 2, 8, 16), _decode(), "^k has batch 2"),
        (_zeros(1, 2, 1, 16), _zeros(1, 2, 8, 16), _decode(KV_SPLITS=65), "^config: KV_SPLITS"),
        (_zeros(1, 2, 1, 16), _zeros(1, 2, 8, 16), _decode(KV_SPLITS=-1), "^config: KV_SPLITS"),
        (_zeros(1, 2, 1, 16), _zeros(1, 2, 8, 16), _decode(KV_SPLITS=True), "^config: KV_SPLITS"),
        (_zeros(1, 2, 1, 16), _zeros(1, 2, 8, 16), _decode(BLOCK_N=48), "^config: BLOCK_N"),
        (_zeros(1, 2, 1, 16), _zeros(1, 2, 8, 16), _decode(num_stages=0), "^config: num_stages"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(
    q: torch.Tensor, k: torch.Tensor, config: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        attn.attention(q, k, k.clone(), config=config)


DECODE_DIMS = {"B": 2, "H": 4, "Hkv": 2, "S": 1, "Skv": 40, "D": 16, "causal": False}


@pytest.mark.parametrize(
    ("config", "dims", "device", "expected"),
    [
        (_decode(), {**DECODE_DIMS, "dtype": "float16"}, CPU, None),
        (_decode(), {**DECODE_DIMS, "dtype": "bfloat16"}, CPU, "bf16"),
        (_decode(), {**DECODE_DIMS, "dtype": "bfloat16"}, HOPPER, None),
        (_decode(KV_SPLITS=100), {**DECODE_DIMS, "dtype": "float16"}, HOPPER, "KV_SPLITS"),
        (_decode(), {**DECODE_DIMS, "Hkv": 3, "dtype": "float16"}, HOPPER, "do not divide"),
    ],
)
def test_unsupported(
    config: dict[str, Any], dims: dict[str, Any], device: DeviceInfo, expected: str | None
) -> None:
    reason = attn.unsupported(config, dims, device)
    assert reason is None if expected is None else (reason is not None and expected in reason)


# --- the plug-in and the search space ------------------------------------------------------


@interpreter_only
def test_plugin_runs_a_decode_config() -> None:
    dims = {**DECODE_DIMS, "dtype": "float32"}
    inputs = attn.make_inputs(dims, 0, "cpu")
    out = attn.empty_output(inputs)
    out.fill_(float("nan"))
    attn.run(inputs, out, _decode(KV_SPLITS=4, BLOCK_N=16))
    torch.testing.assert_close(out, attn.reference(inputs), atol=5e-3, rtol=5e-3)


@interpreter_only
def test_custom_op_runs_a_decode_config() -> None:
    q, k, v = qkv(1, 4, 2, 1, 40, 16, F32)
    config_json = json.dumps(_decode(KV_SPLITS=2, BLOCK_N=16))
    out = attn.attention_op(q, k, v, False, None, config_json)
    check(out, reference(q, k, v, False))


def _space_configs(shape: str) -> Iterator[dict[str, Any]]:
    from evotune.search.grid import valid_configs
    from evotune.space import load_space

    space = load_space("attention")
    yield from valid_configs(space, space.shape(shape).dims)


@pytest.mark.parametrize("shape", ["decode", "decode-long"])
def test_the_space_has_decode_configs_at_decode_shapes_and_they_resolve(shape: str) -> None:
    from evotune.space import load_space

    space = load_space("attention")
    dims = space.shape(shape).dims
    configs = [c for c in _space_configs(shape) if c["impl"] == "decode"]
    assert len(configs) > 50
    assert {c["KV_SPLITS"] for c in configs} == {0, 1, 2, 4, 8, 16, 32, 64}
    for config in configs:
        assert set(config) == {"impl", "KV_SPLITS", "BLOCK_N", "num_warps", "num_stages"}
        assert attn.unsupported(config, dims, HOPPER) is None, config
    assert any(c["impl"] == "decode" for c in space.seed_configs(dims))


def test_the_space_keeps_decode_to_a_few_queries() -> None:
    assert not any(c["impl"] == "decode" for c in _space_configs("tiny"))


def test_the_interpreter_sub_space_at_decode_is_what_the_plugin_runs() -> None:
    """As test_attention.py checks at the self-attention shapes: `--interpret` searches exactly
    the configs that `unsupported` lets the interpreter run, decode configs among them."""
    from evotune.search.grid import valid_configs
    from evotune.space import load_space

    space = load_space("attention")
    dims = space.shape("decode").dims
    runnable = {
        json.dumps(c, sort_keys=True)
        for c in valid_configs(space, dims)
        if attn.unsupported(c, dims, CPU) is None
    }
    searched = {json.dumps(c, sort_keys=True) for c in valid_configs(space.for_interpreter(), dims)}
    assert searched == runnable
    assert any('"decode"' in c for c in searched)


# --- ahead-of-time compile for sm_90a, without a GPU -------------------------------------------

# As in test_attention_models.py (tests/kernels/aot.py): a subprocess without TRITON_INTERPRET,
# with a stand-in driver that answers "sm_90a", compiles what a Hopper launch of these dims would.
_AOT_SCRIPT = """
import json, sys
from tests.kernels.aot import sass, spills, use_sm90a_driver

use_sm90a_driver()
import evotune.kernels.attention as attn
import evotune.kernels.attention_decode as decode

compiled = []
for kernel in (decode.decode_split_kernel, decode.decode_combine_kernel):
    kernel.warmup = (lambda w: lambda *a, **k: compiled.append(w(*a, **k)))(kernel.warmup)
for dims, config in json.loads(sys.argv[1]):
    attn.compile_only(dims, config, None)
    print(json.dumps([{
        "name": k.name, "target": ".target sm_90a" in k.asm["ptx"], "shared": k.metadata.shared,
        "sass": bool(code := sass(k.asm["cubin"])), "mma": "HMMA" in code or "HGMMA" in code,
        "cp_async": "LDGSTS" in code, "spills": spills(code),
    } for k in compiled]))
    compiled.clear()
"""

_DECODE = {"B": 64, "H": 32, "Hkv": 8, "S": 1, "Skv": 4096, "D": 128, "causal": False}
AOT_CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({**_DECODE, "dtype": "float16"}, _decode(KV_SPLITS=4, BLOCK_N=64, num_warps=4, num_stages=3)),
    ({**_DECODE, "dtype": "bfloat16"}, _decode(KV_SPLITS=1, BLOCK_N=128, num_warps=8)),
    (
        {**_DECODE, "B": 8, "Skv": 32768, "dtype": "float16"},
        _decode(KV_SPLITS=16, BLOCK_N=64, num_warps=4, num_stages=4),
    ),
    # Speculative decoding: 8 heads x 4 queries = 32 rows, causal, D 64.
    ({**_DECODE, "S": 4, "D": 64, "causal": True, "dtype": "float16"}, _decode(KV_SPLITS=8)),
]


def test_ahead_of_time_compile_for_sm90() -> None:
    """Both kernels compile for sm_90a; the split kernel uses the tensor cores and cp.async
    and spills no more than a couple of registers outside its loop; with one split there is
    no combine kernel."""
    results = run_script(_AOT_SCRIPT, AOT_CASES)
    assert len(results) == len(AOT_CASES)
    smem_limit = int(SPACE["derived"]["smem_limit"])
    for (dims, config), kernels in zip(AOT_CASES, results, strict=True):
        label = f"{dims} {config} -> {kernels}"
        names = [k["name"] for k in kernels]
        one_split = config.get("KV_SPLITS") == 1
        assert names == ["decode_split_kernel"] + ([] if one_split else ["decode_combine_kernel"])
        assert all(k["target"] and k["shared"] <= smem_limit for k in kernels), label
        split = kernels[0]
        if split["sass"]:
            assert split["mma"] and split["cp_async"] and split["spills"] <= 4, label


# --- on the GPU ------------------------------------------------------------------------------

# (test, shape, dtype, config, max error, µs a call or None): the table written after the module.
_GPU_ROWS: list[tuple[str, str, str, str, float, float | None]] = []


@pytest.fixture(scope="module", autouse=True)
def _gpu_table(request: pytest.FixtureRequest) -> Iterator[None]:
    """Writes the GPU tests' rows as one table to the terminal (past pytest's capture). The
    µs/call column is CUDA-event time of 20 back-to-back calls (launch included), not
    evotune's timer: tests/gpu/decode_bench.py measures against SDPA."""
    yield
    if not _GPU_ROWS:
        return
    header = ("test", "shape", "dtype", "config", "max err", "µs/call")
    rows = [header] + [
        (t, s, d, c, f"{e:.2e}", "-" if us is None else f"{us:.1f}")
        for t, s, d, c, e, us in _GPU_ROWS
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    reporter.write_line("")
    reporter.write_line(f"impl: decode on {torch.cuda.get_device_name(0)}")
    for r in rows:
        reporter.write_line("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))


GPU_CONFIGS: dict[str, dict[str, Any]] = {
    "auto": _decode(),
    "splits1": _decode(KV_SPLITS=1, BLOCK_N=128, num_warps=8),
    "splits4": _decode(KV_SPLITS=4, BLOCK_N=64, num_warps=4, num_stages=3),
    "splits16": _decode(KV_SPLITS=16, BLOCK_N=64, num_warps=4, num_stages=4),
    "splits64_bn32": _decode(KV_SPLITS=64, BLOCK_N=32, num_warps=4, num_stages=4),
}


def _cuda_inputs(
    dims: dict[str, Any], dtype: str, seed: int = 1234
) -> tuple[dict[str, Any], torch.Tensor]:
    inputs = attn.make_inputs({**dims, "dtype": dtype}, seed, "cuda")
    return inputs, attn.reference(inputs)


@functools.lru_cache(maxsize=1)
def _named_case(shape: str, dtype: str) -> tuple[dict[str, Any], torch.Tensor]:
    """Inputs and reference of a named shape (a GB of KV cache: the tests run shape by shape)."""
    return _cuda_inputs(SPACE["shapes"][shape], dtype)


def _gpu_check(out: torch.Tensor, ref: torch.Tensor, dtype: str) -> float:
    tol = TOLERANCES[dtype]
    assert not torch.isnan(out).any(), "NaN in the output"
    err = (out.float() - ref).abs()
    assert bool((err <= tol["atol"] + tol["rtol"] * ref.abs()).all()), f"max error {err.max()}"
    return float(err.max())


def _us_per_call(fn: Any, calls: int = 20) -> float:
    fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1000 / calls


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("shape", "dtype", "variant"),
    [
        (shape, dtype, variant)
        for shape in ("decode", "decode-long")
        for dtype in ("float16", "bfloat16")
        for variant in GPU_CONFIGS
    ],
)
def test_named_decode_shapes_on_gpu(shape: str, dtype: str, variant: str) -> None:
    inputs, ref = _named_case(shape, dtype)
    config = GPU_CONFIGS[variant]
    out = attn.empty_output(inputs)
    out.fill_(float("nan"))
    attn.run(inputs, out, config)
    torch.cuda.synchronize()
    err = _gpu_check(out, ref, dtype)
    us = _us_per_call(lambda: attn.run(inputs, out, config))
    _GPU_ROWS.append(("named shape", shape, dtype, variant, err, us))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("causal", [False, True])
def test_speculative_queries_and_kv_cache_slice_on_gpu(dtype: str, causal: bool) -> None:
    """Sq = 5 over the first 3001 rows of a 4096-row KV cache, a few splits, odd sizes."""
    torch_dtype = getattr(torch, dtype)
    gen = torch.Generator(device="cuda").manual_seed(5)
    B, H, Hkv, Sq, Skv, D = 3, 32, 8, 5, 3001, 128
    cache = torch.randn(2, B, Hkv, 4096, D, generator=gen, device="cuda").to(torch_dtype)
    k, v = cache[0, :, :, :Skv], cache[1, :, :, :Skv]
    q = torch.randn(B, Sq, H, D, generator=gen, device="cuda").to(torch_dtype).transpose(1, 2)
    inputs = {"q": q, "k": k, "v": v, "causal": causal, "sm_scale": None}
    for variant in ("auto", "splits4", "splits64_bn32"):
        out = attn.attention(q, k, v, causal=causal, config=GPU_CONFIGS[variant])
        err = _gpu_check(out, attn.reference(inputs), dtype)
        _GPU_ROWS.append(("Sq=5 cache slice", f"causal={causal}", dtype, variant, err, None))


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["splits1", "splits4"])
def test_cuda_graph_capture_and_replay(variant: str) -> None:
    """Captured after a warm-up call, replayed on new values in the same buffers: the replay
    computes the new result (the scratch comes from the graph's pool)."""
    dims = {**SPACE["shapes"]["decode"], "B": 8}
    inputs, _ = _cuda_inputs(dims, "float16")
    config = GPU_CONFIGS[variant]
    out = attn.empty_output(inputs)
    attn.run(inputs, out, config)  # plan and compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        attn.run(inputs, out, config)
    fresh, ref = _cuda_inputs(dims, "float16", seed=99)  # other values, the same buffers
    for name in ("q", "k", "v"):
        inputs[name].copy_(fresh[name])
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    err = _gpu_check(out, ref, "float16")
    us = _us_per_call(graph.replay)
    _GPU_ROWS.append(("graph replay", "decode B=8", "float16", variant, err, us))


def test_gpu_configs_are_in_the_space() -> None:
    from evotune.space import load_space

    space = load_space("attention")
    for shape in ("decode", "decode-long"):
        dims = space.shape(shape).dims
        for name, config in GPU_CONFIGS.items():
            normalized = space.normalize(config)
            assert not space.violations(normalized, dims), (shape, name)
