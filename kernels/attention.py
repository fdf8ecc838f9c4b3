"""FlashAttention forward, O = softmax(Q K^T * sm_scale) V, as an evotune kernel plug-in.

`attention()` is the public launcher; the module-level plug-in functions (`make_inputs`,
`run`, `reference`, ...) are what evotune's worker calls (see evotune/plugin.py). The
Triton kernel itself lives in `kernels/_attention_kernel.py`; `impl: gluon` configs go to
`kernels/attention_gluon.py`, `impl: decode` (split-KV, for few queries over many keys) to
`kernels/attention_decode.py`; the defaults and the sm_90 limits come from
search_spaces/attention.yaml through `kernels/attention_common.py`.

This module imports torch, triton and pyyaml (no pydantic): GPU hosts run it bare.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
import triton

from evotune.expressions import evaluate

from . import attention_decode as decode
from . import attention_gluon as gluon
from ._attention_kernel import attn_fwd_kernel
from .attention_common import (
    complete_shape_dims,
    default_config,
    device_limits,
    space_constraint,
)
from .launch_cache import (
    BoundedCache,
    CompiledLaunch,
    call_key,
    check_not_capturing,
    rebased,
)
from .tile_order import head_group

if TYPE_CHECKING:
    from evotune.plugin import DeviceInfo

__all__ = [
    "DEFAULT_CONFIG",
    "SUPPORTED_HEAD_DIMS",
    "attention",
    "attention_op",
    "baselines",
    "bytes",
    "compile_only",
    "device_limits",
    "empty_output",
    "flops",
    "make_inputs",
    "reference",
    "resolve_config",
    "run",
    "static_unsupported",
    "unsupported",
]

# The space's default config (search_spaces/attention.yaml, the one table of defaults).
DEFAULT_CONFIG: dict[str, Any] = default_config()

SUPPORTED_HEAD_DIMS = (16, 32, 64, 128, 256)

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_LOG2E = 1.4426950408889634  # log2(e): exp(x) = 2^(x log2 e)
_IMPLS = ("triton", "gluon", "decode")


def _interpreted() -> bool:
    """True when Triton runs kernels through its CPU interpreter (TRITON_INTERPRET=1 at import)."""
    return type(attn_fwd_kernel).__name__ == "InterpretedFunction"


# --- input and config checks --------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """Sizes of one call: q/out [B, H, Sq, D], k/v [B, Hkv, Skv, D]."""

    B: int
    H: int
    Hkv: int
    Sq: int
    Skv: int
    D: int


def _check_inputs(q: Any, k: Any, v: Any, out: Any, sm_scale: float | None) -> tuple[_Shape, float]:
    """Raise ValueError naming the argument for anything the kernel cannot take."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have rank 4 [B, H, S, D], got shape {tuple(t.shape)}")
        if t.dtype not in _DTYPES.values():
            raise ValueError(f"{name} has dtype {t.dtype}; supported: float16, bfloat16, float32")
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise ValueError(f"{name} has dtype {t.dtype}, but q has {q.dtype}")
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device}, but q is on {q.device}")
    for name, t in (("q", q), ("k", k)):
        if min(t.shape[:3]) < 1:
            raise ValueError(f"{name} has an empty dimension: shape {tuple(t.shape)}")
    B, H, Sq, D = q.shape
    _, Hkv, Skv, _ = k.shape
    if k.shape[0] != B:
        raise ValueError(f"k has batch {k.shape[0]}, but q has {B}")
    if k.shape[3] != D:
        raise ValueError(f"k has head dim {k.shape[3]}, but q has {D}")
    if H % Hkv:
        raise ValueError(f"k has {Hkv} heads, which does not divide the {H} heads of q")
    if v.shape != k.shape:
        raise ValueError(f"v has shape {tuple(v.shape)}, but k has {tuple(k.shape)}")
    if Sq > Skv:
        raise ValueError(f"q has {Sq} queries, more than the {Skv} keys of k (needs Sq <= Skv)")
    if q.device.type != "cuda" and not _interpreted():
        raise ValueError(
            f"q is on {q.device}: the kernel needs CUDA tensors "
            "(or TRITON_INTERPRET=1 set before importing kernels, for the CPU interpreter)"
        )
    if D not in SUPPORTED_HEAD_DIMS:
        raise ValueError(
            f"q has head dim D={D}; supported: {', '.join(map(str, SUPPORTED_HEAD_DIMS))}"
        )
    if out is not None:
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"out must be a torch.Tensor or None, got {type(out).__name__}")
        if out.shape != q.shape or out.dtype != q.dtype or out.device != q.device:
            raise ValueError(
                f"out must match q (shape {tuple(q.shape)}, {q.dtype}, {q.device}); "
                f"got {tuple(out.shape)}, {out.dtype}, {out.device}"
            )
    return _Shape(B, H, Hkv, Sq, Skv, D), _scale(sm_scale, D)


def _scale(sm_scale: float | None, D: int) -> float:
    """The softmax scale of a call: 1/sqrt(D) by default (checked on every call: it is not part
    of the call key)."""
    if sm_scale is None:
        return 1.0 / math.sqrt(D)
    scale = float(sm_scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"sm_scale must be a positive finite number, got {sm_scale!r}")
    return scale


def resolve_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The config with defaults filled in, its values checked (ValueError naming `config`)."""
    cfg = dict(DEFAULT_CONFIG)
    if config:
        cfg.update(config)
    if cfg["impl"] not in _IMPLS:
        raise ValueError(f"config: impl must be one of {_IMPLS}, got {cfg['impl']!r}")
    for key in ("BLOCK_M", "BLOCK_N"):
        value = cfg[key]
        if not isinstance(value, int) or value < 16 or value > 256:
            raise ValueError(f"config: {key} must be an int in [16, 256], got {value!r}")
        # The Gluon kernel splits BLOCK_M over its consumer warpgroups (e.g. 192 = 3 x 64) and
        # checks it itself; every other tile extent is a power of two.
        if value & (value - 1) and not (key == "BLOCK_M" and cfg["impl"] == "gluon"):
            raise ValueError(f"config: {key} must be a power of two in [16, 256], got {value!r}")
    if cfg["num_warps"] not in (1, 2, 4, 8, 16):
        raise ValueError(f"config: num_warps must be 1, 2, 4, 8 or 16, got {cfg['num_warps']!r}")
    if not isinstance(cfg["num_stages"], int) or not 1 <= cfg["num_stages"] <= 8:
        raise ValueError(f"config: num_stages must be an int in [1, 8], got {cfg['num_stages']!r}")
    if cfg["FAST_EXP"] not in (0, 1, 2):
        raise ValueError(f"config: FAST_EXP must be 0, 1 or 2, got {cfg['FAST_EXP']!r}")
    if not isinstance(cfg["CTA_MULT"], int) or cfg["CTA_MULT"] < 0:
        raise ValueError(f"config: CTA_MULT must be an int >= 0, got {cfg['CTA_MULT']!r}")
    for key in ("TMA", "WARP_SPECIALIZE"):
        cfg[key] = bool(cfg[key])
    if cfg["impl"] == "triton" and cfg["WARP_SPECIALIZE"]:
        # Known Triton 3.6 limits on Hopper (checked by compiling for sm_90a): refuse here
        # rather than spend a compile on them.
        if not cfg["TMA"]:
            raise ValueError(
                "config: WARP_SPECIALIZE needs TMA (Triton 3.6 specializes descriptor loads only)"
            )
        if cfg["FAST_EXP"] == 2:
            raise ValueError(
                "config: WARP_SPECIALIZE does not compile with FAST_EXP=2 (Triton 3.6)"
            )
    return cfg


# The space's constraint on warp-specialized tl configs that Triton 3.6 miscompiles on H100.
_WS_SAFE = space_constraint("triton 3.6 on H100")


def _ws_hazard(cfg: Mapping[str, Any]) -> str | None:
    """Warp-specialized configs that Triton 3.6 miscompiles on H100 (measured 2026-11-23:
    BLOCK_N=32 hung, 4 warps returned inf; 8 warps with BLOCK_N >= 64 passed every shape)."""
    if not evaluate(_WS_SAFE, cfg):
        return (
            "config: WARP_SPECIALIZE needs num_warps=8 and BLOCK_N >= 64 on the GPU "
            "(Triton 3.6 hangs or computes inf otherwise)"
        )
    return None


# --- launch plan --------------------------------------------------------------------------


@dataclass(frozen=True)
class _TensorSpec:
    """What the launch needs to know of one [B, H, S, D] operand (a tensor or a stand-in)."""

    strides: tuple[int, int, int, int]
    aligned16: bool


@dataclass(frozen=True)
class _Plan:
    """A launch of the tl-level kernel but for its four operands: `ints` are the kernel's
    runtime arguments after them, in its order (qk_scale last)."""

    grid: tuple[int]
    ints: tuple[Any, ...]
    constexprs: dict[str, Any]
    tma_qkv: bool
    tma_o: bool


def _flat_rows_ok(spec: _TensorSpec, B: int, H: int, S: int, itemsize: int) -> bool:
    """Whether rows (b, h, s) sit at a uniform stride, so that a 2-D [B*H*S, D] TMA view works
    (H and S of this operand: k and v have Hkv heads of Skv rows)."""
    sb, sh, ss, sd = spec.strides
    return (
        sd == 1
        and spec.aligned16
        and (ss * itemsize) % 16 == 0
        and (H == 1 or sh == S * ss)
        and (B == 1 or sb == H * S * ss)
    )


def _plan(
    shape: _Shape,
    dtype: torch.dtype,
    specs: tuple[_TensorSpec, _TensorSpec, _TensorSpec, _TensorSpec],
    causal: bool,
    scale: float,
    cfg: Mapping[str, Any],
    sm_count: int,
    l2_bytes: int,
) -> _Plan:
    B, H, Hkv, Sq, Skv, D = shape.B, shape.H, shape.Hkv, shape.Sq, shape.Skv, shape.D
    bm, bn = cfg["BLOCK_M"], cfg["BLOCK_N"]
    itemsize = dtype.itemsize
    num_m = triton.cdiv(Sq, bm)
    bh = B * H
    num_tiles = num_m * bh
    group = head_group(bh, 2 * Skv * D * itemsize, l2_bytes, causal)
    persistent = cfg["CTA_MULT"] > 0
    grid = (max(1, min(num_tiles, cfg["CTA_MULT"] * sm_count)),) if persistent else (num_tiles,)
    # Descriptors cover the flattened rows of each operand: B*H*Sq for q and o, B*Hkv*Skv for
    # k and v, which the kernel indexes from (bh // kv_group) * Skv.
    tma_qkv = (
        bool(cfg["TMA"])
        and _flat_rows_ok(specs[0], B, H, Sq, itemsize)
        and all(_flat_rows_ok(s, B, Hkv, Skv, itemsize) for s in specs[1:3])
    )
    # Warp specialization needs the descriptor loads: without them it is left off.
    warp_specialize = bool(cfg["WARP_SPECIALIZE"]) and tma_qkv
    if warp_specialize and not _interpreted():
        problem = _ws_hazard(cfg)
        if problem:
            raise ValueError(problem)
    even_m = Sq % bm == 0
    # A TMA store after a warp-specialized loop does not compile in Triton 3.6: O goes by pointers.
    tma_o = (
        tma_qkv and even_m and not warp_specialize and _flat_rows_ok(specs[3], B, H, Sq, itemsize)
    )
    ints: tuple[Any, ...] = (
        *specs[0].strides,
        *specs[1].strides,
        *specs[2].strides,
        *specs[3].strides,
        H,
        H // Hkv,
        Sq,
        Skv,
        bh,
        num_m,
        num_tiles,
        group,
        scale * _LOG2E,
    )
    constexprs = {
        "HEAD_DIM": D,
        "BLOCK_M": bm,
        "BLOCK_N": bn,
        "CAUSAL": bool(causal),
        "EVEN_M": even_m,
        "EVEN_N": Skv % bn == 0,
        "FAST_EXP": cfg["FAST_EXP"],
        "PERSISTENT": persistent,
        "TMA": tma_qkv,
        "O_TMA": tma_o,
        "WARP_SPECIALIZE": warp_specialize,
        "DOT_PRECISION": "ieee" if dtype == torch.float32 else "tf32",
    }
    return _Plan(grid, ints, constexprs, tma_qkv, tma_o)


def _descriptor(base: Any, rows: int, row_stride: int, block_rows: int, D: int) -> Any:
    from triton.tools.tensor_descriptor import TensorDescriptor

    return TensorDescriptor(base, [rows, D], [row_stride, 1], [block_rows, D])


def _spec(t: torch.Tensor) -> _TensorSpec:
    s = t.stride()
    return _TensorSpec((s[0], s[1], s[2], s[3]), t.data_ptr() % 16 == 0)


# --- the launcher -------------------------------------------------------------------------


class _Call(Protocol):
    """One call key's planned launch (kernels/launch_cache.py): writes `out`."""

    head_dim: int

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, scale: float
    ) -> None: ...


class _TritonCall:
    """The tl-level kernel's launch for one call key: plan, grid, constexprs and descriptor
    templates worked out once; a call binds the tensors and the scale."""

    def __init__(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        out: torch.Tensor,
        shape: _Shape,
        causal: bool,
        cfg: Mapping[str, Any],
    ) -> None:
        sm_count, l2_bytes = device_limits(q.device)
        specs = (_spec(q), _spec(k), _spec(v), _spec(out))
        plan = _plan(shape, q.dtype, specs, causal, 1.0, cfg, sm_count, l2_bytes)
        self.head_dim = D = shape.D
        self._sizes = plan.ints[:-1]  # the last is qk_scale, which each call passes
        bm, bn = cfg["BLOCK_M"], cfg["BLOCK_N"]
        q_rows, kv_rows = shape.B * shape.H * shape.Sq, shape.B * shape.Hkv * shape.Skv
        # Descriptors are checked once, here, over this call's tensors; a call passes their
        # bases. The templates drop theirs, so that the cache keeps no caller's tensor alive.
        templates: dict[int, Any] = {}
        if plan.tma_qkv:
            templates[0] = _descriptor(q, q_rows, q.stride(2), bm, D)
            templates[1] = _descriptor(k, kv_rows, k.stride(2), bn, D)
            templates[2] = _descriptor(v, kv_rows, v.stride(2), bn, D)
        if plan.tma_o:
            templates[3] = _descriptor(out, q_rows, out.stride(2), bm, D)
        options = {"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]}
        device = torch.cuda.current_device() if q.is_cuda else -1
        self._launch = CompiledLaunch(
            attn_fwd_kernel,
            plan.grid,
            plan.constexprs,
            options,
            device,
            {i: rebased(t, None) for i, t in templates.items()},
        )

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, scale: float
    ) -> None:
        self._launch(q, k, v, out, *self._sizes, scale * _LOG2E)


def _planned_call(
    q: Any, k: Any, v: Any, out: Any, causal: bool, config: Mapping[str, Any] | None
) -> _Call:
    """Check a call's inputs and config (ValueError naming the argument) and plan its launch."""
    shape, _ = _check_inputs(q, k, v, out, None)
    cfg = resolve_config(config)
    check_not_capturing(q.device, "attention")
    if cfg["impl"] == "gluon":
        # The Gluon kernel indexes K/V like Q (kernels/_gluon_attention_kernel.py).
        if shape.Hkv != shape.H:
            raise ValueError(
                f"k has {shape.Hkv} heads but q has {shape.H}: impl 'gluon' has no grouped-query "
                "attention (use impl 'triton')"
            )
        if shape.Sq != shape.Skv:
            raise ValueError(
                f"q has {shape.Sq} queries but k has {shape.Skv} keys: impl 'gluon' needs "
                "Sq == Skv (use impl 'triton')"
            )
        # The Gluon launcher applies its own defaults to the keys the config leaves out.
        return gluon.GluonCall(q, k, v, out, bool(causal), dict(config or {}))
    if cfg["impl"] == "decode":
        return decode.DecodeCall(q, k, v, out, bool(causal), dict(config or {}))
    return _TritonCall(q, k, v, out, shape, bool(causal), cfg)


# Planned launches by call key. A model calls with few keys (one per distinct shape and config);
# the bound only caps what a sweep over many shapes leaves behind.
_CALLS: BoundedCache[_Call] = BoundedCache(64)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    sm_scale: float | None = None,
    config: Mapping[str, Any] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q k^T * sm_scale) v for q [B, H, Sq, D] and k, v [B, Hkv, Skv, D] (any strides).

    Grouped-query and multi-query attention: Hkv divides H and q head h attends with K/V head
    h // (H // Hkv), read in place (k and v are not expanded). Sq <= Skv: causal masks are
    aligned bottom-right, query i seeing keys j <= i + Skv - Sq (FlashAttention-2's
    convention). sm_scale defaults to 1/sqrt(D); config=None runs the search space's default
    config; `out` (same shape/dtype/device as q, any strides) receives the result if given.
    TMA configs use tensor descriptors where the layout allows (rows at a uniform,
    16-byte-aligned stride); otherwise they run with plain pointers and without warp
    specialization, which needs the descriptors. impl 'gluon' takes Hkv == H and Sq == Skv
    only; impl 'decode' splits the keys over programs that each take all query heads of a K/V
    head (decoding: few queries, many keys). `attention_op` is the same launcher as a torch
    custom op, for torch.compile.

    Launch cost: the first call of a key (each tensor's sizes, strides, dtype, device and
    16-byte alignment; causal; the config; the current device) checks the inputs and plans the
    launch; later calls of the key reuse the plan and launch the compiled kernel directly
    (kernels/launch_cache.py). CUDA graphs: make that first call before capturing; a capture
    records the buffers' addresses, so replays must reuse the same tensors.
    """
    if out is None and isinstance(q, torch.Tensor):
        out = torch.empty_like(q)
    key = call_key((q, k, v, out), config, causal)
    call = _CALLS.get(key)
    if call is None:
        call = _planned_call(q, k, v, out, causal, config)
        _CALLS.put(key, call)
    assert out is not None  # _planned_call checked that q is a tensor
    call(q, k, v, out, _scale(sm_scale, call.head_dim))
    return out


# --- torch custom op, for torch.compile ----------------------------------------------------


# A thin wrapper: torch.compile(fullgraph=True) traces a call to it as one opaque node (the fake
# implementation gives the output's shape, dtype, device and strides), where it could not trace
# into the Triton launch. A custom op takes no dicts, so the config travels as a JSON string
# ("" for the default config); build it once, outside the compiled code, with json.dumps.
@torch.library.custom_op("evotune::attention", mutates_args=())
def attention_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    sm_scale: float | None = None,
    config_json: str = "",
) -> torch.Tensor:
    """`attention(q, k, v, causal, sm_scale, json.loads(config_json))` as torch.ops.evotune.attention."""
    return attention(q, k, v, causal, sm_scale, _json_config(config_json))


@functools.lru_cache(maxsize=64)
def _json_config(config_json: str) -> dict[str, Any] | None:
    """A custom op's config, parsed once a string (attention() only reads it)."""
    return json.loads(config_json) if config_json else None


@attention_op.register_fake
def _attention_fake(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    sm_scale: float | None = None,
    config_json: str = "",
) -> torch.Tensor:
    # What attention() allocates for its result.
    return torch.empty_like(q)


# --- plug-in interface (evotune/plugin.py) ------------------------------------------------


def _dims_shape(dims: Mapping[str, Any]) -> _Shape:
    """The call's sizes for a shape: H query heads and S queries against Hkv K/V heads and Skv
    keys (which a shape leaves out where they equal H and S)."""
    full = complete_shape_dims(dims)
    return _Shape(*(int(full[name]) for name in ("B", "H", "Hkv", "S", "Skv", "D")))


def make_inputs(dims: Mapping[str, Any], seed: int, device: str) -> dict[str, Any]:
    """Fresh q, k, v ~ N(0, 1) for a shape, reproducible from the seed."""
    dtype = _DTYPES[str(dims["dtype"])]
    shape = _dims_shape(dims)
    q_shape = (shape.B, shape.H, shape.Sq, shape.D)
    kv_shape = (shape.B, shape.Hkv, shape.Skv, shape.D)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    q, k, v = (
        torch.randn(size, generator=gen, device=device, dtype=torch.float32).to(dtype)
        for size in (q_shape, kv_shape, kv_shape)
    )
    return {"q": q, "k": k, "v": v, "causal": bool(dims["causal"]), "sm_scale": None}


def empty_output(inputs: Mapping[str, Any]) -> torch.Tensor:
    return torch.empty_like(inputs["q"])


def run(inputs: Mapping[str, Any], out: torch.Tensor, config: Mapping[str, Any]) -> None:
    attention(
        inputs["q"],
        inputs["k"],
        inputs["v"],
        causal=inputs["causal"],
        sm_scale=inputs.get("sm_scale"),
        config=config,
        out=out,
    )


def reference(inputs: Mapping[str, Any]) -> torch.Tensor:
    """Attention in float32 (float64 on the CPU) on upcast inputs, in chunks of heads so that
    the Sq x Skv scores stay under about 1 GiB; returned as float32. Grouped K/V heads are
    repeated here (the kernel reads them in place); causal masks are aligned bottom-right."""
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    B, H, Sq, D = q.shape
    Hkv, Skv = k.shape[1], k.shape[2]
    causal = bool(inputs["causal"])
    sm_scale = inputs.get("sm_scale")
    scale = 1.0 / math.sqrt(D) if sm_scale is None else float(sm_scale)
    work = torch.float64 if q.device.type == "cpu" else torch.float32
    qf = q.reshape(B * H, Sq, D)
    kf, vf = (t.repeat_interleave(H // Hkv, dim=1).reshape(B * H, Skv, D) for t in (k, v))
    out = torch.empty((B * H, Sq, D), dtype=torch.float32, device=q.device)
    chunk = max(1, (1 << 30) // (Sq * Skv * work.itemsize))
    mask = None
    if causal:
        mask = torch.ones((Sq, Skv), dtype=torch.bool, device=q.device).triu(Skv - Sq + 1)
    for i in range(0, B * H, chunk):
        sl = slice(i, i + chunk)
        scores = torch.matmul(qf[sl].to(work), kf[sl].to(work).transpose(1, 2)) * scale
        if mask is not None:
            scores.masked_fill_(mask, float("-inf"))
        out[sl] = torch.matmul(torch.softmax(scores, dim=-1), vf[sl].to(work)).float()
    return out.reshape(B, H, Sq, D)


def flops(dims: Mapping[str, Any]) -> float:
    """4 B H Sq Skv D (two matrix products); causal, the Sq^2 / 2 masked pairs less."""
    shape = _dims_shape(dims)
    pairs = shape.Sq * shape.Skv - (shape.Sq**2 / 2 if dims["causal"] else 0)
    return 4.0 * shape.B * shape.H * pairs * shape.D


def bytes(dims: Mapping[str, Any]) -> float:
    """The fewest bytes a call moves: q, k and v read once, o written once."""
    itemsize = _DTYPES[str(dims["dtype"])].itemsize
    shape = _dims_shape(dims)
    rows = 2 * shape.H * shape.Sq + 2 * shape.Hkv * shape.Skv
    return float(shape.B * rows * shape.D * itemsize)


# SDPA's math backend materialises the B x H x Sq x Skv scores (and repeats grouped K/V heads):
# a baseline where that is small (decoding, the small shapes), left out beyond.
_MATH_MAX_SCORES = 1 << 26


def baselines(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """torch's scaled_dot_product_attention, one backend each, on the same inputs (grouped K/V
    heads through enable_gqa): what `evotune bench` compares the kernel with. A backend
    without a kernel for these inputs raises when called (its row then says why)."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.bias import causal_lower_right

    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    causal, scale = bool(inputs["causal"]), inputs.get("sm_scale")
    gqa = k.shape[1] != q.shape[1]
    # SDPA's is_causal aligns the mask top-left; the kernel's (bottom-right) differs for Sq < Skv.
    mask = (
        causal_lower_right(q.shape[2], k.shape[2]) if causal and q.shape[2] != k.shape[2] else None
    )
    is_causal = causal and mask is None

    def backend_call(backend: Any) -> Any:
        def call() -> torch.Tensor:
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale, enable_gqa=gqa
                )

        return call

    backends = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }
    if q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] <= _MATH_MAX_SCORES:
        backends["math"] = SDPBackend.MATH
    return {f"sdpa:{name}": backend_call(backend) for name, backend in backends.items()}


def unsupported(
    config: Mapping[str, Any], dims: Mapping[str, Any], device: DeviceInfo
) -> str | None:
    """Why this config cannot run for this shape on this device at all, else None: first what
    this device cannot run (the interpreter, a GPU before Hopper), then what no device runs
    (`static_unsupported`)."""
    return _device_unsupported(config, dims, device) or static_unsupported(config, dims)


def static_unsupported(config: Mapping[str, Any], dims: Mapping[str, Any]) -> str | None:
    """Why no device runs this config for this shape, else None: what follows from the config
    and the dims alone. search_spaces/attention.yaml spells each of these as a constraint, so
    that a search never proposes such a config (tests/kernels/test_attention.py holds
    them equal at the named shapes)."""
    try:
        cfg = resolve_config(config)
    except ValueError as exc:
        return str(exc)
    if dims.get("D") not in SUPPORTED_HEAD_DIMS:
        return f"head dim D={dims.get('D')} is not supported ({SUPPORTED_HEAD_DIMS})"
    if dims.get("dtype") not in _DTYPES:
        return f"dtype {dims.get('dtype')!r} is not supported"
    shape = _dims_shape(dims)
    if shape.H % shape.Hkv:
        return f"Hkv={shape.Hkv} K/V heads do not divide H={shape.H}"
    if shape.Sq > shape.Skv:
        return f"S={shape.Sq} queries exceed Skv={shape.Skv} keys"
    if cfg["impl"] == "gluon":
        if shape.Hkv != shape.H:
            return "impl 'gluon' has no grouped-query attention (Hkv != H)"
        if shape.Sq != shape.Skv:
            return "impl 'gluon' needs as many queries as keys (S != Skv)"
        return gluon.static_unsupported(dict(config), dict(dims))
    if cfg["impl"] == "decode":
        return decode.static_unsupported(config)
    if cfg["WARP_SPECIALIZE"]:
        return _ws_hazard(cfg)
    return None


def _device_unsupported(
    config: Mapping[str, Any], dims: Mapping[str, Any], device: DeviceInfo
) -> str | None:
    """What this device (or this Triton) cannot run of a config that another device could."""
    try:
        cfg = resolve_config(config)
    except ValueError:
        return None  # static_unsupported says why
    capability = device.capability or (0, 0)
    bf16 = dims.get("dtype") == "bfloat16"
    if cfg["impl"] == "gluon":
        if device.interpreted:
            return "impl 'gluon' needs a Hopper GPU (sm_90); the CPU interpreter cannot run Gluon"
        if capability != (9, 0):
            return f"impl 'gluon' needs a Hopper GPU (sm_90), this is {device.name} {capability}"
        return gluon.device_unsupported(device)
    if device.interpreted:
        if bf16:
            return "the CPU interpreter cannot run bf16 dots"
        if cfg["impl"] == "decode":
            return None
        if cfg["FAST_EXP"] == 1:
            return "FAST_EXP=1 is inline PTX, which the CPU interpreter cannot run"
        if cfg["TMA"]:
            return "TMA needs a Hopper GPU; the interpreter would time plain loads"
        if cfg["WARP_SPECIALIZE"]:
            return "warp specialization needs a Hopper GPU; the interpreter ignores it"
        return None
    if cfg["impl"] == "decode":
        return None
    if cfg["TMA"] and capability < (9, 0):
        return f"TMA needs sm_90 or newer, this is {device.name} {capability}"
    if cfg["WARP_SPECIALIZE"] and capability < (9, 0):
        return f"warp specialization needs sm_90 or newer, this is {device.name} {capability}"
    if cfg["FAST_EXP"] == 1 and bf16 and capability < (9, 0):
        return f"ex2.approx.bf16x2 needs sm_90, this is {device.name} {capability}"
    return None


def compile_only(dims: Mapping[str, Any], config: Mapping[str, Any], device: Any = None) -> None:
    """Compile the kernel for contiguous inputs of this shape without launching it, so that a
    pool of processes can fill Triton's cache ahead of the GPU worker (needs a CUDA driver)."""
    if _interpreted():
        return
    cfg = resolve_config(config)
    if cfg["impl"] == "gluon":
        gluon.compile_only(dict(dims), dict(config), device)
        return
    if cfg["impl"] == "decode":
        decode.compile_only(dims, config, device)
        return
    from triton.runtime.jit import MockTensor

    shape = _dims_shape(dims)
    B, H, Hkv, Sq, Skv, D = shape.B, shape.H, shape.Hkv, shape.Sq, shape.Skv, shape.D
    dtype = _DTYPES[str(dims["dtype"])]
    q_spec = _TensorSpec((H * Sq * D, Sq * D, D, 1), True)
    kv_spec = _TensorSpec((Hkv * Skv * D, Skv * D, D, 1), True)
    specs = (q_spec, kv_spec, kv_spec, q_spec)
    # Grid and L2 grouping do not change the compiled code: any device numbers do.
    plan = _plan(shape, dtype, specs, bool(dims["causal"]), 1.0 / math.sqrt(D), cfg, 132, 50 << 20)
    q_rows, kv_rows = B * H * Sq, B * Hkv * Skv
    if plan.tma_qkv:
        q_arg: Any = _descriptor(MockTensor(dtype), q_rows, D, cfg["BLOCK_M"], D)
        k_arg: Any = _descriptor(MockTensor(dtype), kv_rows, D, cfg["BLOCK_N"], D)
        v_arg: Any = _descriptor(MockTensor(dtype), kv_rows, D, cfg["BLOCK_N"], D)
    else:
        q_arg = k_arg = v_arg = dtype
    o_arg: Any = (
        _descriptor(MockTensor(dtype), q_rows, D, cfg["BLOCK_M"], D) if plan.tma_o else dtype
    )
    attn_fwd_kernel.warmup(
        q_arg,
        k_arg,
        v_arg,
        o_arg,
        *plan.ints,
        grid=plan.grid,
        **plan.constexprs,
        num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"],
    )
