"""Launcher of the split-KV (flash-decoding) attention kernels (configs with impl == 'decode').

For few queries over many keys (decoding: Sq = 1, or a few speculative tokens) the tl-level
kernel has one program per (batch, head, query tile): B * H programs, each streaming the whole
K/V of its head, and grouped heads read the same K/V once per query head. Here a program takes
all the query heads of one K/V head as its rows and one split of the keys; a second kernel
combines the splits. `kernels/attention.py` checks the inputs and, for decode configs, plans a
`DecodeCall` once per call key and calls it; the device code is in
`kernels/_attention_decode_kernel.py`.

Knobs (search_spaces/attention.yaml): KV_SPLITS (0: chosen from the SM count), BLOCK_N,
num_warps, num_stages. The scratch for the partial outputs is a fresh `torch.empty` a call, from
the current stream's allocator, and nothing syncs with the host: CUDA graphs capture a call.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import triton

from ._attention_decode_kernel import decode_combine_kernel, decode_split_kernel
from .attention_common import complete_shape_dims, device_limits, parameter_defaults
from .launch_cache import CompiledLaunch, check_not_capturing

__all__ = [
    "DECODE_DEFAULTS",
    "MAX_KV_SPLITS",
    "DecodeCall",
    "DecodeLaunch",
    "DecodePlan",
    "auto_splits",
    "compile_only",
    "decode_plan",
    "resolve_decode_config",
    "static_unsupported",
]

# The space's defaults of the knobs this launcher reads (the YAML has no per-impl defaults).
_KNOBS = ("KV_SPLITS", "BLOCK_N", "num_warps", "num_stages")
DECODE_DEFAULTS: dict[str, int] = {name: int(parameter_defaults()[name]) for name in _KNOBS}

# The combine kernel holds [splits, D] fp32 partial outputs of a row in registers.
MAX_KV_SPLITS = 64
# Rows of one program (query heads of a K/V head x queries), padded to a power of two >= 16
# (the smallest tl.dot); more rows than this take several row tiles, each re-reading K/V.
# The fp32 accumulator (rows x D) stays at most 8192 elements, 64 registers a thread of 4 warps:
# 64 rows x D 256 spilled (ptxas for sm_90a, 2026-12).
_MIN_ROWS, _MAX_ROWS, _MAX_ACC = 16, 64, 8192
# auto_splits aims at this many programs per SM, so that several stream K/V on each at once.
_PROGRAMS_PER_SM = 4
_LOG2E = 1.4426950408889634


@dataclass(frozen=True)
class DecodeLaunch:
    """A decode config, checked."""

    kv_splits: int  # 0: auto_splits
    block_n: int
    num_warps: int
    num_stages: int


def resolve_decode_config(config: Mapping[str, Any]) -> DecodeLaunch:
    """The config's decode knobs, defaults filled in. KV_SPLITS is checked here (ValueError
    naming `config`); the knobs every impl shares, by evotune.kernels.attention.resolve_config."""
    merged = {**DECODE_DEFAULTS, **{k: v for k, v in config.items() if k in DECODE_DEFAULTS}}
    splits = merged["KV_SPLITS"]
    if type(splits) is not int or not 0 <= splits <= MAX_KV_SPLITS:
        raise ValueError(
            f"config: KV_SPLITS must be an int in [0, {MAX_KV_SPLITS}] (0: from the SM count), "
            f"got {splits!r}"
        )
    return DecodeLaunch(splits, merged["BLOCK_N"], merged["num_warps"], merged["num_stages"])


def auto_splits(programs: int, key_blocks: int, sm_count: int) -> int:
    """KV_SPLITS=0: the smallest power of two that gives each SM _PROGRAMS_PER_SM programs (or
    every key block its own split). A starting point, not measured: searches tune KV_SPLITS."""
    splits = 1
    limit = min(key_blocks, MAX_KV_SPLITS)
    while programs * splits < _PROGRAMS_PER_SM * sm_count and 2 * splits <= limit:
        splits *= 2
    return splits


@dataclass(frozen=True)
class DecodePlan:
    """Grid and sizes of one call's two launches (the combine only with more than one split)."""

    block_m: int
    num_m: int  # row tiles per (batch, K/V head)
    splits: int  # non-empty splits: what the grid launches
    blocks_per_split: int
    split_grid: tuple[int]
    lse_offset: int  # where the log2-sum-exps start in the scratch buffer (elements)
    scratch_numel: int  # fp32 elements of scratch; 0 with one split
    splits_pow2: int
    combine_grid: tuple[int]
    combine_warps: int


@functools.lru_cache(maxsize=256)
def decode_plan(
    B: int, H: int, Hkv: int, Sq: int, Skv: int, D: int, launch: DecodeLaunch, sm_count: int
) -> DecodePlan:
    """The launch plan for q [B, H, Sq, D] over k/v [B, Hkv, Skv, D] (cached per shape)."""
    rows = (H // Hkv) * Sq
    block_m = min(max(triton.next_power_of_2(rows), _MIN_ROWS), _MAX_ROWS, _MAX_ACC // D)
    num_m = triton.cdiv(rows, block_m)
    key_blocks = triton.cdiv(Skv, launch.block_n)
    programs = B * Hkv * num_m
    wanted = launch.kv_splits or auto_splits(programs, key_blocks, sm_count)
    # Splits are whole key blocks; more splits than blocks (or a remainder that empties the
    # last splits) would launch programs with no keys, so the grid has only the non-empty ones.
    blocks_per_split = triton.cdiv(key_blocks, wanted)
    splits = triton.cdiv(key_blocks, blocks_per_split)
    out_rows = B * H * Sq
    split = splits > 1
    pow2 = triton.next_power_of_2(splits)
    return DecodePlan(
        block_m=block_m,
        num_m=num_m,
        splits=splits,
        blocks_per_split=blocks_per_split,
        split_grid=(programs * splits,),
        lse_offset=out_rows * splits * D if split else 0,
        scratch_numel=out_rows * splits * (D + 1) if split else 0,
        splits_pow2=pow2,
        combine_grid=(out_rows,),
        combine_warps=4 if pow2 * D <= 4096 else 8,
    )


def _split_constexprs(
    D: int, plan: DecodePlan, launch: DecodeLaunch, causal: bool, dtype: torch.dtype
) -> dict[str, Any]:
    return {
        "HEAD_DIM": D,
        "BLOCK_M": plan.block_m,
        "BLOCK_N": launch.block_n,
        "CAUSAL": bool(causal),
        "SPLIT": plan.splits > 1,
        "DOT_PRECISION": "ieee" if dtype == torch.float32 else "tf32",
    }


def _split_sizes(
    plan: DecodePlan, strides: tuple[tuple[int, ...], ...], sizes: tuple[int, int, int, int]
) -> tuple[int, ...]:
    """The split kernel's integer arguments after its five pointers (qk_scale, the last one,
    comes with each call): strides of q, k, v and out, then H, Hkv, kv_group, Sq, Skv, rows,
    num_m, num_splits, blocks_per_split and lse_offset."""
    H, Hkv, Sq, Skv = sizes
    group = H // Hkv
    return (
        *(s for t in strides for s in t),
        H, Hkv, group, Sq, Skv, group * Sq, plan.num_m, plan.splits,
        plan.blocks_per_split, plan.lse_offset,
    )  # fmt: skip


class DecodeCall:
    """The decode kernels' launches for one call key (kernels/launch_cache.py): plan, grids and
    constexprs worked out once; a call allocates the scratch and binds the tensors and the scale.

    Takes what `evotune.kernels.attention.attention` has checked: q/out [B, H, Sq, D], k/v
    [B, Hkv, Skv, D] with Hkv dividing H and Sq <= Skv, one dtype and device, any strides.
    Raises ValueError naming `config` for a malformed decode knob.
    """

    def __init__(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        out: torch.Tensor,
        causal: bool,
        config: Mapping[str, Any],
    ) -> None:
        B, H, Sq, D = q.shape
        Hkv, Skv = k.shape[1], k.shape[2]
        launch = resolve_decode_config(config)
        check_not_capturing(q.device, "attention (impl 'decode')")
        self.head_dim = D
        self.plan = plan = decode_plan(B, H, Hkv, Sq, Skv, D, launch, device_limits(q.device)[0])
        device = torch.cuda.current_device() if q.is_cuda else -1
        self._split = CompiledLaunch(
            decode_split_kernel,
            plan.split_grid,
            _split_constexprs(D, plan, launch, causal, q.dtype),
            {"num_warps": launch.num_warps, "num_stages": launch.num_stages},
            device,
        )
        strides = (q.stride(), k.stride(), v.stride(), out.stride())
        self._sizes = _split_sizes(plan, strides, (H, Hkv, Sq, Skv))
        self._combine: CompiledLaunch | None = None
        if plan.splits > 1:
            self._combine = CompiledLaunch(
                decode_combine_kernel,
                plan.combine_grid,
                {"HEAD_DIM": D, "SPLITS_POW2": plan.splits_pow2},
                {"num_warps": plan.combine_warps},
                device,
            )
            self._combine_sizes = (*out.stride(), H, Sq, plan.splits, plan.lse_offset)

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, scale: float
    ) -> None:
        if self._combine is None:
            # The one split writes `out` itself (the scratch argument is not read).
            self._split(q, k, v, out, out, *self._sizes, scale * _LOG2E)
            return
        # Fresh from the current stream's allocator each call: no state between calls, and a
        # CUDA graph capture takes it from the graph's pool.
        part = torch.empty(self.plan.scratch_numel, dtype=torch.float32, device=q.device)
        self._split(q, k, v, out, part, *self._sizes, scale * _LOG2E)
        self._combine(part, out, *self._combine_sizes)


def static_unsupported(config: Mapping[str, Any]) -> str | None:
    """Why no device runs this decode config (a malformed knob), else None. The shape checks
    and the device's (the interpreter's bf16) are the plug-in's, shared with the other impls."""
    try:
        resolve_decode_config(config)
    except ValueError as exc:
        return str(exc)
    return None


def compile_only(dims: Mapping[str, Any], config: Mapping[str, Any], device: Any = None) -> None:
    """Compile both kernels for contiguous inputs of this shape without launching them (needs a
    CUDA driver): the same specialisations as a launch with such inputs. `device` (a
    DeviceInfo) gives the SM count that KV_SPLITS=0 plans with."""
    dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    dtype = dtypes[str(dims["dtype"])]
    full = complete_shape_dims(dims)
    B, H, Hkv, Sq, Skv, D = (int(full[name]) for name in ("B", "H", "Hkv", "S", "Skv", "D"))
    sm_count = getattr(device, "sm_count", 0) or 132
    launch = resolve_decode_config(config)
    plan = decode_plan(B, H, Hkv, Sq, Skv, D, launch, sm_count)
    q_strides = (H * Sq * D, Sq * D, D, 1)
    kv_strides = (Hkv * Skv * D, Skv * D, D, 1)
    part = torch.float32 if plan.splits > 1 else dtype
    decode_split_kernel.warmup(
        dtype, dtype, dtype, dtype, part,
        *_split_sizes(plan, (q_strides, kv_strides, kv_strides, q_strides), (H, Hkv, Sq, Skv)),
        1.0 / math.sqrt(D) * _LOG2E,
        grid=plan.split_grid,
        **_split_constexprs(D, plan, launch, bool(dims["causal"]), dtype),
        num_warps=launch.num_warps,
        num_stages=launch.num_stages,
    )  # fmt: skip
    if plan.splits > 1:
        decode_combine_kernel.warmup(
            torch.float32, dtype, *q_strides, H, Sq, plan.splits, plan.lse_offset,
            HEAD_DIM=D, SPLITS_POW2=plan.splits_pow2, num_warps=plan.combine_warps,
            grid=plan.combine_grid,
        )  # fmt: skip
