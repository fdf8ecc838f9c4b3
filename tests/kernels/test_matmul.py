"""The GEMM plug-in (kernels/matmul.py): CPU interpreter, search space, sm_90a AOT, GPU.

- Without CUDA: every variant the interpreter runs (pointers, GROUP_M, persistent, split-K,
  and the tensor-descriptor code paths, which the interpreter emulates) against float64,
  odd sizes, non-contiguous operands, fp16 and fp32; input and config checks; the search
  space file; an ahead-of-time compile for sm_90a in a subprocess; `evotune search` end to end.
- With CUDA (marked gpu): every variant x fp16/bf16 x named shape against torch.matmul in
  fp32, NaN-poisoned outputs, CUDA-graph capture and replay.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from evotune.expressions import evaluate
from evotune.kernels import matmul as mm
from evotune.plugin import DeviceInfo, load_plugin
from evotune.search.grid import valid_configs
from evotune.space import load_space
from tests.conftest import HAS_CUDA
from tests.kernels.aot import ROOT, run_script

SPACE_FILE = ROOT / "search_spaces" / "matmul.yaml"
TOLERANCES = yaml.safe_load(SPACE_FILE.read_text())["tolerances"]
CPU = DeviceInfo(interpreted=True, name="interpreter")
HOPPER = DeviceInfo(interpreted=False, name="NVIDIA H200", capability=(9, 0), sm_count=132)
AMPERE = DeviceInfo(interpreted=False, name="NVIDIA A100", capability=(8, 0), sm_count=108)
DEVICE = "cuda" if HAS_CUDA else "cpu"
GPU_SHAPES = ("square", "square-bf16", "decode", "kv-proj", "odd", "gpt2-lm-head")

interpreter_only = pytest.mark.skipif(HAS_CUDA, reason="CPU interpreter test (GPU tests below)")


def _operands(
    M: int, N: int, K: int, dtype: torch.dtype, layout: str = "nn", seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """a [M, K] and b [K, N] as make_inputs scales them, in a given memory layout:
    n = row-major, t = a transposed view (column-major), p = a view into a padded parent."""
    gen = torch.Generator().manual_seed(seed)

    def make(rows: int, cols: int, kind: str, scale: float) -> torch.Tensor:
        if kind == "t":
            base = torch.randn(cols, rows, generator=gen) * scale
            return base.to(dtype).to(DEVICE).T
        if kind == "p":
            base = torch.randn(rows, cols + 8, generator=gen) * scale
            return base.to(dtype).to(DEVICE)[:, 3 : 3 + cols]
        return (torch.randn(rows, cols, generator=gen) * scale).to(dtype).to(DEVICE)

    return make(M, K, layout[0], 1 / math.sqrt(K)), make(K, N, layout[1], 1.0)


def _check(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    tol = TOLERANCES[str(out.dtype).removeprefix("torch.")]
    if a.device.type == "cpu":
        ref = a.double() @ b.double()
    else:
        ref = mm.reference({"a": a, "b": b}).double()
    assert out.dtype == a.dtype and out.shape == ref.shape
    assert not torch.isnan(out).any(), "NaN in the output (an element left unwritten)"
    torch.testing.assert_close(out.double(), ref, atol=tol["atol"], rtol=tol["rtol"])


# --- the interpreter: every variant against float64 ----------------------------------------

F16, F32 = torch.float16, torch.float32
CASES: list[tuple[int, int, int, torch.dtype, str, dict[str, Any]]] = [
    # M, N, K, dtype, layout, config
    (96, 160, 200, F16, "nn", {}),  # the default config at the `tiny` shape
    (64, 128, 128, F16, "nn", {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32}),  # EVEN_K, no edges
    (37, 45, 51, F32, "nn", {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}),  # every edge masked
    (1, 33, 17, F32, "nn", {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 16}),  # one row (GEMV)
    (40, 1, 70, F16, "nn", {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32}),  # one column
    (33, 20, 1, F32, "nn", {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}),  # K = 1
    # GROUP_M: 7 tile rows in groups of 1, 2 and 4 (the last group short), and more than all
    (112, 80, 48, F16, "nn", {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 1}),
    (112, 80, 48, F16, "nn", {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 2}),
    (112, 80, 48, F16, "nn", {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 4}),
    (112, 80, 48, F16, "nn", {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 16}),
    # persistent: 4 "SMs" in the interpreter, so that each CTA loops over several tiles
    (100, 90, 70, F16, "nn", {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32, "CTA_MULT": 1}),
    (100, 90, 70, F32, "nn", {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 16, "CTA_MULT": 2}),
    # split-K, with uneven and empty splits (K=100 is 4 steps of 32: SPLIT_K=8 leaves 4 empty)
    (50, 70, 100, F16, "nn", {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "SPLIT_K": 2}),
    (50, 70, 100, F16, "nn", {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "SPLIT_K": 8}),
    (16, 300, 256, F16, "nn", {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 32, "SPLIT_K": 4}),
    # K a multiple of BLOCK_K (no K mask): the last split is empty and must read nothing
    (40, 48, 96, F16, "nn", {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "SPLIT_K": 4}),
    (
        50,
        70,
        100,
        F32,
        "nn",
        {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 16, "SPLIT_K": 4, "CTA_MULT": 1, "GROUP_M": 2},
    ),
    # tensor descriptors (TMA on Hopper): edges zero-filled and clipped by the descriptor
    (100, 72, 88, F16, "nn", {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32, "TMA": True}),
    (
        100,
        72,
        88,
        F16,
        "nn",
        {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32, "TMA": True, "CTA_MULT": 1},
    ),
    (
        40,
        200,
        96,
        F16,
        "nn",
        {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 32, "TMA": True, "SPLIT_K": 2, "CTA_MULT": 2},
    ),
    # TMA asked for where rows are not 16-byte aligned (K=30 fp16): pointers instead
    (50, 64, 30, F16, "nn", {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 16, "TMA": True}),
    # any strides: column-major and padded-parent views of A and B
    (45, 38, 70, F16, "tn", {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32}),
    (45, 38, 70, F16, "nt", {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": 2}),
    (45, 38, 70, F32, "tt", {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "CTA_MULT": 1}),
    (45, 38, 70, F16, "pp", {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32}),
    (45, 38, 70, F16, "pt", {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "TMA": True}),
]


@interpreter_only
@pytest.mark.parametrize(("M", "N", "K", "dtype", "layout", "config"), CASES)
def test_matches_float64_reference(
    M: int, N: int, K: int, dtype: torch.dtype, layout: str, config: dict[str, Any]
) -> None:
    a, b = _operands(M, N, K, dtype, layout, seed=M + N + K)
    _check(mm.matmul(a, b, config), a, b)


@interpreter_only
def test_out_with_any_strides_receives_the_result() -> None:
    a, b = _operands(40, 24, 50, F16)
    for config in ({"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}, {"SPLIT_K": 2, "BLOCK_K": 16}):
        out = torch.full((24, 40), float("nan"), dtype=F16).T  # column-major [40, 24]
        result = mm.matmul(a, b, config, out=out)
        assert result is out
        _check(out, a, b)


@interpreter_only
@pytest.mark.parametrize(
    "config",
    [
        {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16},
        {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 16, "SPLIT_K": 4, "CTA_MULT": 1},
    ],
)
def test_64_bit_offsets(monkeypatch: pytest.MonkeyPatch, config: dict[str, Any]) -> None:
    """The LARGE code paths (64-bit offsets, addresses rebuilt each K step), taken here for a
    small problem by lowering the threshold: a shape past 2^31 elements does not fit a test."""
    monkeypatch.setattr(mm, "_INDEX_LIMIT", 64)
    a, b = _operands(37, 45, 51, F16, "tn")
    layouts = (mm._layout(a), mm._layout(b), mm._layout(a))
    plan = mm._plan(37, 45, 51, F16, layouts, mm.resolve_config(config), 4)
    assert plan.constexprs["LARGE"]
    _check(mm.matmul(a, b, config), a, b)


@interpreter_only
def test_split_k_partials_are_summed_in_a_fixed_order() -> None:
    # Deterministic: the same inputs give the same bits, call after call.
    a, b = _operands(32, 64, 256, F16)
    config = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "SPLIT_K": 4}
    first = mm.matmul(a, b, config)
    assert torch.equal(first, mm.matmul(a, b, config))


# --- the launch plan ------------------------------------------------------------------------


def _contiguous(M: int, N: int, K: int) -> tuple[Any, Any, Any]:
    return (
        mm._Layout(M, K, (K, 1), True),
        mm._Layout(K, N, (N, 1), True),
        mm._Layout(M, N, (N, 1), True),
    )


def test_plan_grid_and_variants() -> None:
    cfg = mm.resolve_config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64})
    plan = mm._plan(4096, 4096, 4096, F16, _contiguous(4096, 4096, 4096), cfg, 132)
    assert plan.grid == (32 * 32,) and plan.split_k == 1 and not plan.constexprs["PERSISTENT"]
    assert plan.constexprs["EVEN_K"] and not plan.constexprs["LARGE"]
    # Persistent: at most CTA_MULT CTAs an SM, never more than the work items.
    persistent = mm.resolve_config({**cfg, "CTA_MULT": 2, "SPLIT_K": 2})
    plan = mm._plan(4096, 4096, 4096, F16, _contiguous(4096, 4096, 4096), persistent, 132)
    assert plan.grid == (264,) and plan.constexprs["PERSISTENT"]
    plan = mm._plan(16, 256, 4096, F16, _contiguous(16, 256, 4096), persistent, 132)
    assert plan.grid == (1 * 2 * 2,)


def test_plan_tma_only_where_the_layout_allows() -> None:
    tma = mm.resolve_config({"TMA": True})
    square = _contiguous(4096, 4096, 4096)
    plan = mm._plan(4096, 4096, 4096, F16, square, tma, 132)
    assert plan.constexprs["AB_TMA"] and plan.constexprs["C_TMA"]
    # C by pointers with split-K (fp32 partials).
    split = mm._plan(4096, 4096, 4096, F16, square, {**tma, "SPLIT_K": 2}, 132)
    assert split.constexprs["AB_TMA"] and not split.constexprs["C_TMA"]
    # K=1234 fp16: A's rows are 2468 bytes, not 16-byte aligned: pointers.
    plan = mm._plan(3000, 5000, 1234, F16, _contiguous(3000, 5000, 1234), tma, 132)
    assert not plan.constexprs["AB_TMA"] and not plan.constexprs["C_TMA"]
    # A transposed view has no unit inner stride.
    a_t = mm._Layout(64, 64, (1, 64), True)
    plan = mm._plan(64, 64, 64, F16, (a_t, *_contiguous(64, 64, 64)[1:]), tma, 132)
    assert not plan.constexprs["AB_TMA"]


def test_divisibility_hints() -> None:
    assert [mm._pow2_divisor(n) for n in (0, 1, 2, 3, 1234, 5000, 4096, 12, 7)] == [
        1,
        1,
        2,
        1,
        2,
        8,
        1,
        4,
        1,
    ]
    plan = mm._plan(
        3000, 5000, 1234, F16, _contiguous(3000, 5000, 1234), mm.resolve_config({}), 132
    )
    hints = {k: v for k, v in plan.constexprs.items() if k.startswith("DIV_")}
    assert hints == {"DIV_K": 2, "DIV_N": 8, "DIV_AM": 2, "DIV_BK": 8, "DIV_CM": 8}


# --- input and config checks ----------------------------------------------------------------


def _t(*shape: int, dtype: torch.dtype = F16) -> torch.Tensor:
    return torch.zeros(*shape, dtype=dtype, device=DEVICE)


@dataclass(frozen=True)
class _Zeros:
    """A tensor argument made when its test runs: made at collection, it took GPU memory in
    every pytest process, and collection failed with an OOM beside other processes."""

    shape: tuple[int, ...]
    dtype: torch.dtype = F16

    def make(self) -> torch.Tensor:
        return _t(*self.shape, dtype=self.dtype)


def _z(*shape: int, dtype: torch.dtype = F16) -> _Zeros:
    return _Zeros(shape, dtype)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"a": [[1.0]]}, "^a must be a torch.Tensor"),
        ({"b": 3}, "^b must be a torch.Tensor"),
        ({"a": _z(2, 3, 4)}, "^a must have rank 2"),
        ({"b": _z(8)}, "^b must have rank 2"),
        ({"a": _z(4, 8, dtype=torch.int32)}, "^a has dtype torch.int32"),
        ({"a": _z(4, 8, dtype=torch.float64)}, "^a has dtype torch.float64"),
        ({"b": _z(8, 6, dtype=torch.float32)}, "^b has dtype torch.float32, but a has"),
        ({"b": _z(7, 6)}, "^b has 7 rows, but a has 8 columns"),
        ({"a": _z(0, 8)}, "^a @ b has an empty dimension: M=0"),
        ({"a": _z(4, 0), "b": _z(0, 6)}, "empty dimension: .*K=0"),
        ({"b": _z(8, 0)}, "empty dimension: .*N=0"),
        ({"out": _z(6, 4)}, r"^out must be \[4, 6\]"),
        ({"out": _z(4, 6, dtype=torch.float32)}, "^out must be .*got .*float32"),
        ({"out": "x"}, "^out must be a torch.Tensor or None"),
        ({"config": {"BLOCK_M": 48}}, "^config: BLOCK_M must be a power of two"),
        ({"config": {"BLOCK_K": 8}}, "^config: BLOCK_K"),
        ({"config": {"BLOCK_N": 512}}, "^config: BLOCK_N"),
        ({"config": {"GROUP_M": 0}}, "^config: GROUP_M"),
        ({"config": {"num_warps": 3}}, "^config: num_warps"),
        ({"config": {"num_stages": 0}}, "^config: num_stages"),
        ({"config": {"SPLIT_K": 3}}, "^config: SPLIT_K"),
        ({"config": {"CTA_MULT": -1}}, "^config: CTA_MULT"),
        ({"config": {"TMA": 1}}, "^config: TMA must be a bool"),
        ({"config": {"WARP_SPECIALIZE": True}}, r"^config: unknown keys \['WARP_SPECIALIZE'\]"),
        ({"config": {"BLOCK_SIZE_M": 64}}, r"^config: unknown keys \['BLOCK_SIZE_M'\]"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(args: dict[str, Any], match: str) -> None:
    call: dict[str, Any] = {"a": _t(4, 8), "b": _t(8, 6)}
    call.update({k: v.make() if isinstance(v, _Zeros) else v for k, v in args.items()})
    with pytest.raises(ValueError, match=match):
        mm.matmul(**call)


@pytest.mark.skipif(not HAS_CUDA, reason="on a CUDA host, CPU tensors are refused")
def test_cpu_tensors_are_refused_on_a_gpu_host() -> None:
    with pytest.raises(ValueError, match=r"^a is on cpu"):
        mm.matmul(torch.zeros(4, 8, dtype=F16), torch.zeros(8, 6, dtype=F16))


def test_mixed_devices_are_refused() -> None:
    meta = torch.zeros(8, 6, dtype=F16, device="meta")
    with pytest.raises(ValueError, match=r"^b is on meta, but a is on"):
        mm.matmul(_t(4, 8), meta)


# --- the search space -------------------------------------------------------------------------


def test_default_config_is_the_search_spaces_default() -> None:
    space = load_space("matmul")
    raw = yaml.safe_load(SPACE_FILE.read_text())
    # The launcher reads the YAML's defaults.
    assert mm.default_config() == {n: p["default"] for n, p in raw["parameters"].items()}
    assert mm.resolve_config(None) == {**mm.default_config(), **space.default_config()}
    for name in space.shapes:
        assert not space.violations(space.default_config(), space.shape(name).dims), name


def test_named_shapes_and_seeds() -> None:
    space = load_space("matmul")
    assert space.kernel == "matmul" and space.module == "evotune.kernels.matmul"
    assert set(space.shapes) == {"tiny", *GPU_SHAPES}
    assert space.shapes["tiny"]["dtype"] == "float16"  # the interpreter cannot do bf16 dots
    for seed in space.seeds:
        assert seed.why.startswith("unmeasured prior")
        mm.resolve_config(seed.config)
    # Each seed fits some named GPU shape, and every GPU shape gets one (decode: its own).
    fits = {name: space.seed_configs(space.shape(name).dims) for name in GPU_SHAPES}
    assert all(fits.values()), fits
    assert all(
        any(c in configs for configs in fits.values())
        for c in map(space.normalize, (s.config for s in space.seeds))
    )
    assert any(c.get("SPLIT_K", 1) > 1 for c in fits["decode"])


def test_tma_is_refused_where_rows_are_misaligned() -> None:
    space = load_space("matmul")
    odd = space.shape("odd").dims
    tma = space.normalize({"TMA": True})
    assert any("16-byte aligned" in v for v in space.violations(tma, odd))
    assert "16-byte aligned rows" in (mm.unsupported(tma, odd, HOPPER) or "")
    assert not space.violations(tma, space.shape("square").dims)


@pytest.mark.parametrize("shape", ["tiny", "decode", "odd"])
def test_every_valid_config_resolves_and_runs_on_hopper(shape: str) -> None:
    """The space's constraints and the launcher's own refusals agree: every config the space
    can propose passes resolve_config and is supported on Hopper."""
    space = load_space("matmul")
    dims = space.shape(shape).dims
    configs = list(valid_configs(space, dims))
    assert len(configs) > 1000
    for config in configs:
        mm.resolve_config(config)
        reason = mm.unsupported(config, dims, HOPPER)
        assert reason is None, (config, reason)


def test_constraints_refuse_what_cannot_compile() -> None:
    space = load_space("matmul")
    dims = space.shape("square").dims

    def refused(config: dict[str, Any]) -> bool:
        return bool(space.violations(space.normalize(config), dims))

    # 128x256 fp32 accumulator on 4 warps spilled (618 STL/LDL); on 8 warps it did not.
    assert refused({"BLOCK_M": 128, "BLOCK_N": 256, "num_warps": 4})
    assert not refused({"BLOCK_M": 128, "BLOCK_N": 256, "num_warps": 8})
    # 4 stages of 128x128 A and B at BLOCK_K=128: 256 KiB of shared memory.
    assert refused({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 128, "num_stages": 4})
    assert not refused({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 128, "num_stages": 3})
    # A persistent TMA store stages C beside the pipeline: 128x256x64 x 3 stages + C > 227 KiB.
    big = {"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64, "num_warps": 8, "num_stages": 3}
    big["TMA"] = True
    assert not refused(big) and not refused({**big, "num_stages": 4})
    assert refused({**big, "CTA_MULT": 1, "num_stages": 4})
    # Rows 2-byte aligned only (odd N): B waits in registers; 64x128x64 on 4 warps spilled.
    lm_head = space.shape("gpt2-lm-head").dims
    tile = {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64}
    assert space.violations(space.normalize(tile), lm_head)
    assert not space.violations(space.normalize(tile), dims)
    assert not space.violations(space.normalize({**tile, "BLOCK_K": 32}), lm_head)
    # fp32: FMA dots hold their operands in registers.
    fp32 = {**dims, "dtype": "float32"}
    assert space.violations(space.normalize({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 128}), fp32)
    assert not space.violations(space.normalize({"BLOCK_M": 64, "BLOCK_N": 64}), fp32)
    # Decode (M=16): at most 64-row tiles; split-K's workspace and K steps bounded.
    decode = space.shape("decode").dims
    assert space.violations(space.normalize({"BLOCK_M": 128}), decode)
    assert not space.violations(space.normalize({"BLOCK_M": 64, "SPLIT_K": 16}), decode)
    tiny = space.shape("tiny").dims
    assert space.violations(space.normalize({"SPLIT_K": 8, "BLOCK_K": 32}), tiny)


# --- the plug-in interface --------------------------------------------------------------------

TINY = {"M": 40, "N": 24, "K": 64, "dtype": "float16"}


def test_plugin_interface_is_complete() -> None:
    plugin = load_plugin("evotune.kernels.matmul")
    for name in ("compile_only", "bytes", "baselines"):
        assert callable(getattr(plugin, name))


def test_make_inputs_is_seeded_and_scaled() -> None:
    x, y, z = (mm.make_inputs(TINY, s, DEVICE) for s in (1, 1, 2))
    assert torch.equal(x["a"], y["a"]) and torch.equal(x["b"], y["b"])
    assert not torch.equal(x["a"], z["a"])
    assert x["a"].shape == (40, 64) and x["b"].shape == (64, 24) and x["a"].dtype == F16
    big = mm.make_inputs({"M": 64, "N": 64, "K": 4096, "dtype": "float32"}, 0, DEVICE)
    # Outputs ~ N(0, 1) whatever K: one tolerance fits every shape.
    assert 0.9 < float(mm.reference(big).std()) < 1.1


def test_output_reference_flops_bytes_baselines() -> None:
    inputs = mm.make_inputs(TINY, 0, DEVICE)
    out = mm.empty_output(inputs)
    assert out.shape == (40, 24) and out.dtype == F16 and out.device == inputs["a"].device
    ref = mm.reference(inputs)
    assert ref.dtype == torch.float32
    exact = inputs["a"].double() @ inputs["b"].double()
    assert torch.allclose(ref.double(), exact, atol=1e-5)
    assert mm.flops(TINY) == 2 * 40 * 24 * 64
    assert mm.bytes(TINY) == (40 * 64 + 64 * 24 + 40 * 24) * 2
    assert mm.bytes({**TINY, "dtype": "float32"}) == 2 * mm.bytes(TINY)
    baselines = mm.baselines(inputs)
    assert len(baselines) == 1
    (baseline,) = baselines.values()
    assert torch.allclose(baseline().double(), exact, atol=1e-2)


@interpreter_only
def test_run_fills_the_output() -> None:
    inputs = mm.make_inputs({"M": 96, "N": 160, "K": 200, "dtype": "float16"}, 0, "cpu")
    out = mm.empty_output(inputs).fill_(float("nan"))
    mm.run(inputs, out, load_space("matmul").default_config())
    _check(out, inputs["a"], inputs["b"])


@pytest.mark.parametrize(
    ("config", "dims", "device", "needle"),
    [
        ({}, TINY, CPU, None),
        ({"CTA_MULT": 1, "SPLIT_K": 2}, TINY, CPU, None),
        ({}, {**TINY, "dtype": "bfloat16"}, CPU, "bf16"),
        ({"TMA": True}, TINY, CPU, "TMA needs a Hopper GPU"),
        ({"TMA": True}, TINY, AMPERE, "sm_90"),
        ({"TMA": True}, {**TINY, "K": 1234}, HOPPER, "K (rows of a) is 2468 bytes"),
        ({"TMA": True}, {**TINY, "N": 5001}, HOPPER, "N (rows of b and c)"),
        ({}, {**TINY, "dtype": "float8"}, HOPPER, "dtype 'float8'"),
        ({"BLOCK_M": 48}, TINY, HOPPER, "BLOCK_M"),
        ({}, {**TINY, "M": 0}, HOPPER, "empty dimension"),
        ({"SPLIT_K": 2}, {**TINY, "M": 65536, "N": 65536}, HOPPER, "M * N < 2^31"),
    ],
)
def test_unsupported(
    config: dict[str, Any], dims: dict[str, Any], device: DeviceInfo, needle: str | None
) -> None:
    reason = mm.unsupported(config, dims, device)
    if needle is None:
        assert reason is None
    else:
        assert reason is not None and needle in reason, reason


@interpreter_only
def test_compile_only_is_a_no_op_in_the_interpreter() -> None:
    assert mm.compile_only(TINY, {"TMA": True, "SPLIT_K": 2}) is None


# --- ahead-of-time compile for sm_90a, without a GPU -------------------------------------------

# Through tests/kernels/aot.py: a subprocess without TRITON_INTERPRET (the interpreter replaces
# the jit functions) whose stand-in driver answers "sm_90a" to the JIT, so that `warm_up` —
# compile_only's own path, with the launch's specialisation — compiles exactly what a Hopper
# launch would.
_AOT_SCRIPT = """
import json, re, sys
from tests.kernels.aot import cuobjdump, sass, spills, use_sm90a_driver

use_sm90a_driver()
from evotune.kernels.matmul import warm_up

for dims, config in json.loads(sys.argv[1]):
    main = warm_up(dims, config)[0]
    ptx, code = main.asm["ptx"], sass(main.asm["cubin"])
    usage = cuobjdump("-res-usage", main.asm["cubin"])
    regs = re.search(r"REG:(\\d+)", usage)
    print(json.dumps({
        "target": ".target sm_90a" in ptx, "wgmma": "wgmma.mma_async" in ptx,
        "mma_sync": "mma.sync" in ptx, "cp_async": ptx.count("cp.async.cg") + ptx.count("cp.async.ca"),
        "tma_load": "cp.async.bulk.tensor" in ptx,
        "shared": main.metadata.shared, "sass": bool(code), "hgmma": "HGMMA" in code,
        "spills": spills(code), "regs": int(regs.group(1)) if regs else None,
    }))
"""


def _aot(cases: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    return run_script(_AOT_SCRIPT, cases)


def _smem_bound(config: dict[str, Any], dims: dict[str, Any]) -> int:
    """The left side of the space's shared-memory constraint for this config."""
    space = load_space("matmul")
    (rule,) = [c.expr for c in space.constraints if "232448" in c.expr]
    ns = {**dims, "dtype_bytes": 4 if dims["dtype"] == "float32" else 2, **config}
    return int(evaluate(rule.rsplit("<=", 1)[0], ns))


def _tile(bm: int, bn: int, bk: int, warps: int, stages: int, **knobs: Any) -> dict[str, Any]:
    return {
        "BLOCK_M": bm,
        "BLOCK_N": bn,
        "BLOCK_K": bk,
        "num_warps": warps,
        "num_stages": stages,
        **knobs,
    }


AOT_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "tma": ("square", _tile(128, 256, 64, 8, 3, TMA=True)),
    "tma-bf16": ("square-bf16", _tile(128, 256, 64, 8, 3, TMA=True)),
    "tma-persistent": ("kv-proj", _tile(128, 128, 64, 8, 4, TMA=True, CTA_MULT=1)),
    "tma-split-k": ("decode", _tile(64, 128, 128, 4, 3, TMA=True, SPLIT_K=2, GROUP_M=1)),
    "pointers-persistent-split-k": ("kv-proj", _tile(128, 128, 64, 8, 3, SPLIT_K=2, CTA_MULT=2)),
    "pointers-odd": ("odd", _tile(128, 128, 64, 8, 3)),
    "decode-small-m": ("decode", _tile(16, 64, 128, 4, 4, SPLIT_K=4)),
}


def test_ahead_of_time_compile_for_sm90() -> None:
    """The Hopper variants compile for sm_90a without a GPU: wgmma (HGMMA in SASS), TMA loads,
    no register spills, and shared memory within the space's estimate; so does a random
    sample of valid configs of every GPU shape."""
    space = load_space("matmul")
    variants = {
        name: (space.shape(s).dims, space.normalize(c)) for name, (s, c) in AOT_VARIANTS.items()
    }
    for case in variants.values():
        assert not space.violations(case[1], case[0]), case
    for dims, config in variants.values():
        assert mm.unsupported(config, dims, HOPPER) is None, config
    cases = list(variants.values())
    rng = random.Random(0)
    for name in GPU_SHAPES:
        dims = space.shape(name).dims
        sample = rng.sample(list(valid_configs(space, dims)), 2)  # the same on every Triton
        cases += [(dims, c) for c in sample if not mm.unsupported(c, dims, HOPPER)]
    results = _aot(cases)
    assert len(results) == len(cases)
    for (dims, config), info in zip(cases, results, strict=True):
        label = f"{dims} {config} -> {info}"
        assert info["target"], label
        assert info["shared"] <= _smem_bound(config, dims) <= 232448, label
        if info["sass"]:
            # A persistent loop may keep one value in local memory (one STL before the loop, one
            # LDL a tile: seen at gpt2-lm-head); anything more is a real spill.
            assert info["spills"] <= (2 if config["CTA_MULT"] else 0), label
            assert info["hgmma"] == info["wgmma"], label
        if config["BLOCK_M"] >= 64:
            assert info["wgmma"], label  # a warpgroup's 64 rows: Hopper's async MMA
    named = dict(zip(variants, results, strict=False))
    for name in ("tma", "tma-bf16", "tma-persistent", "tma-split-k"):
        assert named[name]["tma_load"], name
    # The persistent TMA store stages C beside the 4-stage pipeline.
    assert named["tma-persistent"]["shared"] >= (4 * 2 * 128 * 64 + 128 * 128) * 2
    # K=1234, N=5000: the divisibility hints keep A and B on cp.async, three stages deep.
    assert named["pointers-odd"]["cp_async"] > 0 and not named["pointers-odd"]["tma_load"]
    assert named["pointers-odd"]["shared"] == 3 * (128 * 64 + 64 * 128) * 2
    # 16-row tiles are below a warpgroup's 64: mma.sync instead of wgmma.
    assert named["decode-small-m"]["mma_sync"] and not named["decode-small-m"]["wgmma"]


# --- end to end through the CLI, on the interpreter -------------------------------------------


@interpreter_only
def test_interpreted_search_stores_ok_trials_and_publishes_a_best(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200", "EVOTUNE_DB": f"sqlite:///{tmp_path / 'mm.db'}"}

    def evotune(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "evotune", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )

    search = evotune(
        "search", "--kernel", "matmul", "--shape", "tiny", "--interpret", "--budget", "6", "--json"
    )
    assert search.returncode == 0, search.stderr[-3000:]
    summary = json.loads(search.stdout)
    assert summary["total_trials"] == 6 and summary["state"] == "finished"
    assert summary["status_counts"].get("ok", 0) >= 2, summary["status_counts"]
    trials = json.loads(evotune("trials", str(summary["study_id"]), "--json").stdout)
    assert all(t["max_error"] <= 5e-3 for t in trials if t["status"] == "ok")
    # TMA seeds are refused in the interpreter as invalid, never as wrong results.
    assert {t["status"] for t in trials} <= {"ok", "invalid"}
    best = evotune("best", "--kernel", "matmul", "--shape", "tiny", "--json")
    assert best.returncode == 0, best.stderr
    published = json.loads(best.stdout)
    assert published["kernel"] == "matmul" and published["study_id"] == summary["study_id"]
    assert not load_space("matmul").violations(published["config"], published["shape"]["dims"])


# --- GPU --------------------------------------------------------------------------------------

GPU_VARIANTS: dict[str, dict[str, Any]] = {
    "pointers": _tile(128, 128, 64, 8, 3),
    "pointers-group1": _tile(64, 128, 32, 4, 4, GROUP_M=1),
    "persistent": _tile(128, 128, 64, 8, 3, CTA_MULT=1),
    "split-k": _tile(64, 64, 64, 4, 3, SPLIT_K=4),
    "persistent-split-k": _tile(64, 128, 32, 4, 4, SPLIT_K=2, CTA_MULT=2),
    "small-m-split-k": _tile(16, 64, 128, 4, 4, SPLIT_K=4),
    "tma": _tile(128, 256, 64, 8, 3, TMA=True),
    "tma-persistent": _tile(128, 128, 64, 8, 4, TMA=True, CTA_MULT=1),
    "tma-split-k": _tile(64, 128, 128, 4, 3, TMA=True, SPLIT_K=2),
}
# The named shapes at full size (a few ms each on an H200), fp16 and bf16; and odd sizes.
GPU_DIMS: dict[str, tuple[int, int, int]] = {
    "square": (4096, 4096, 4096),
    "decode": (16, 14336, 4096),
    "kv-proj": (8192, 1024, 8192),
    "odd": (3000, 5000, 1234),
    "gpt2-lm-head": (4096, 50257, 768),
    "ragged": (77, 333, 517),
}


def _hopper() -> bool:
    return HAS_CUDA and torch.cuda.get_device_capability() == (9, 0)


def _gpu_inputs(shape: str, dtype: str) -> dict[str, Any]:
    M, N, K = GPU_DIMS[shape]
    return mm.make_inputs({"M": M, "N": N, "K": K, "dtype": dtype}, 0, "cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("shape", list(GPU_DIMS))
@pytest.mark.parametrize("variant", list(GPU_VARIANTS))
def test_gpu_variant_matches_fp32_matmul(variant: str, shape: str, dtype: str) -> None:
    config = GPU_VARIANTS[variant]
    if config.get("TMA") and not _hopper():
        pytest.skip("TMA needs Hopper")
    inputs = _gpu_inputs(shape, dtype)
    out = mm.empty_output(inputs).fill_(float("nan"))  # poisoned: an unwritten element stays NaN
    mm.run(inputs, out, config)
    torch.cuda.synchronize()
    assert not torch.isnan(out).any(), "NaN in the output (an element left unwritten)"
    _check(out, inputs["a"], inputs["b"])


@pytest.mark.gpu
@pytest.mark.parametrize("shape", ["ragged", "odd"])
@pytest.mark.parametrize(
    "config",
    [
        _tile(64, 64, 32, 4, 3),
        _tile(64, 128, 64, 8, 3, SPLIT_K=2, CTA_MULT=1),
        _tile(64, 64, 32, 4, 3, TMA=True),
    ],
)
def test_gpu_float32_is_exact_fp32(config: dict[str, Any], shape: str) -> None:
    # fp32 inputs take FMA dots (no TF32): within fp32 accumulation error of the reference.
    if config.get("TMA") and not _hopper():
        pytest.skip("TMA needs Hopper")
    inputs = _gpu_inputs(shape, "float32")
    out = mm.empty_output(inputs).fill_(float("nan"))
    mm.run(inputs, out, config)
    _check(out, inputs["a"], inputs["b"])


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["pointers", "split-k", "tma", "tma-persistent"])
def test_gpu_cuda_graph_capture_and_replay(variant: str) -> None:
    config = GPU_VARIANTS[variant]
    if config.get("TMA") and not _hopper():
        pytest.skip("TMA needs Hopper")
    inputs = _gpu_inputs("ragged", "float16")
    a, b = inputs["a"], inputs["b"]
    out = mm.empty_output(inputs)
    mm.matmul(a, b, config, out=out)  # compile outside the capture
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        mm.matmul(a, b, config, out=out)
    torch.cuda.current_stream().wait_stream(stream)
    # New values in the same buffers: the replay must compute with them.
    a.copy_(torch.randn_like(a, dtype=torch.float32).to(a.dtype) / math.sqrt(a.shape[1]))
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    _check(out, a, b)


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["tn", "nt", "pp"])
def test_gpu_non_contiguous_operands(layout: str) -> None:
    for config in (GPU_VARIANTS["pointers"], GPU_VARIANTS["split-k"], GPU_VARIANTS["tma"]):
        if config.get("TMA") and not _hopper():
            continue
        a, b = _operands(300, 200, 520, F16, layout)
        _check(mm.matmul(a, b, config), a, b)


@pytest.mark.gpu
def test_gpu_compile_only_fills_the_cache_for_the_launch() -> None:
    # compile_only's warm-up is keyed like the launch: the launch after it finds the kernel.
    dims = {"M": 3000, "N": 5000, "K": 1234, "dtype": "float16"}
    config = {"BLOCK_M": 64, "BLOCK_N": 64, "num_stages": 2, "SPLIT_K": 2}
    (main, reduce) = mm.warm_up(dims, config)
    inputs = mm.make_inputs(dims, 0, "cuda")
    before = len(mm.matmul_kernel.device_caches[torch.cuda.current_device()][0])
    mm.run(inputs, mm.empty_output(inputs), config)
    assert len(mm.matmul_kernel.device_caches[torch.cuda.current_device()][0]) == before
    assert main is not None and reduce is not None
