"""Tests of the Hopper Gluon attention kernel.

CPU: the support checks (why a config is refused) and an ahead-of-time compile for sm_90a.
GPU (marked): results against the float32 reference at odd S and at the named shapes.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch

from evotune.kernels.attention_gluon import (
    GLUON_DEFAULTS,
    _grid,
    gluon_unsupported,
    resolve_gluon_config,
    smem_bytes,
)
from evotune.plugin import DeviceInfo
from evotune.records import config_hash
from evotune.search.grid import valid_configs
from evotune.space import load_space
from tests.kernels.aot import run_script

H100 = DeviceInfo(interpreted=False, name="NVIDIA H100 80GB HBM3", capability=(9, 0), sm_count=132)
A100 = DeviceInfo(interpreted=False, name="NVIDIA A100", capability=(8, 0), sm_count=108)
INTERP = DeviceInfo(interpreted=True, name="interpreter")
D64 = {"B": 2, "H": 4, "S": 1000, "D": 64, "causal": True, "dtype": "float16"}
D128 = {**D64, "D": 128}
# The Triton whose SASS the kernel is tuned against (the GPU hosts'; docs/results/). Newer
# releases compile it too, but ptxas spills registers in its three-consumer configs there
# (Triton 3.9, AOT for sm_90a: 132 spill loads and stores at BLOCK_M 192, none on 3.6).
TUNED_TRITON = (3, 6)


def test_default_config_is_supported_on_hopper() -> None:
    assert gluon_unsupported({}, D64, H100) is None
    assert gluon_unsupported({}, {**D128, "dtype": "bfloat16", "causal": False}, H100) is None


def test_interpreter_and_other_gpus_are_refused_with_reason() -> None:
    assert "interpreter" in (gluon_unsupported({}, D64, INTERP) or "")
    reason = gluon_unsupported({}, D64, A100) or ""
    assert "sm_90" in reason and "A100" in reason


@pytest.mark.parametrize(
    ("config", "dims", "needle"),
    [
        ({}, {**D64, "dtype": "float32"}, "float16 and bfloat16"),
        ({}, {**D64, "D": 96}, "head dim"),
        ({"BLOCK_M": 64, "CONSUMER_WGS": 2}, D64, "64 or 128 query rows"),
        ({"BLOCK_M": 32, "CONSUMER_WGS": 1}, D64, "64 or 128 query rows"),
        ({"KV_STAGES": 1}, D64, "KV_STAGES"),
        ({"FAST_EXP": 1}, {**D64, "dtype": "bfloat16"}, "float16 only"),
        ({"FAST_EXP": 3}, D64, "FAST_EXP"),
        ({"PRODUCER_WARPS": 0, "CONSUMER_WGS": 2}, D64, "PRODUCER_WARPS=0"),
        ({"PRODUCER_WARPS": 3}, D64, "PRODUCER_WARPS"),
        ({"PRODUCER_REGS": 20}, D64, "PRODUCER_REGS"),
        ({"BLOCK_N": 128, "KV_STAGES": 4}, D128, "shared memory"),
        ({"TILE_ORDER": 2}, D64, "TILE_ORDER"),
        ({"PINGPONG": 2}, D64, "PINGPONG"),
        ({"P_BUFFERS": 3}, D64, "P_BUFFERS"),
        # two score tiles live in the unrolled pair: spilled when compiled (sm_90a, Triton 3.6)
        ({"P_BUFFERS": 2, "BLOCK_N": 128, "BLOCK_M": 128, "CONSUMER_WGS": 2}, D64, "registers"),
        ({"BLOCK_M": 256, "CONSUMER_WGS": 2, "BLOCK_N": 128}, D128, "registers"),
        ({"BLOCK_M": 128, "CONSUMER_WGS": 3}, D64, "64 or 128 query rows"),
        ({"BLOCK_M": 256, "CONSUMER_WGS": 4}, D64, "CONSUMER_WGS"),
        # three consumers get 160 registers: P_BUFFERS=2 keeps a second P and score tile
        ({"BLOCK_M": 192, "CONSUMER_WGS": 3, "BLOCK_N": 128, "P_BUFFERS": 2}, D64, "registers"),
        ({"BLOCK_M": 192, "CONSUMER_WGS": 3, "BLOCK_N": 128}, D128, "registers"),
    ],
)
def test_unsupported_combinations_name_the_reason(
    config: dict[str, int], dims: dict[str, Any], needle: str
) -> None:
    reason = gluon_unsupported(config, dims, H100)
    assert reason is not None and needle in reason


def test_the_search_space_prunes_exactly_what_the_kernel_refuses() -> None:
    """The space's gluon constraints and the kernel's own checks must not drift apart: on a
    Hopper GPU, at a shape with a tail tile, the space leaves out exactly the configs the
    kernel refuses (its warpgroup layout, registers, shared memory), and never lists a
    producer register count for a kernel without a producer. (The named shapes:
    test_attention.py, against the plug-in's static check.)"""
    space = load_space("attention")
    gluon = space.restricted("impl == 'gluon'")
    valid = {config_hash(c) for c in valid_configs(gluon, D64)}
    names = [n for n, p in gluon.parameters.items() if p.when and "gluon" in p.when]
    grid = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(gluon.parameters[n].choices() for n in names))
    ]
    assert len(grid) > 100
    for knobs in grid:
        config = {"impl": "gluon", "BLOCK_M": 128, "BLOCK_N": 64, "FAST_EXP": 0, "CTA_MULT": 0}
        for bm in (64, 128, 192, 256):
            full = gluon.normalize({**config, **knobs, "BLOCK_M": bm})
            reason = gluon_unsupported(full, D64, H100)
            # (PINGPONG=0 with one consumer runs PINGPONG=1's code: the space leaves it out.)
            same_code = full["PINGPONG"] == 0 and full["CONSUMER_WGS"] == 1
            assert (config_hash(full) in valid) == (reason is None and not same_code), full
            assert "PRODUCER_REGS" not in full or full["PRODUCER_WARPS"] > 0


def test_defaults_are_the_search_spaces() -> None:
    """GLUON_DEFAULTS is the space's table but for the tile (the space's BLOCK_M default is the
    tl kernel's 64, which two consumer warpgroups cannot split); every knob the kernel reads is
    searched."""
    space = load_space("attention")
    params = space.parameters
    differ = {k for k, v in GLUON_DEFAULTS.items() if k in params and params[k].default != v}
    assert differ == {"BLOCK_M", "BLOCK_N"}
    assert set(GLUON_DEFAULTS) <= set(space.parameters)
    gluon_knobs = {n for n, p in space.parameters.items() if p.when and "gluon" in p.when}
    assert gluon_knobs <= set(GLUON_DEFAULTS)


def test_register_split_matches_tritons_warpgroup_allocation() -> None:
    # Three warpgroups (producer + 2 consumers) share 64K registers: 168 at launch, then
    # setmaxnreg gives 24 to the producer and 240 to each consumer.
    two = resolve_gluon_config({"CONSUMER_WGS": 2, "PRODUCER_REGS": 24}, 128)
    assert (two.maxnreg, two.consumer_regs) == (168, 240)
    one = resolve_gluon_config({"CONSUMER_WGS": 1, "BLOCK_M": 64}, 64)
    assert one.maxnreg == 248
    assert resolve_gluon_config({"PRODUCER_WARPS": 0, "CONSUMER_WGS": 1}, 64).maxnreg is None
    # Four warpgroups: 128 at launch, 24 to the producer, 160 to each of three consumers.
    three = resolve_gluon_config({"CONSUMER_WGS": 3, "BLOCK_M": 192, "BLOCK_N": 64}, 64)
    assert (three.maxnreg, three.consumer_regs, three.bm_wg) == (128, 160, 64)


def test_one_or_two_consumers_pin_the_softmax_three_do_not() -> None:
    # 64 x 128 scores, a 64 x 64 accumulator and two P tiles need more than 160 registers.
    three = {"CONSUMER_WGS": 3, "BLOCK_M": 192, "BLOCK_N": 128}
    assert resolve_gluon_config(three, 64).pin_softmax == 0
    assert resolve_gluon_config({"BLOCK_N": 128}, 128).pin_softmax == 1
    one = {"CONSUMER_WGS": 1, "BLOCK_M": 64, "PRODUCER_WARPS": 0}
    assert resolve_gluon_config(one, 128).pin_softmax == 1


def test_knobs_that_compile_spill_free_are_accepted() -> None:
    # Each of these compiled without register spills for sm_90a (cuobjdump, 2026-11-23).
    for config, dims in (
        ({"P_BUFFERS": 2, "BLOCK_N": 64, "KV_STAGES": 4}, D128),
        ({"BLOCK_M": 256, "BLOCK_N": 64, "KV_STAGES": 3, "TILE_ORDER": 1}, D64),
        ({"PINGPONG": 0, "CTA_MULT": 1}, D128),
        ({"CONSUMER_WGS": 1, "BLOCK_M": 64, "PRODUCER_WARPS": 0}, D128),
        ({"CONSUMER_WGS": 3, "BLOCK_M": 192, "BLOCK_N": 128}, {**D64, "causal": False}),
    ):
        assert gluon_unsupported(config, dims, H100) is None, config


def test_smem_estimate_counts_q_and_the_kv_ring() -> None:
    launch = resolve_gluon_config({**GLUON_DEFAULTS, "KV_STAGES": 3, "BLOCK_N": 64}, 128)
    q = 128 * 128 * 2
    kv = 2 * 3 * 64 * 128 * 2
    pin = 128 * 4
    assert q + kv + pin <= smem_bytes(launch) < q + kv + pin + 256


def test_tma_operands_are_contiguous_with_a_16_byte_aligned_base() -> None:
    from evotune.kernels.attention_gluon import _tma_operand

    aligned = torch.randn(2, 3, 4, 8).half()
    assert _tma_operand(aligned) is aligned
    # A contiguous view two bytes into its storage: same values, copied to an aligned buffer.
    flat = torch.arange(1 + aligned.numel(), dtype=torch.float16)
    shifted = flat[1:].view(2, 3, 4, 8)
    assert shifted.is_contiguous() and shifted.data_ptr() % 16 != 0
    fixed = _tma_operand(shifted)
    assert fixed.is_contiguous() and fixed.data_ptr() % 16 == 0
    assert torch.equal(fixed, shifted)
    transposed = torch.randn(2, 4, 3, 8).half().transpose(1, 2)
    copied = _tma_operand(transposed)
    assert copied.is_contiguous() and torch.equal(copied, transposed)


def test_persistent_ctas_get_a_second_q_buffer_where_it_fits_and_store_o_through_it() -> None:
    base = {**GLUON_DEFAULTS, "BLOCK_M": 128, "BLOCK_N": 128, "CONSUMER_WGS": 2}
    persistent = {**base, "CTA_MULT": 1, "KV_STAGES": 2}
    assert resolve_gluon_config(persistent, 128).q_buffers == 2
    one_q = resolve_gluon_config({**persistent, "CTA_MULT": 0}, 128)
    assert one_q.q_buffers == 1
    two_q = resolve_gluon_config(persistent, 128)
    assert smem_bytes(two_q) - smem_bytes(one_q) == 128 * 128 * 2 + 8 * 2 * 2
    # Three stages of 128 x 128 K and V leave no room for a second Q at D128, but do at D64.
    single_q = resolve_gluon_config({**persistent, "KV_STAGES": 3}, 128)
    assert single_q.q_buffers == 1
    assert resolve_gluon_config({**persistent, "KV_STAGES": 3}, 64).q_buffers == 2
    # Without a producer partition the consumer loads its own Q when a tile starts.
    no_producer = {**persistent, "CONSUMER_WGS": 1, "BLOCK_M": 64, "PRODUCER_WARPS": 0}
    assert resolve_gluon_config(no_producer, 128).q_buffers == 1
    # O is staged in the Q buffer for a TMA store unless the next tile's Q needs that buffer.
    assert two_q.o_via_tma and one_q.o_via_tma
    assert not single_q.o_via_tma
    # Persistent CTAs run the host's balanced tile table; one CTA a tile needs none.
    assert two_q.persistent and single_q.persistent and not one_q.persistent


def test_a_persistent_grid_has_no_more_ctas_than_the_sms_hold_at_once() -> None:
    two_wgs = {**GLUON_DEFAULTS, "BLOCK_M": 128, "BLOCK_N": 128, "CONSUMER_WGS": 2}
    # With a producer a CTA takes the whole register file: CTA_MULT 2 and 4 run one CTA an SM.
    producer = resolve_gluon_config({**two_wgs, "CTA_MULT": 4}, 128)
    assert producer.ctas_per_sm == 1
    assert _grid(producer, 10_000, 132) == 132
    assert _grid(producer, 100, 132) == 100
    # Inline loads at D64 (64 x 64 Q, two 128 x 64 K/V stages: 74,080 bytes) fit three an SM.
    inline = {**two_wgs, "BLOCK_M": 64, "CONSUMER_WGS": 1, "PRODUCER_WARPS": 0, "KV_STAGES": 2}
    assert resolve_gluon_config({**inline, "CTA_MULT": 4}, 64).ctas_per_sm == 3
    assert _grid(resolve_gluon_config({**inline, "CTA_MULT": 4}, 64), 10_000, 132) == 396
    assert _grid(resolve_gluon_config({**inline, "CTA_MULT": 2}, 64), 10_000, 132) == 264
    # One CTA a tile is not capped: the hardware runs the tiles in waves as they come.
    assert _grid(resolve_gluon_config({**two_wgs, "CTA_MULT": 0}, 128), 10_000, 132) == 10_000


class _RecordedLaunch:
    """Stands in for CompiledLaunch: records each launch's runtime arguments (descriptors
    rebased over the bases passed, as the JIT gets them), which with the constexprs must be the
    kernel's parameters."""

    launches: list[tuple[Any, ...]]

    def __init__(
        self,
        fn: Any,
        grid: tuple[int, ...],
        constexprs: dict[str, Any],
        options: Any,
        device: int,
        descriptors: dict[int, Any],
    ) -> None:
        self.names, self.constexprs, self.descriptors = list(fn.arg_names), constexprs, descriptors

    def __call__(self, *args: Any) -> None:
        from evotune.kernels.launch_cache import rebased

        assert set(self.names[len(args) :]) == set(self.constexprs), "runtime arguments"
        bound = [
            rebased(self.descriptors[i], a) if i in self.descriptors else a
            for i, a in enumerate(args)
        ]
        type(self).launches.append(tuple(bound))


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Launches of the Gluon kernel, recorded instead of run (the host path on the CPU)."""
    from evotune.kernels import attention_gluon
    from evotune.kernels.launch_cache import BoundedCache

    _RecordedLaunch.launches = []
    monkeypatch.setattr(attention_gluon, "CompiledLaunch", _RecordedLaunch)
    monkeypatch.setattr(attention_gluon, "_CALLS", BoundedCache(8))
    return _RecordedLaunch.launches


def test_a_gluon_call_is_planned_once_and_binds_each_calls_tensors(
    recorded: list[tuple[Any, ...]],
) -> None:
    from evotune.kernels import attention_gluon

    config = {"BLOCK_M": 128, "BLOCK_N": 64, "CONSUMER_WGS": 2, "CTA_MULT": 1, "TILE_ORDER": 1}
    q, k, v = (torch.randn(2, 3, 200, 64).half() for _ in range(3))
    out = torch.empty_like(q)
    attention_gluon.gluon_attention(q, k, v, True, 0.125, config, out)
    q2 = torch.randn_like(q)
    assert attention_gluon.gluon_attention(q2, k, v, True, 0.25, dict(config), out) is out
    assert len(attention_gluon._CALLS) == 1 and len(recorded) == 2
    (q_desc, k_desc, v_desc, o_ptr, o_desc, scale, S, BH, group, n_m, sched) = recorded[1]
    bases = (q_desc.base, k_desc.base, v_desc.base, o_ptr, o_desc.base)
    assert all(a is b for a, b in zip(bases, (q2, k, v, out, out), strict=True))
    assert list(q_desc.shape) == [2 * 3 * 200, 64] and q_desc.block_shape == [64, 64]
    assert k_desc.block_shape == [64, 64] and o_desc.block_shape == q_desc.block_shape
    assert scale == pytest.approx(0.25 / math.log(2)) and (S, BH, group, n_m) == (200, 6, 6, 2)
    assert sched is recorded[0][-1] and sched.dtype == torch.int32  # the persistent tile table


def test_gluon_operands_a_descriptor_cannot_address_are_copied_each_call(
    recorded: list[tuple[Any, ...]],
) -> None:
    from evotune.kernels import attention_gluon

    config = {"BLOCK_M": 128, "BLOCK_N": 64, "CONSUMER_WGS": 2}
    q = torch.randn(1, 100, 2, 64).half().transpose(1, 2)  # [B, S, H, D] storage
    k, v = (torch.randn(1, 2, 100, 64).half() for _ in range(2))
    out = torch.randn(1, 100, 2, 64).half().transpose(1, 2)
    for _ in range(2):
        attention_gluon.gluon_attention(q, k, v, False, 0.125, config, out)
    q_desc, k_desc, _, o_ptr, o_desc, *_ = recorded[1]
    assert q_desc.base is not q and q_desc.base.is_contiguous() and torch.equal(q_desc.base, q)
    assert k_desc.base is k
    # O goes to a contiguous buffer, copied into `out` after the launch.
    assert o_ptr is not out and o_desc.base is o_ptr and o_ptr.is_contiguous()
    torch.testing.assert_close(out, o_ptr, atol=0, rtol=0, equal_nan=True)


def test_attention_dispatches_gluon_configs_to_a_planned_gluon_call(
    recorded: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from evotune.kernels import attention as attn
    from evotune.kernels.launch_cache import BoundedCache

    monkeypatch.setattr(attn, "_CALLS", BoundedCache(8))
    config = {"impl": "gluon", "BLOCK_M": 128, "BLOCK_N": 128, "CONSUMER_WGS": 2}
    q, k, v = (torch.randn(1, 2, 130, 128).half() for _ in range(3))
    out = attn.attention(q, k, v, causal=True, config=config)
    attn.attention(q, k, v, causal=True, config=config, out=out)
    assert len(attn._CALLS) == 1 and len(recorded) == 2
    assert recorded[1][3] is out and recorded[1][5] == pytest.approx(
        1 / math.sqrt(128) / math.log(2)
    )


_AOT_SCRIPT = """
import json, re, sys
from tests.kernels.aot import sass, spills
from evotune.kernels.attention_gluon import gluon_compile
config = json.loads(sys.argv[1])
kernel = gluon_compile(json.loads(sys.argv[2]), config)
ptx = kernel.asm["ptx"]
code = sass(kernel.asm["cubin"])
print(json.dumps({
    "target": ".target sm_90a" in ptx, "wgmma": "wgmma.mma_async" in ptx, "setmaxnreg": "setmaxnreg" in ptx,
    "shared": kernel.metadata.shared, "sass": bool(code), "hgmma": "HGMMA" in code,
    "spills": spills(code),
    "half_swaps": len(re.findall(r"PRMT R[0-9]+, R[0-9]+, 0x5432, R[0-9]+", code)),
}))
"""


@pytest.mark.parametrize(
    ("config", "dims"),
    [
        ({"BLOCK_M": 128, "BLOCK_N": 64, "CONSUMER_WGS": 2, "KV_STAGES": 2}, {**D64, "S": 333}),
        ({"BLOCK_M": 192, "BLOCK_N": 128, "CONSUMER_WGS": 3}, {**D64, "causal": False}),
        # The KV-loop knobs searched since issue 24, and FAST_EXP=2's half split.
        ({"BLOCK_M": 192, "BLOCK_N": 64, "CONSUMER_WGS": 3, "P_BUFFERS": 2, "PINGPONG": 0}, D64),
        (
            {"BLOCK_M": 192, "BLOCK_N": 128, "CONSUMER_WGS": 3, "KV_STAGES": 3, "FAST_EXP": 2},
            {**D64, "causal": False},
        ),
    ],
)
def test_ahead_of_time_compile_for_sm90(config: dict[str, int], dims: dict[str, Any]) -> None:
    """The kernel compiles without a GPU to sm_90a with wgmma (HGMMA) on every Triton the
    project allows; on the tuned one (TUNED_TRITON) with no register spills, and P reaches
    the PV wgmma without PRMTs that swap the halves of its registers (there were 384 before
    _pv_operand rounded the pairs itself: 7 % of a KV step's instructions).

    Runs in a subprocess without TRITON_INTERPRET (tests/kernels/aot.py): the interpreter
    replaces Triton's own jit helpers that Gluon code calls, so Gluon cannot compile inside an
    interpreted process.
    """
    info = run_script(_AOT_SCRIPT, config, dims, timeout=300)[-1]
    assert info["target"] and info["wgmma"] and info["setmaxnreg"]
    launch = resolve_gluon_config(config, 64)
    assert smem_bytes(launch) <= info["shared"] <= smem_bytes(launch) + 1024
    if info["sass"]:
        assert info["hgmma"]
        if _triton_version() == TUNED_TRITON:
            assert info["spills"] == 0
            assert info["half_swaps"] == 0


def _triton_version() -> tuple[int, int]:
    import triton

    major, minor = triton.__version__.split(".")[:2]
    return int(major), int(minor)


# ----------------------------------------------------------------------------- GPU


def _hopper() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)


GPU_CONFIGS: dict[str, dict[str, int]] = {
    "nows": {"BLOCK_M": 64, "BLOCK_N": 128, "CONSUMER_WGS": 1, "PRODUCER_WARPS": 0},
    "ws1": {"BLOCK_M": 64, "BLOCK_N": 128, "CONSUMER_WGS": 1, "PRODUCER_WARPS": 1},
    "ws2": {"BLOCK_M": 128, "BLOCK_N": 128, "CONSUMER_WGS": 2, "PRODUCER_WARPS": 1},
    "ws2_head_groups": {
        "BLOCK_M": 128,
        "BLOCK_N": 128,
        "CONSUMER_WGS": 2,
        "CTA_MULT": 1,
        "TILE_ORDER": 1,
    },
    "ws2_persistent_fe2": {
        "BLOCK_M": 128,
        "BLOCK_N": 64,
        "CONSUMER_WGS": 2,
        "KV_STAGES": 3,
        "CTA_MULT": 1,
        "FAST_EXP": 2,
    },
    # The KV-loop knobs the space searches since issue 24: no turns; two P tiles.
    "ws2_no_turns": {"BLOCK_M": 128, "BLOCK_N": 64, "CONSUMER_WGS": 2, "PINGPONG": 0},
    "ws2_two_p_buffers": {"BLOCK_M": 128, "BLOCK_N": 64, "CONSUMER_WGS": 2, "P_BUFFERS": 2},
    "ws3_two_p_buffers": {"BLOCK_M": 192, "BLOCK_N": 64, "CONSUMER_WGS": 3, "P_BUFFERS": 2},
    # Three consumers take turns; 64-row tiles of the third overhang S at every shape here.
    "ws3": {"BLOCK_M": 192, "BLOCK_N": 64, "CONSUMER_WGS": 3, "KV_STAGES": 3},
    "ws3_persistent": {
        "BLOCK_M": 192,
        "BLOCK_N": 128,
        "CONSUMER_WGS": 3,
        "CTA_MULT": 1,
        "TILE_ORDER": 1,
    },
}
NAMED_SHAPES = {
    "tiny": (1, 2, 128, 64),
    "small": (1, 8, 512, 64),
    "mission": (32, 8, 512, 64),
    "stage1": (16, 16, 2048, 64),
    "llama-d128": (4, 32, 4096, 128),
    "long": (2, 16, 8192, 64),
}


def _reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float
) -> torch.Tensor:
    import torch.nn.functional as F

    return torch.cat(
        [
            F.scaled_dot_product_attention(
                q[i : i + 1].float(),
                k[i : i + 1].float(),
                v[i : i + 1].float(),
                is_causal=causal,
                scale=scale,
            )
            for i in range(q.shape[0])
        ]
    )


def _run_and_compare(
    config: dict[str, int], shape: tuple[int, int, int, int], causal: bool, dtype: torch.dtype
) -> None:
    from evotune.kernels.attention_gluon import gluon_attention

    b, h, s, d = shape
    dims = {
        "B": b,
        "H": h,
        "S": s,
        "D": d,
        "causal": causal,
        "dtype": str(dtype).removeprefix("torch."),
    }
    props = torch.cuda.get_device_properties(0)
    dev = DeviceInfo(False, props.name, (props.major, props.minor), props.multi_processor_count)
    if gluon_unsupported(config, dims, dev):
        pytest.skip(str(gluon_unsupported(config, dims, dev)))
    gen = torch.Generator(device="cuda").manual_seed(b * 1000 + s)
    q, k, v = (torch.randn(shape, generator=gen, device="cuda").to(dtype) for _ in range(3))
    out = torch.full_like(q, float("nan"))
    scale = 1.0 / math.sqrt(d)
    assert gluon_attention(q, k, v, causal, scale, config, out) is out
    ref = _reference(q, k, v, causal, scale)
    tol = 1e-2 if dtype == torch.float16 else 2e-2
    assert not torch.isnan(out).any(), "unwritten or NaN output"
    torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol)


@pytest.mark.gpu
@pytest.mark.skipif(not _hopper(), reason="needs an sm_90 GPU")
@pytest.mark.parametrize("name", sorted(GPU_CONFIGS))
@pytest.mark.parametrize("s", [1, 67, 129, 1000])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_odd_lengths_match_reference(
    name: str, s: int, d: int, causal: bool, dtype: torch.dtype
) -> None:
    _run_and_compare(GPU_CONFIGS[name], (2, 3, s, d), causal, dtype)


@pytest.mark.gpu
@pytest.mark.skipif(not _hopper(), reason="needs an sm_90 GPU")
@pytest.mark.parametrize("name", sorted(GPU_CONFIGS))
@pytest.mark.parametrize("shape", sorted(NAMED_SHAPES))
def test_named_shapes_match_reference(name: str, shape: str) -> None:
    _run_and_compare(GPU_CONFIGS[name], NAMED_SHAPES[shape], True, torch.float16)


@pytest.mark.gpu
@pytest.mark.skipif(not _hopper(), reason="needs an sm_90 GPU")
@pytest.mark.parametrize("cta_mult", [0, 1])
def test_uneven_head_groups_match_reference(monkeypatch: pytest.MonkeyPatch, cta_mult: int) -> None:
    """6 heads in groups of 4: the remainder group (2 heads) runs first; every tile once."""
    from evotune.kernels.launch_cache import BoundedCache

    monkeypatch.setattr("evotune.kernels.tile_order.MAX_CAUSAL_HEAD_GROUP", 4)
    monkeypatch.setattr("evotune.kernels.attention_gluon._CALLS", BoundedCache(8))  # planned anew
    config = {"BLOCK_M": 128, "BLOCK_N": 64, "CONSUMER_WGS": 2, "TILE_ORDER": 1}
    _run_and_compare({**config, "CTA_MULT": cta_mult}, (2, 3, 1000, 64), True, torch.float16)


PERSISTENT_CONFIGS: dict[str, dict[str, int]] = {
    "producer": {"BLOCK_M": 128, "BLOCK_N": 128, "CONSUMER_WGS": 2, "CTA_MULT": 1},
    "inline_loads": {
        "BLOCK_M": 64,
        "BLOCK_N": 128,
        "CONSUMER_WGS": 1,
        "PRODUCER_WARPS": 0,
        "CTA_MULT": 1,
    },
    "three_consumers": {"BLOCK_M": 192, "BLOCK_N": 64, "CONSUMER_WGS": 3, "CTA_MULT": 1},
    # Two CTAs an SM (three fit at D64 with two stages; at D128 shared memory caps it at one).
    "inline_loads_two_a_sm": {
        "BLOCK_M": 64,
        "BLOCK_N": 128,
        "CONSUMER_WGS": 1,
        "PRODUCER_WARPS": 0,
        "CTA_MULT": 2,
    },
}


@pytest.mark.gpu
@pytest.mark.skipif(not _hopper(), reason="needs an sm_90 GPU")
@pytest.mark.parametrize("name", sorted(PERSISTENT_CONFIGS))
@pytest.mark.parametrize("kv_stages", [2, 3])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("causal", [True, False])
def test_persistent_ctas_with_many_tiles_match_reference(
    name: str, kv_stages: int, d: int, causal: bool
) -> None:
    """~10 tiles per CTA at a length with a tail tile, the ring phases carried from tile to
    tile. With a producer: Q double-buffered and O stored by TMA through it (one Q buffer and
    register stores at D128 with three stages); with inline loads: one Q buffer, register
    stores."""
    config = {**PERSISTENT_CONFIGS[name], "KV_STAGES": kv_stages}
    _run_and_compare(config, (4, 40, 1000, d), causal, torch.float16)


@pytest.mark.gpu
@pytest.mark.skipif(not _hopper(), reason="needs an sm_90 GPU")
def test_compile_only_fills_the_cache_that_the_launch_uses() -> None:
    """The compile pool's ahead-of-time compile is the binary the GPU worker then launches."""
    from evotune.kernels._gluon_attention_kernel import gluon_attn_fwd
    from evotune.kernels.attention_gluon import compile_only

    # A config no other test launches, so that its cache entry is new here.
    config = {
        "BLOCK_M": 128,
        "BLOCK_N": 64,
        "CONSUMER_WGS": 2,
        "KV_STAGES": 4,
        "CTA_MULT": 1,
        "PRODUCER_REGS": 40,
    }
    shape = (2, 4, 300, 64)
    dims = {"B": 2, "H": 4, "S": 300, "D": 64, "causal": True, "dtype": "float16"}

    def cached() -> int:
        return sum(len(caches[0]) for caches in gluon_attn_fwd.device_caches.values())

    before = cached()
    compile_only(dims, config)
    assert cached() == before + 1
    _run_and_compare(config, shape, True, torch.float16)
    assert cached() == before + 1, "the launch compiled a binary of its own"


@pytest.mark.gpu
@pytest.mark.skipif(not _hopper(), reason="needs an sm_90 GPU")
def test_inputs_and_output_off_16_byte_alignment() -> None:
    """Contiguous views that start two bytes into their storage (a TMA descriptor needs a
    16-byte aligned base) for q and out."""
    from evotune.kernels.attention_gluon import gluon_attention

    shape = (2, 3, 256, 64)
    n = 2 * 3 * 256 * 64
    gen = torch.Generator(device="cuda").manual_seed(7)
    q = torch.randn(n + 1, generator=gen, device="cuda").half()[1:].view(shape)
    k, v = (torch.randn(shape, generator=gen, device="cuda").half() for _ in range(2))
    out = torch.full((n + 1,), float("nan"), device="cuda").half()[1:].view(shape)
    config = {"BLOCK_M": 128, "BLOCK_N": 128, "CONSUMER_WGS": 2}
    assert gluon_attention(q, k, v, True, 0.125, config, out) is out
    ref = _reference(q, k, v, True, 0.125)
    torch.testing.assert_close(out.float(), ref, atol=1e-2, rtol=1e-2)
