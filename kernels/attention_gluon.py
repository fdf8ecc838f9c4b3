"""Launcher and support checks of the Hopper Gluon attention kernel (configs with impl == 'gluon').

`kernels/attention.py` dispatches gluon configs here: `gluon_unsupported` says why a config cannot
run (so the trial is stored as `invalid` instead of failing): `device_unsupported` what needs a
Hopper GPU and Gluon, `static_unsupported` what follows from the config and the dims alone, which
search_spaces/attention.yaml spells as constraints too, from the same numbers (its `derived`
constants), so that a search never proposes such a config. `GluonCall` plans a call's launch once
per call key (kernels/launch_cache.py) and runs it, `gluon_attention` does both for direct
callers. The device code is in `kernels/_gluon_attention_kernel.py`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evotune.plugin import DeviceInfo

from .attention_common import device_limits, parameter_defaults, space_constant
from .launch_cache import (
    BoundedCache,
    CompiledLaunch,
    call_key,
    capturing,
    check_not_capturing,
    hold_for_graphs,
    rebased,
)
from .tile_order import head_group
from .tile_schedule import PersistentGrid, schedule_tensor

if TYPE_CHECKING:
    import torch

__all__ = [
    "GLUON_DEFAULTS",
    "GluonCall",
    "GluonLaunch",
    "compile_only",
    "device_unsupported",
    "gluon_attention",
    "gluon_compile",
    "gluon_unsupported",
    "resolve_gluon_config",
    "static_unsupported",
]

# The space's defaults (search_spaces/attention.yaml) of the knobs the kernel reads, but for the
# tile: the space's BLOCK_M default (64) is the tl kernel's and cannot be split over the default
# two consumer warpgroups, and the YAML has no per-impl defaults, so a gluon config that leaves
# the tile out runs 128 x 128 (every config a search proposes names both).
_SPACE_KNOBS = (
    "PRODUCER_WARPS",
    "PRODUCER_REGS",
    "CONSUMER_WGS",
    "KV_STAGES",
    "FAST_EXP",
    "CTA_MULT",
    "TILE_ORDER",
    "PINGPONG",
    "P_BUFFERS",
)
GLUON_DEFAULTS: dict[str, int] = {
    "BLOCK_M": 128,
    "BLOCK_N": 128,
    **{name: int(parameter_defaults()[name]) for name in _SPACE_KNOBS},
}

# sm_90 limits and the register model's numbers, spelled once in the space file (its constraints
# on gluon configs use the same).
_SMEM_LIMIT: int = space_constant("smem_limit")
_REGS_PER_SM: int = space_constant("regs_per_sm")
_THREAD_REGS_MAX: int = space_constant("thread_regs_max")
_CONSUMER_REGS_MAX: int = space_constant("consumer_regs_max")
_CONSUMER_REGS_BASE: int = space_constant("consumer_regs_base")
_PIN_REGS: int = space_constant("pin_regs")
# Shared memory of one SM on sm_90 (a block may take _SMEM_LIMIT of it; each block reserves 1 KiB).
_SMEM_PER_SM = 233472
_SMEM_RESERVED_PER_BLOCK = 1024
_LOG2E = 1.0 / math.log(2.0)
_DTYPES = ("float16", "bfloat16")
_HEAD_DIMS = (64, 128)


@dataclass(frozen=True)
class GluonLaunch:
    """Everything the kernel launch needs that follows from a config and a head dim."""

    block_m: int
    block_n: int
    head_dim: int
    wgs: int
    stages: int
    fast_exp: int
    producer_warps: int
    producer_regs: int
    consumer_regs: int
    maxnreg: int | None
    cta_mult: int
    p_buffers: int = 1
    pingpong: int = 1
    pin_softmax: int = 1
    tile_order: int = 0
    q_buffers: int = 1

    @property
    def bm_wg(self) -> int:
        return self.block_m // self.wgs

    @property
    def persistent(self) -> bool:
        """A grid of CTA_MULT x SMs CTAs (at most as many as the SMs hold at once), each running
        the tiles of the host's balanced table; otherwise one CTA a tile."""
        return self.cta_mult > 0

    @property
    def ctas_per_sm(self) -> int:
        """CTAs of this launch one SM holds at once. With a producer the register split gives a
        CTA the whole register file (maxnreg for every warpgroup slot): one. Without one, the
        compiler picks the registers, so shared memory gives only a bound."""
        if self.producer_warps > 0:
            return 1
        return max(1, _SMEM_PER_SM // (smem_bytes(self) + _SMEM_RESERVED_PER_BLOCK))

    @property
    def o_via_tma(self) -> bool:
        """O leaves by a TMA store staged in the consumer's Q buffer where nothing else needs
        that buffer before the next tile: two Q buffers, or one tile a CTA. (A persistent CTA
        with one Q buffer loads the next tile's Q into it right after the last QK^T.)"""
        return self.q_buffers == 2 or not self.persistent

    @property
    def num_warps(self) -> int:
        return 4  # the default partition is consumer warpgroup 0

    @property
    def compile_options(self) -> dict[str, Any]:
        """Triton's launch/compile options for this launch."""
        options: dict[str, Any] = {"num_warps": self.num_warps}
        if self.maxnreg is not None:
            options["maxnreg"] = self.maxnreg
        return options


def _import_error() -> str | None:
    try:
        import triton.experimental.gluon  # noqa: F401
        from triton.experimental.gluon.language.nvidia.hopper import warpgroup_mma  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the installed Triton
        return f"triton.experimental.gluon (Hopper) is not importable: {exc}"
    return None


def resolve_gluon_config(config: dict[str, Any], head_dim: int) -> GluonLaunch:
    """Fill defaults and derive the register split and the Q buffers; raises ValueError on
    malformed values."""
    merged = {**GLUON_DEFAULTS, **{k: v for k, v in config.items() if k in GLUON_DEFAULTS}}
    vals = {k: int(v) for k, v in merged.items()}
    wgs = vals["CONSUMER_WGS"]
    pw = vals["PRODUCER_WARPS"]
    if pw == 0:
        maxnreg = None
        consumer_regs = 0
    else:
        # Registers are handed out per warpgroup: the producer's warps take one warpgroup slot.
        slots = wgs + 1
        maxnreg = min(_THREAD_REGS_MAX, _REGS_PER_SM // (slots * 128)) // 8 * 8
        # The other consumers (worker partitions) get what the producer leaves, like the default one.
        consumer_regs = min(
            _CONSUMER_REGS_MAX, (maxnreg * slots - vals["PRODUCER_REGS"]) // wgs // 8 * 8
        )
    launch = GluonLaunch(
        block_m=vals["BLOCK_M"],
        block_n=vals["BLOCK_N"],
        head_dim=head_dim,
        wgs=wgs,
        stages=vals["KV_STAGES"],
        fast_exp=vals["FAST_EXP"],
        producer_warps=pw,
        producer_regs=vals["PRODUCER_REGS"],
        consumer_regs=consumer_regs,
        maxnreg=maxnreg,
        cta_mult=vals["CTA_MULT"],
        p_buffers=vals["P_BUFFERS"],
        pingpong=vals["PINGPONG"],
        # One or two consumers pin the softmax ahead of the PV wait (without the pin ptxas moved
        # the exponentials past it: 4-5 % slower at llama-d128, fp16 and bf16); three do not (its
        # second live P tile spilled under their 160 registers at BLOCK_N 128).
        pin_softmax=int(wgs < 3),
        tile_order=vals["TILE_ORDER"],
    )
    # A persistent CTA with a producer loads the next tile's Q into a second buffer while the
    # consumers finish this tile (with one buffer, Q and the K/V behind it wait for this tile's
    # last QK^T, and every tile starts with a load latency), where shared memory allows it.
    double_q = dataclasses.replace(launch, q_buffers=2)
    if launch.persistent and launch.producer_warps > 0 and smem_bytes(double_q) <= _SMEM_LIMIT:
        return double_q
    return launch


def smem_bytes(launch: GluonLaunch, elem_bytes: int = 2) -> int:
    """Shared memory the kernel allocates: Q per consumer (and buffer), the K/V ring, the softmax
    pin (fp32 row sums), barriers (Q ready/empty, K/V ready, K/V empty, three turn barriers)."""
    q = launch.q_buffers * launch.block_m * launch.head_dim * elem_bytes
    kv = 2 * launch.stages * launch.block_n * launch.head_dim * elem_bytes
    pin = launch.block_m * 4 if launch.pin_softmax else 0  # unused, so not allocated, when off
    bars = 8 * (2 * launch.q_buffers * launch.wgs + 4 * launch.stages + 3)
    return q + kv + pin + bars


def _consumer_regs_needed(launch: GluonLaunch) -> int:
    """Live fp32/packed registers of one consumer thread in the pipelined loop, plus overhead.

    Over the 128 threads of the warpgroup: acc (BM_WG x D fp32), S (BM_WG x BN fp32), the P
    operand of the PV in flight (16-bit, packed in pairs) and, with the softmax pin (one or two
    consumers) or P_BUFFERS=2, the next P too (the softmax is pinned ahead of the PV wait, or P
    is double-buffered); ~32 for addresses, row statistics and masks, 40 with the pin (its
    row-sum store stays live): the space's consumer_regs_base and pin_regs.
    Calibrated on sm_90a compiles (Triton 3.6, cuobjdump): 232 ran spill-free under 240 (two
    consumers, pinned) and 160 under 160 (three consumers, D64, BN128, no pin); the same three
    pinned (200) and 256 or more under 240 spilled.
    """
    p_tiles = 2 if launch.pin_softmax or launch.p_buffers == 2 else 1
    per_thread = launch.bm_wg * (launch.head_dim + launch.block_n) // 128
    per_thread += p_tiles * launch.bm_wg * launch.block_n // 256
    if launch.p_buffers == 2:
        # The unrolled pair keeps a second score tile live: D64/BN128 and BM_WG=128 spilled.
        per_thread += launch.bm_wg * launch.block_n // 128
    return per_thread + _CONSUMER_REGS_BASE + (_PIN_REGS if launch.pin_softmax else 0)


def gluon_unsupported(
    config: dict[str, Any], dims: dict[str, Any], device: DeviceInfo
) -> str | None:
    """Why this gluon config cannot run for these dims on this device, else None."""
    return device_unsupported(device) or static_unsupported(config, dims)


def device_unsupported(device: DeviceInfo) -> str | None:
    """Why the Gluon kernel cannot run on this device at all (or with this Triton), else None."""
    if device.interpreted:
        return "the Gluon kernel does not run in the Triton interpreter (needs a real sm_90 GPU)"
    if not device.is_hopper:
        return f"the Gluon kernel needs an sm_90 (Hopper) GPU; this device is {device.name} {device.capability}"
    return _import_error()


def static_unsupported(config: dict[str, Any], dims: dict[str, Any]) -> str | None:
    """Why no device runs this gluon config for these dims, else None: the checks that read
    only the config and the dims (also used for offline compiles). For configs in the space's
    domains, the space's gluon constraints refuse exactly these."""
    dtype = str(dims.get("dtype", "float16"))
    if dtype not in _DTYPES:
        return f"the Gluon kernel supports float16 and bfloat16, not {dtype}"
    head_dim = int(dims["D"])
    if head_dim not in _HEAD_DIMS:
        return f"the Gluon kernel supports head dim 64 and 128, not {head_dim}"
    try:
        launch = resolve_gluon_config(config, head_dim)
    except (TypeError, ValueError) as exc:
        return f"malformed gluon config: {exc}"
    if launch.wgs not in (1, 2, 3):
        return f"CONSUMER_WGS must be 1, 2 or 3, not {launch.wgs}"
    if launch.block_m % (64 * launch.wgs) != 0 or launch.bm_wg > 128:
        return (
            f"BLOCK_M={launch.block_m} with CONSUMER_WGS={launch.wgs}: each consumer warpgroup needs "
            "64 or 128 query rows (wgmma M is 64 per warpgroup)"
        )
    if launch.block_n not in (32, 64, 128):
        return f"BLOCK_N must be 32, 64 or 128, not {launch.block_n}"
    if launch.stages < 2:
        return f"KV_STAGES must be at least 2, not {launch.stages}"
    if launch.fast_exp not in (0, 1, 2):
        return f"FAST_EXP must be 0, 1 or 2, not {launch.fast_exp}"
    if launch.fast_exp == 1 and dtype != "float16":
        return "FAST_EXP=1 (packed half2 exp2) yields fp16 probabilities; it is implemented for float16 only"
    if launch.producer_warps not in (0, 1, 2, 4):
        return f"PRODUCER_WARPS must be 0 (no warp specialisation), 1, 2 or 4, not {launch.producer_warps}"
    if launch.producer_warps == 0 and launch.wgs != 1:
        return "PRODUCER_WARPS=0 (no producer partition) is implemented only with CONSUMER_WGS=1"
    if launch.producer_warps and not (
        24 <= launch.producer_regs <= 256 and launch.producer_regs % 8 == 0
    ):
        return f"PRODUCER_REGS must be a multiple of 8 in [24, 256], not {launch.producer_regs}"
    if launch.pingpong not in (0, 1):
        return f"PINGPONG must be 0 or 1, not {launch.pingpong}"
    if launch.tile_order not in (0, 1):
        return f"TILE_ORDER must be 0 or 1, not {launch.tile_order}"
    if launch.p_buffers not in (1, 2):
        return f"P_BUFFERS must be 1 or 2, not {launch.p_buffers}"
    if launch.cta_mult < 0:
        return f"CTA_MULT must be >= 0, not {launch.cta_mult}"
    if launch.maxnreg is not None:
        # After setmaxnreg each consumer warpgroup runs with consumer_regs (two or three consumers) or
        # 240 (one consumer; seen in the PTX Triton 3.6 emits), not with the launch cap.
        budget = launch.consumer_regs if launch.wgs > 1 else _CONSUMER_REGS_MAX
        if launch.producer_regs > launch.maxnreg:
            return f"PRODUCER_REGS={launch.producer_regs} exceeds the per-thread budget {launch.maxnreg}"
    else:
        budget = _THREAD_REGS_MAX
    need = _consumer_regs_needed(launch)
    if need > budget:
        return (
            f"a consumer thread needs about {need} registers for BLOCK_M/WG={launch.bm_wg}, "
            f"BLOCK_N={launch.block_n}, D={head_dim}, but gets {budget}: it would spill"
        )
    smem = smem_bytes(launch)
    if smem > _SMEM_LIMIT:
        return (
            f"needs {smem} bytes of shared memory, over the {_SMEM_LIMIT}-byte limit of one block"
        )
    return None


@functools.lru_cache(maxsize=64)
def _smem_layout(rows: int, cols: int, fp16: bool) -> Any:
    """NVMMA shared layout of a [rows, cols] tile (cached: get_default_for costs ~30 us)."""
    from triton.experimental.gluon import language as gl

    return gl.NVMMASharedLayout.get_default_for([rows, cols], gl.float16 if fp16 else gl.bfloat16)


@functools.lru_cache(maxsize=1024)
def _prepare_cached(
    items: tuple[tuple[str, Any], ...], head_dim: int, dtype: str, causal: bool
) -> tuple[str | None, GluonLaunch | None, dict[str, Any] | None]:
    config = dict(items)
    dims = {"B": 1, "H": 1, "S": 1, "D": head_dim, "causal": causal, "dtype": dtype}
    reason = static_unsupported(config, dims)
    if reason:
        return reason, None, None
    launch = resolve_gluon_config(config, head_dim)
    return None, launch, _constexprs(launch, causal)


def _prepare(
    config: dict[str, Any], head_dim: int, dtype: str, causal: bool
) -> tuple[GluonLaunch, dict[str, Any]]:
    """Validated launch parameters of a config, memoised per launch (host time matters at S=512)."""
    items = tuple(sorted((k, v) for k, v in config.items() if k in GLUON_DEFAULTS))
    reason, launch, consts = _prepare_cached(items, head_dim, dtype, causal)
    if reason or launch is None or consts is None:
        raise ValueError(reason)
    return launch, dict(consts)


def _descriptors(
    q2: Any, k2: Any, v2: Any, o2: Any, launch: GluonLaunch, gl_dtype: Any
) -> tuple[Any, Any, Any, Any]:
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    q_block = [launch.bm_wg, launch.head_dim]
    kv_block = [launch.block_n, launch.head_dim]
    fp16 = gl_dtype == gl.float16
    q_layout = _smem_layout(launch.bm_wg, launch.head_dim, fp16)
    kv_layout = _smem_layout(launch.block_n, launch.head_dim, fp16)
    return (
        TensorDescriptor.from_tensor(q2, q_block, q_layout),
        TensorDescriptor.from_tensor(k2, kv_block, kv_layout),
        TensorDescriptor.from_tensor(v2, kv_block, kv_layout),
        # O leaves through a consumer's Q buffer: same block and layout as Q.
        TensorDescriptor.from_tensor(o2, q_block, q_layout),
    )


def _constexprs(launch: GluonLaunch, causal: bool) -> dict[str, Any]:
    return {
        "BLOCK_M": launch.block_m,
        "BLOCK_N": launch.block_n,
        "HEAD_DIM": launch.head_dim,
        "CAUSAL": bool(causal),
        "STAGES": launch.stages,
        "WGS": launch.wgs,
        "FAST_EXP": launch.fast_exp,
        "PRODUCER_WARPS": launch.producer_warps,
        "PRODUCER_REGS": launch.producer_regs,
        "CONSUMER_REGS": launch.consumer_regs,
        "PBUF": launch.p_buffers,
        "PIN": launch.pin_softmax,
        "PP": launch.pingpong,
        "TILE_ORDER": launch.tile_order,
        "QBUFS": launch.q_buffers,
        "O_TMA": launch.o_via_tma,
        "SCHEDULED": launch.persistent,
    }


def _grid(launch: GluonLaunch, num_tiles: int, sm_count: int) -> int:
    if launch.persistent:
        # CTAs past those the SMs hold at once would run as a second wave: they start only as
        # the first ones finish, after the balanced table has drained every SM once (llama-d128
        # on an H200: CTA_MULT 2 and 4 were 2.5 % and 6 % slower than 1 before this cap).
        per_sm = min(launch.cta_mult, launch.ctas_per_sm)
        return max(1, min(num_tiles, per_sm * sm_count))
    return num_tiles


class GluonCall:
    """The Gluon kernel's launch for one call key (kernels/launch_cache.py): launch parameters,
    grid, tile schedule and descriptor templates worked out once; a call binds the tensors and
    the scale. Raises ValueError for what the kernel cannot take."""

    def __init__(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        out: torch.Tensor,
        causal: bool,
        config: dict[str, Any],
    ) -> None:
        import torch
        from triton.experimental.gluon import language as gl

        from ._gluon_attention_kernel import gluon_attn_fwd

        if q.dim() != 4 or k.shape != q.shape or v.shape != q.shape or out.shape != q.shape:
            raise ValueError(
                f"q, k, v and out must share one [B, H, S, D] shape; got {tuple(q.shape)}"
            )
        batch, heads, seq, head_dim = q.shape
        dtype = str(q.dtype).removeprefix("torch.")
        launch, consts = _prepare(config, head_dim, dtype, bool(causal))
        check_not_capturing(q.device, "gluon_attention")
        self.head_dim = head_dim
        # Operands a descriptor cannot address are copied on every call (and O copied back).
        self._copies = not all(_tma_addressable(t) for t in (q, k, v))
        self._out_direct = _tma_addressable(out)
        rows = batch * heads * seq
        q2, k2, v2 = (_tma_operand(t).view(rows, head_dim) for t in (q, k, v))
        target = out if self._out_direct else _contiguous_like(q)
        gl_dtype = gl.float16 if q.dtype == torch.float16 else gl.bfloat16
        descriptors = _descriptors(q2, k2, v2, target.view(rows, head_dim), launch, gl_dtype)
        # Checked once, here; a call passes their bases. Without theirs, the templates keep no
        # caller's tensor alive. Arguments 0, 1, 2 and 4 of the kernel (3 is O's pointer).
        templates = dict(zip((0, 1, 2, 4), (rebased(d, None) for d in descriptors), strict=True))

        n_m = triton_cdiv(seq, launch.block_m)
        bh = batch * heads
        sm_count, l2_bytes = device_limits(q.device)
        programs = _grid(launch, n_m * bh, sm_count)
        group = head_group(bh, 2 * seq * head_dim * q.element_size(), l2_bytes, bool(causal))
        if launch.persistent:
            tiles = PersistentGrid(
                n_m,
                bh,
                group,
                launch.tile_order,
                programs,
                seq,
                launch.block_m,
                launch.block_n,
                bool(causal),
            )
            self._sched = schedule_tensor(tiles, str(q.device))
        else:
            self._sched = _no_schedule(str(q.device))
        self._held_for_graphs = False
        self._sizes = (seq, bh, group, n_m)
        device = torch.cuda.current_device() if q.is_cuda else -1
        self._launch = CompiledLaunch(
            gluon_attn_fwd, (programs,), consts, launch.compile_options, device, templates
        )

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, scale: float
    ) -> None:
        if self._copies:
            q, k, v = _tma_operand(q), _tma_operand(k), _tma_operand(v)
        target = out if self._out_direct else _contiguous_like(q)
        if not self._held_for_graphs and capturing(q.device):
            # A captured launch reads the schedule at every replay (kernels/launch_cache.py).
            hold_for_graphs(self._sched)
            self._held_for_graphs = True
        self._launch(q, k, v, target, target, scale * _LOG2E, *self._sizes, self._sched)
        if target is not out:
            out.copy_(target)


# Planned launches of `gluon_attention` by call key (attention() keeps its own).
_CALLS: BoundedCache[GluonCall] = BoundedCache(64)


def gluon_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    sm_scale: float,
    config: dict[str, Any],
    out: torch.Tensor,
) -> torch.Tensor:
    """softmax(q k^T * sm_scale) v on q/k/v [B, H, S, D] with the Gluon kernel; writes `out`.
    The first call of a key plans the launch (GluonCall); later calls reuse it."""
    key = call_key((q, k, v, out), config, causal)
    call = _CALLS.get(key)
    if call is None:
        call = GluonCall(q, k, v, out, causal, config)
        _CALLS.put(key, call)
    call(q, k, v, out, sm_scale)
    return out


@functools.lru_cache(maxsize=8)
def _no_schedule(device: str) -> torch.Tensor:
    """The schedule argument of a launch with one tile a CTA (the kernel does not read it)."""
    import torch

    return torch.zeros(1, dtype=torch.int32, device=device)


def _tma_addressable(t: torch.Tensor) -> bool:
    """Whether a TMA descriptor over the flat [rows, D] view can address `t`: contiguous, with a
    16-byte aligned base."""
    return t.is_contiguous() and t.data_ptr() % 16 == 0


def _tma_operand(t: torch.Tensor) -> torch.Tensor:
    """`t` itself where a TMA descriptor can address it, else a contiguous copy (a fresh
    allocation is aligned)."""
    if _tma_addressable(t):
        return t
    import torch

    return t.clone(memory_format=torch.contiguous_format)


def _contiguous_like(t: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.empty_like(t, memory_format=torch.contiguous_format)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _offline_operands(
    dims: dict[str, Any], config: dict[str, Any]
) -> tuple[GluonLaunch, Any, tuple[Any, Any, Any, Any]]:
    """For compiling without real inputs: the launch, a small tensor of the dtype (only its
    dtype and alignment matter) and the Q/K/V/O descriptors over it."""
    import torch
    from triton.experimental.gluon import language as gl

    reason = static_unsupported(config, dims)
    if reason:
        raise ValueError(reason)
    head_dim = int(dims["D"])
    launch = resolve_gluon_config(config, head_dim)
    fp16 = str(dims.get("dtype", "float16")) == "float16"
    tiny = torch.empty((256, head_dim), dtype=torch.float16 if fp16 else torch.bfloat16)
    descriptors = _descriptors(tiny, tiny, tiny, tiny, launch, gl.float16 if fp16 else gl.bfloat16)
    return launch, tiny, descriptors


def gluon_compile(
    dims: dict[str, Any], config: dict[str, Any], capability: tuple[int, int] = (9, 0)
) -> Any:
    """Compile the kernel for `dims`/`config` without a GPU (ahead-of-time, e.g. a compile pool).

    Returns Triton's CompiledKernel (its `asm` holds ttgir/ptx/cubin, `metadata.shared` the bytes).
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource
    from triton.runtime.jit import mangle_type

    from ._gluon_attention_kernel import gluon_attn_fwd

    launch, _tiny, (q_desc, k_desc, v_desc, o_desc) = _offline_operands(dims, config)
    ptr = "*fp16" if str(dims.get("dtype", "float16")) == "float16" else "*bf16"
    consts = _constexprs(launch, bool(dims["causal"]))
    signature: dict[str, str] = {
        "q_desc": mangle_type(q_desc),
        "k_desc": mangle_type(k_desc),
        "v_desc": mangle_type(v_desc),
        "o_ptr": ptr,
        "o_desc": mangle_type(o_desc),
        "qk_scale": "fp32",
        "S": "i32",
        "BH": "i32",
        "head_group": "i32",
        "n_m": "i32",
        "sched": "*i32",
    }
    signature.update({name: "constexpr" for name in consts})
    # As the JIT specialises a launch: torch allocations are 16-byte aligned (vector stores of O).
    attrs = {
        (list(signature).index(name),): [["tt.divisibility", 16]] for name in ("o_ptr", "sched")
    }
    src = GluonASTSource(gluon_attn_fwd, signature, constexprs=consts, attrs=attrs)
    target = GPUTarget("cuda", capability[0] * 10 + capability[1], 32)
    return triton.compile(src, target=target, options=launch.compile_options)


def compile_only(dims: dict[str, Any], config: dict[str, Any], device: Any = None) -> None:
    """Fill Triton's cache for this shape/config without launching (needs a CUDA driver).

    Goes through the JIT's own warm-up so the cache key matches the later launch exactly.
    """
    import torch

    from ._gluon_attention_kernel import gluon_attn_fwd

    launch, tiny, (q_desc, k_desc, v_desc, o_desc) = _offline_operands(dims, config)
    # Sizes are not specialised on (see the kernel's do_not_specialize): any values will do.
    gluon_attn_fwd.warmup(
        q_desc=q_desc,
        k_desc=k_desc,
        v_desc=v_desc,
        o_ptr=tiny,
        o_desc=o_desc,
        qk_scale=1.0,
        S=1,
        BH=1,
        head_group=1,
        n_m=1,
        sched=torch.zeros(1, dtype=torch.int32),
        **_constexprs(launch, bool(dims["causal"])),
        **launch.compile_options,
        grid=(1,),
    )
