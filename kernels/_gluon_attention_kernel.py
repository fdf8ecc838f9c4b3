# mypy: allow-untyped-defs
# (Device code: Gluon reads parameter annotations as constexpr/type markers, so the @gluon.jit
# functions carry only gl.constexpr annotations.)
"""Gluon (Hopper, sm_90a) FlashAttention forward: a TMA producer and wgmma consumer warpgroups.

Device code only; the launcher and the support checks live in `kernels/attention_gluon.py`.

Layout of one CTA (one or more query tiles, see CTA_MULT in the launcher):
- consumer warpgroup 0 is the default partition (4 warps); with CONSUMER_WGS == 2 or 3 the
  others are worker partitions. Each consumer owns BM_WG = BLOCK_M / CONSUMER_WGS query rows
  (BLOCK_M 192 = three consumers of 64 rows, as FlashAttention-3 at D64) and runs QK^T and PV
  on wgmma with the online softmax in registers.
- the producer is a worker partition of PRODUCER_WARPS warps that issues TMA loads of Q and of
  K/V tiles into a ring of KV_STAGES shared-memory stages, synchronised by mbarriers
  (ready: TMA bytes landed; empty: every consumer finished reading the stage).
- PRODUCER_WARPS == 0 turns warp specialisation off: the single consumer issues its own loads.
- causal: each consumer runs the KV blocks its own rows need (_own_kv_blocks): with BLOCK_M 192
  one or two of the three consumers end a block before the tile's diagonal. The blocks it skips
  it still takes its turns for and releases (_pass_unused_blocks).

Inside a consumer the KV loop is software-pipelined as in FlashAttention-3: QK^T of block j and
PV of block j-1 are issued together, and the softmax of block j runs while PV(j-1) is still on the
tensor cores. With two or three consumers they take turns to issue their wgmmas (round robin
on one mbarrier each; PP=0 lets them issue freely), so one warpgroup's softmax overlaps the
others' matrix work. K and V stages are released separately (K right after its QK^T).

Between tiles (derived by the launcher, not knobs): a persistent CTA double-buffers Q where shared
memory allows (QBUFS), so the next tile's Q and K/V arrive while this tile finishes; and O leaves
by a TMA store staged in the tile's Q buffer (O_TMA) wherever nothing needs that buffer before the
next tile — register stores of O queued up in the load/store unit (ncu, issue 4 run 8); with two
Q buffers the store drains under the next tile's first block. A persistent CTA runs the tiles
the host's balanced table gives it (SCHEDULED, kernels/tile_schedule.py).

What it takes for ptxas to keep the softmax between the two wgmma waits (checked in SASS):
no branch inside a KV step (unmasked and masked blocks run in separate loops), the P operand
written only after the PV wait (or double-buffered, PBUF=2), and a shared-memory store of the row
sums before the wait (PIN) — ptxas keeps memory ops in order but floats arithmetic past waits.
Other knobs: FAST_EXP (0 MUFU exp2, 1 ex2.approx.f16x2, 2 every other column as an FMA polynomial,
as in the tl-level kernel), TILE_ORDER (0 query-block-major, 1 groups of heads for K/V reuse in L2).
"""

from __future__ import annotations

from typing import NamedTuple

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)

# Triton 3.7 renamed the TMA copies async_load / async_store (the old names now raise); 3.6 has
# only the old names. Device code calls these aliases: the same builtins either way, so 3.6
# compiles byte-identical SASS.
_tma_load = getattr(tma, "async_load", None) or tma.async_copy_global_to_shared
_tma_store = getattr(tma, "async_store", None) or tma.async_copy_shared_to_global

# 2^f on f in [-0.5, 0.5], degree-3 fit of the relative error (max 7.5e-5, below fp16 rounding;
# the tl-level kernel's _exp2_fma, same constants). Used by FAST_EXP == 2 for the second element
# of each pair, the odd column in the wgmma layout (the tl-level kernel splits its columns so),
# so that half of the exponentials run on the FMA pipes instead of the MUFU unit. Clamping at
# -125 keeps the exponent field positive.
_POLY_EXP2_ASM = gl.constexpr("""
{
.reg .f32 t, r, f, p;
.reg .b32 jb, pb;
ex2.approx.ftz.f32 $0, $2;
max.ftz.f32 t, $3, 0fC2FA0000;
add.rn.ftz.f32 r, t, 0f4B400000;
sub.rn.ftz.f32 f, r, 0f4B400000;
sub.rn.ftz.f32 f, t, f;
fma.rn.ftz.f32 p, f, 0f3D61FB8B, 0f3E786F0D;
fma.rn.ftz.f32 p, p, f, 0f3F31798E;
fma.rn.ftz.f32 p, p, f, 0f3F7FFB49;
mov.b32 jb, r;
shl.b32 jb, jb, 23;
mov.b32 pb, p;
add.s32 pb, pb, jb;
mov.b32 $1, pb;
}
""")


@gluon.constexpr_function
def _mma_layout(n: int) -> gl.NVMMADistributedLayout:
    """Accumulator layout of one warpgroup's wgmma with instruction N = n."""
    return gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, n, 16])


class _Consts(NamedTuple):
    """The compile-time knobs the partitions share (one constexpr instead of sixteen)."""

    BLOCK_M: int
    BLOCK_N: int
    BM_WG: int
    HEAD_DIM: int
    WGS: int
    STAGES: int
    CAUSAL: bool
    FAST_EXP: int
    TURNS: int
    INLINE_LOADS: bool
    PBUF: int
    PIN: int
    TILE_ORDER: int
    SCHEDULED: bool
    QBUFS: int
    O_TMA: bool


@gluon.constexpr_function
def _consts(**knobs) -> _Consts:
    return _Consts(**knobs)


@gluon.jit
def _tile_coords(tile, n_m, BH, head_group, TILE_ORDER: gl.constexpr):
    """(query block, batch*head) of a tile id; the heaviest causal query blocks come first.

    TILE_ORDER 0: all heads of one query block together. Measured (ncu, H100, 2026-11-23): the
    CTAs that run at the same time then read K/V of as many different heads, so K/V are
    re-read from DRAM for every query block (llama-d128: 84% of DRAM bandwidth, ~4 GB moved).
    TILE_ORDER 1: the query blocks of `head_group` heads together (the smaller remainder group
    first, see kernels/tile_order.py), so concurrent CTAs share K/V in L2.
    """
    if TILE_ORDER == 1:
        # Branch-free: in_rem is 1 for the tiles of the remainder group (where group == 0).
        rem = BH % head_group
        in_rem = (tile < rem * n_m).to(gl.int32)
        heads = head_group + in_rem * (rem - head_group)
        t = tile - (1 - in_rem) * rem * n_m
        group = t // (heads * n_m)
        r = t - group * heads * n_m
        m_idx = r // heads
        bh = (1 - in_rem) * rem + group * heads + r - m_idx * heads
        m_block = n_m - 1 - m_idx
    else:
        m_block = n_m - 1 - tile // BH
        bh = tile % BH
    return m_block, bh


@gluon.jit
def _schedule_start(sched, SCHEDULED: gl.constexpr):
    """This CTA's tiles: entries first..end-1 of the schedule, and the first entry.

    SCHEDULED (persistent grid): the host's balanced table (kernels/tile_schedule.py);
    otherwise one tile a CTA, the tile with the CTA's own index.
    """
    pid = gl.program_id(0)
    if SCHEDULED:
        first = gl.load(sched + pid)
        end = gl.load(sched + pid + 1)
        entry = gl.load(sched + gl.num_programs(0) + 1 + first)
    else:
        first = pid
        end = pid + 1
        entry = pid
    return first, end, entry


@gluon.jit
def _schedule_next(
    sched, k, end, entry, n_m, BH, head_group, TILE_ORDER: gl.constexpr, SCHEDULED: gl.constexpr
):
    """(m_block, bh) of schedule entry k (`entry`), and entry k + 1 for the next call."""
    if SCHEDULED:
        packed = entry
        # Load the following entry now: its latency hides behind this tile.
        entry = gl.load(sched + gl.num_programs(0) + 1 + gl.minimum(k + 1, end - 1))
        m_block = packed // BH
        bh = packed - m_block * BH
    else:
        # One tile a CTA: entry k is the tile with the CTA's index.
        m_block, bh = _tile_coords(k, n_m, BH, head_group, TILE_ORDER)
    return m_block, bh, entry


@gluon.jit
def _kv_blocks(m_block, S, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, CAUSAL: gl.constexpr):
    if CAUSAL:  # noqa: SIM108 - device code: plain if/else lowers to the simplest IR
        hi = gl.minimum(S, (m_block + 1) * BLOCK_M)
    else:
        hi = S
    return gl.cdiv(hi, BLOCK_N)


@gluon.jit
def _own_kv_blocks(row0, n_kv, S, BM_WG: gl.constexpr, BLOCK_N: gl.constexpr, CAUSAL: gl.constexpr):
    """KV blocks one consumer's rows need (of the tile's n_kv).

    Causal: its rows may end a block or more before the tile's diagonal (BLOCK_M 192, BLOCK_N
    128: two of the three consumers on even query tiles, one on odd ones). A consumer whose rows all lie past S (the
    tail tile) runs one block, whose result is never stored.
    """
    if CAUSAL:  # noqa: SIM108
        n = gl.cdiv(gl.minimum(S, row0 + BM_WG), BLOCK_N)
    else:
        n = n_kv
    past_end = (row0 >= S).to(gl.int32)
    return n - past_end * (n - 1)


@gluon.jit
def _pass_unused_blocks(bufs, rnd, it, lo, hi, WG: gl.constexpr, C: gl.constexpr):
    """Release KV blocks lo..hi-1 of the tile that this consumer does not compute.

    Each still takes its turn (the round robin counts every consumer's steps) and waits for the
    block to land before its release: an arrive on a stage still in its previous phase would
    count toward that phase and free the stage under another consumer's reads.
    """
    _q, _k, _v, _q_ready, _q_empty, k_ready, v_ready, kv_empty, turn_bars, _pin = bufs
    for j in range(lo, hi):
        _turn_wait(turn_bars, rnd, WG, C.TURNS)
        _turn_pass(turn_bars, WG, C.TURNS)
        rnd += 1
        cur = it + j
        stage = cur % C.STAGES
        phase = (cur // C.STAGES) & 1
        mbarrier.wait(k_ready.index(stage), phase)
        mbarrier.arrive(kv_empty.index(stage), count=1)
        mbarrier.wait(v_ready.index(stage), phase)
        mbarrier.arrive(kv_empty.index(C.STAGES + stage), count=1)
    return rnd


@gluon.jit
def _exp2(x, FAST_EXP: gl.constexpr, dtype: gl.constexpr):
    """exp2 of a float32 tile; returns (p as computed, p in float32 for the row sum).

    p stays in its own precision (fp32, or fp16 for FAST_EXP=1): the cast to the PV operand type
    happens after the PV wait, see _kv_step.
    """
    if FAST_EXP == 1:
        # Packed half2 exponent: one MUFU op for two elements (fp16 only, see gluon_unsupported).
        x16 = x.to(gl.float16)
        p16 = gl.inline_asm_elementwise(
            "ex2.approx.f16x2 $0, $1;", "=r,r", [x16], dtype=gl.float16, is_pure=True, pack=2
        )
        return p16, p16.to(gl.float32)
    elif FAST_EXP == 2:
        p = gl.inline_asm_elementwise(
            _POLY_EXP2_ASM, "=f,=f,f,f", [x], dtype=gl.float32, is_pure=True, pack=2
        )
        return p, p
    else:
        p = gl.exp2(x)
        return p, p


@gluon.constexpr_function
def _round_pairs_asm(dtype) -> str:
    """PTX that rounds two float32 values into one register of two 16-bit ones (low first)."""
    kind = "bf16x2" if dtype == gl.bfloat16 else "f16x2"
    return f"cvt.rn.{kind}.f32 $0, $2, $1;"


@gluon.jit
def _pv_operand(p, dtype: gl.constexpr, p_layout: gl.constexpr):
    """P as the register operand of the PV wgmma.

    From float32 one cvt rounds two neighbouring columns into one register. With the plain cast
    ptxas packed each pair high-low and swapped the halves back by a PRMT before every PV:
    32 a KV step at BLOCK_N 128, 7 % of the loop (SASS, sm_90a). Three consumers, bound by
    instruction issue, ran stage1 in 321 us instead of 355 (H200, two device calls).
    """
    if p.dtype == gl.float32:
        # (The asm's result type is spelled out: a constexpr dtype is not taken there. The
        # bitcast to bfloat16 is free.)
        p = gl.inline_asm_elementwise(
            _round_pairs_asm(dtype), "=r,r,r", [p], dtype=gl.float16, is_pure=True, pack=2
        )
        p = p.to(dtype, bitcast=True)
    else:
        p = p.to(dtype)
    return gl.convert_layout(p, p_layout)


@gluon.jit
def _softmax_block(
    s,
    m_i,
    l_i,
    j,
    MASK,
    rows,
    S,
    qk_scale,
    BLOCK_N: gl.constexpr,
    CAUSAL: gl.constexpr,
    FAST_EXP: gl.constexpr,
    dtype: gl.constexpr,
    s_layout: gl.constexpr,
):
    """Online-softmax update for score block j; returns (p, alpha, m_new, l_new).

    MASK (a constexpr in the KV loops, a runtime flag in the prologue) applies the causal and
    sequence-end mask.
    """
    if MASK:
        if CAUSAL:
            # Columns relative to the block against one bound a row: one compare a score (two
            # compares, an AND and a column add before; llama-d128 4 % faster, H200).
            offs = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
            last = gl.minimum(rows, S - 1) - j * BLOCK_N
            valid = offs[None, :] <= last[:, None]
        else:
            # (The relative form here compiled to a 3 % slower stage1-noncausal with three
            # consumers, same loop instructions in another order: ptxas, not the mask.)
            cols = j * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
            valid = cols[None, :] < S
        s = gl.where(valid, s, float("-inf"))
    # Scores stay unscaled; the scale is folded into one FMA per element (log2 domain).
    m_new = gl.maximum(m_i, gl.max(s, axis=1) * qk_scale)
    x = s * qk_scale - m_new[:, None]
    p_op, p32 = _exp2(x, FAST_EXP, dtype)
    alpha = gl.exp2(m_i - m_new)
    l_new = l_i * alpha + gl.sum(p32, axis=1)
    return p_op, alpha, m_new, l_new


@gluon.jit
def _turn_wait(turn_bars, rnd, WG: gl.constexpr, TURNS: gl.constexpr):
    if TURNS:
        # WG0 starts (a fresh barrier passes a wait on parity 1); the turn then goes round.
        if WG == 0:
            mbarrier.wait(turn_bars.index(WG), (rnd & 1) ^ 1)
        else:
            mbarrier.wait(turn_bars.index(WG), rnd & 1)


@gluon.jit
def _turn_pass(turn_bars, WG: gl.constexpr, TURNS: gl.constexpr):
    if TURNS:
        mbarrier.arrive(turn_bars.index((WG + 1) % TURNS), count=1)


@gluon.jit
def _issue_tile(desc, smem, ready, stage, row):
    mbarrier.expect(ready.index(stage), desc.block_type.nbytes)
    _tma_load(desc, [row, 0], ready.index(stage), smem.index(stage))


@gluon.jit
def _issue_kv(k_desc, v_desc, k_smem, v_smem, k_ready, v_ready, stage, row):
    _issue_tile(k_desc, k_smem, k_ready, stage, row)
    _issue_tile(v_desc, v_smem, v_ready, stage, row)


@gluon.jit
def _kv_step(
    io,
    bufs,
    q_buf,
    pin_buf,
    acc,
    p,
    m_i,
    l_i,
    zero_s,
    rnd,
    it,
    j,
    n_kv,
    row_base,
    rows,
    WG: gl.constexpr,
    C: gl.constexpr,
    MASK: gl.constexpr,
    EARLY_P: gl.constexpr,
):
    """One pipelined KV step: issue QK^T(j) and PV(j-1), softmax of block j under PV(j-1).

    EARLY_P writes the new P operand before the PV wait; only safe for overlap when the caller
    double-buffers P (see _kv_range), otherwise ptxas gives it the registers of the P in flight.
    """
    _q_desc, _k_desc, _v_desc, _o_ptr, _o_desc, qk_scale, S, _bh, _group, _n_m, _sched = io
    _q, k_smem, v_smem, _q_ready, _q_empty, k_ready, v_ready, _empty, turn_bars, _pin = bufs
    STAGES: gl.constexpr = C.STAGES
    dtype: gl.constexpr = q_buf.dtype
    s_layout: gl.constexpr = _mma_layout(C.BLOCK_N)
    o_layout: gl.constexpr = _mma_layout(C.HEAD_DIM)
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    cur = it + j
    prev = cur - 1
    stage = cur % STAGES
    pstage = prev % STAGES
    _turn_wait(turn_bars, rnd, WG, C.TURNS)
    mbarrier.wait(k_ready.index(stage), (cur // STAGES) & 1)
    s_tok = warpgroup_mma(
        q_buf, k_smem.index(stage).permute((1, 0)), zero_s, use_acc=False, is_async=True
    )
    mbarrier.wait(v_ready.index(pstage), (prev // STAGES) & 1)
    acc_tok = warpgroup_mma(p, v_smem.index(pstage), acc, is_async=True)
    _turn_pass(turn_bars, WG, C.TURNS)
    # S_j is the older group: it is complete once at most one group is outstanding.
    s = warpgroup_mma_wait(1, deps=(s_tok,))
    _release(io, bufs, False, stage, j, n_kv, row_base, C)
    p_op, alpha, m_i, l_i = _softmax_block(
        s, m_i, l_i, j, MASK, rows, S, qk_scale, C.BLOCK_N, C.CAUSAL, C.FAST_EXP, dtype, s_layout
    )
    if EARLY_P:
        p_next = _pv_operand(p_op, dtype, p_layout)
    # ptxas keeps shared-memory stores and wgmma waits in program order but floats arithmetic,
    # and it likes to issue the wait early. Storing the new row sums (they depend on every
    # exponential of the block) before the wait pins the softmax ahead of it.
    if C.PIN:
        pin_buf.store(l_i)
    # p, the register operand of the PV in flight, must stay live until that wgmma completes.
    acc, p = warpgroup_mma_wait(0, deps=(acc_tok, p))
    _release(io, bufs, True, pstage, j - 1, n_kv, row_base, C)
    acc = acc * gl.convert_layout(alpha, gl.SliceLayout(1, o_layout))[:, None]
    if not EARLY_P:
        # Only now write the PV operand registers: with a single P buffer ptxas gives the new P
        # the registers of the P that the PV in flight reads.
        p_next = _pv_operand(p_op, dtype, p_layout)
    return acc, p_next, m_i, l_i


@gluon.jit
def _kv_range(
    io,
    bufs,
    q_buf,
    pin_buf,
    acc,
    p,
    m_i,
    l_i,
    zero_s,
    rnd,
    it,
    lo,
    hi,
    n_kv,
    row_base,
    rows,
    WG: gl.constexpr,
    C: gl.constexpr,
    MASK: gl.constexpr,
):
    """KV steps lo..hi-1. P_BUFFERS 2 (C.PBUF) unrolls by two with two P tiles (pa, pb) so that
    the new P never shares registers with the P the PV in flight reads, letting ptxas keep the
    softmax between the two wgmma waits."""
    if C.PBUF == 2:
        n = hi - lo
        pa = p
        for jj in range(0, n // 2):
            j = lo + 2 * jj
            acc, pb, m_i, l_i = _kv_step(
                io, bufs, q_buf, pin_buf, acc, pa, m_i, l_i, zero_s, rnd, it, j, n_kv,
                row_base, rows, WG, C, MASK, True,
            )  # fmt: skip
            acc, pa, m_i, l_i = _kv_step(
                io, bufs, q_buf, pin_buf, acc, pb, m_i, l_i, zero_s, rnd + 1, it, j + 1, n_kv,
                row_base, rows, WG, C, MASK, True,
            )  # fmt: skip
            rnd += 2
        if n % 2 == 1:
            acc, pa, m_i, l_i = _kv_step(
                io, bufs, q_buf, pin_buf, acc, pa, m_i, l_i, zero_s, rnd, it, hi - 1, n_kv,
                row_base, rows, WG, C, MASK, False,
            )  # fmt: skip
            rnd += 1
        p = pa
    else:
        for j in range(lo, hi):
            acc, p, m_i, l_i = _kv_step(
                io, bufs, q_buf, pin_buf, acc, p, m_i, l_i, zero_s, rnd, it, j, n_kv,
                row_base, rows, WG, C, MASK, False,
            )  # fmt: skip
            rnd += 1
    return acc, p, m_i, l_i, rnd


@gluon.jit
def _release(io, bufs, V: gl.constexpr, stage, j, n_kv, row_base, C: gl.constexpr):
    """Block j's K (V False: read by its QK^T) or V (V True: read by its PV) in `stage` is done
    with: hand the stage back (or refill it)."""
    desc = io[1 + V]  # k_desc, v_desc
    smem = bufs[1 + V]  # k_smem, v_smem
    ready = bufs[5 + V]  # k_ready, v_ready
    kv_empty = bufs[7]
    if C.INLINE_LOADS:
        if j + C.STAGES < n_kv:
            _issue_tile(desc, smem, ready, stage, row_base + (j + C.STAGES) * C.BLOCK_N)
    else:
        mbarrier.arrive(kv_empty.index(V * C.STAGES + stage), count=1)


@gluon.jit
def _producer(io, bufs, C: gl.constexpr):
    """TMA producer partition: Q of each tile, then the K/V blocks through the stage ring.

    With QBUFS == 2 (persistent grid) a tile's Q goes to the buffer the tile before last used:
    the producer loads it, and the K/V behind it, while the consumers still work on this tile.
    """
    q_desc, k_desc, v_desc, _o_ptr, _o_desc, _qk_scale, S, BH, head_group, n_m, sched = io
    q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready, kv_empty, _turns, _pin = bufs
    WGS: gl.constexpr = C.WGS  # (an attribute of a constexpr is a plain int: not a static range)
    it = 0
    tcount = 0
    # (Names unused elsewhere in the loop body: scf.for would carry a reassigned bound.)
    sched_first, sched_end, entry = _schedule_start(sched, C.SCHEDULED)
    for sched_k in range(sched_first, sched_end):
        m_block, bh, entry = _schedule_next(
            sched, sched_k, sched_end, entry, n_m, BH, head_group, C.TILE_ORDER, C.SCHEDULED
        )
        row_base = bh * S
        for w in gl.static_range(WGS):
            slot = (tcount % C.QBUFS) * WGS + w
            mbarrier.wait(q_empty.index(slot), ((tcount // C.QBUFS) & 1) ^ 1)
            mbarrier.expect(q_ready.index(slot), q_desc.block_type.nbytes)
            _tma_load(
                q_desc,
                [row_base + m_block * C.BLOCK_M + w * C.BM_WG, 0],
                q_ready.index(slot),
                q_smem.index(slot),
            )
        n_kv = _kv_blocks(m_block, S, C.BLOCK_M, C.BLOCK_N, C.CAUSAL)
        for j in range(n_kv):
            stage = it % C.STAGES
            free_phase = ((it // C.STAGES) & 1) ^ 1
            # K and V have their own "empty" barriers: K is free once QK^T is done, a whole
            # softmax earlier than V, so the next K load starts sooner.
            mbarrier.wait(kv_empty.index(stage), free_phase)
            _issue_tile(k_desc, k_smem, k_ready, stage, row_base + j * C.BLOCK_N)
            mbarrier.wait(kv_empty.index(C.STAGES + stage), free_phase)
            _issue_tile(v_desc, v_smem, v_ready, stage, row_base + j * C.BLOCK_N)
            it += 1
        tcount += 1  # noqa: SIM113 - runtime loop over tiles; enumerate is not device code


@gluon.jit
def _store_rows(o_ptr, o, row_base, row0, S, HEAD_DIM: gl.constexpr, o_layout: gl.constexpr):
    """Store the rows of a finished O tile that exist (the tail tile overhangs S)."""
    offs_m = row0 + gl.arange(0, o.shape[0], layout=gl.SliceLayout(1, o_layout))
    offs_d = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, o_layout))
    ptrs = o_ptr + (row_base + offs_m).to(gl.int64)[:, None] * HEAD_DIM + offs_d[None, :]
    gl.store(ptrs, o, mask=(offs_m < S)[:, None])


@gluon.jit
def _consumer(io, bufs, WG: gl.constexpr, C: gl.constexpr):
    """One consumer warpgroup: BM_WG query rows of every tile this CTA owns."""
    q_desc, k_desc, v_desc, o_ptr, o_desc, qk_scale, S, BH, head_group, n_m, sched = io
    q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready, kv_empty, turn_bars, pin_smem = bufs
    BLOCK_M: gl.constexpr = C.BLOCK_M
    BLOCK_N: gl.constexpr = C.BLOCK_N
    BM_WG: gl.constexpr = C.BM_WG
    HEAD_DIM: gl.constexpr = C.HEAD_DIM
    STAGES: gl.constexpr = C.STAGES
    CAUSAL: gl.constexpr = C.CAUSAL
    FAST_EXP: gl.constexpr = C.FAST_EXP
    TURNS: gl.constexpr = C.TURNS
    INLINE_LOADS: gl.constexpr = C.INLINE_LOADS
    TILE_ORDER: gl.constexpr = C.TILE_ORDER
    SCHEDULED: gl.constexpr = C.SCHEDULED
    QBUFS: gl.constexpr = C.QBUFS
    O_TMA: gl.constexpr = C.O_TMA
    s_layout: gl.constexpr = _mma_layout(BLOCK_N)
    o_layout: gl.constexpr = _mma_layout(HEAD_DIM)
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    row_layout: gl.constexpr = gl.SliceLayout(1, s_layout)
    orow_layout: gl.constexpr = gl.SliceLayout(1, o_layout)
    dtype: gl.constexpr = q_smem.dtype
    WGS: gl.constexpr = C.WGS
    # Two Q buffers: the O store staged in one drains while the next tile starts in the other.
    DEFER_O_WAIT: gl.constexpr = O_TMA and QBUFS == 2

    pin_buf = pin_smem.index(WG)
    zero_s = gl.zeros([BM_WG, BLOCK_N], gl.float32, s_layout)
    it = 0
    tcount = 0
    rnd = 0
    # (Names unused elsewhere in the loop body: scf.for would carry a reassigned bound.)
    sched_first, sched_end, entry = _schedule_start(sched, SCHEDULED)
    for sched_k in range(sched_first, sched_end):
        m_block, bh, entry = _schedule_next(
            sched, sched_k, sched_end, entry, n_m, BH, head_group, TILE_ORDER, SCHEDULED
        )
        row_base = bh * S
        row0 = m_block * BLOCK_M + WG * BM_WG
        n_kv = _kv_blocks(m_block, S, BLOCK_M, BLOCK_N, CAUSAL)
        if WGS > 1:  # noqa: SIM108
            n_own = _own_kv_blocks(row0, n_kv, S, BM_WG, BLOCK_N, CAUSAL)
        else:
            n_own = n_kv
        # Blocks before n_full need no mask (wholly below the diagonal and inside S).
        if CAUSAL:  # noqa: SIM108
            n_full = gl.minimum((row0 + 1) // BLOCK_N, S // BLOCK_N)
        else:
            n_full = S // BLOCK_N
        rows = row0 + gl.arange(0, BM_WG, layout=row_layout)
        q_slot = (tcount % QBUFS) * WGS + WG
        q_buf = q_smem.index(q_slot)

        if INLINE_LOADS:
            # No producer partition: this warpgroup fills the ring itself, STAGES blocks ahead.
            mbarrier.expect(q_ready.index(q_slot), q_desc.block_type.nbytes)
            _tma_load(q_desc, [row_base + row0, 0], q_ready.index(q_slot), q_buf)
            for jj in gl.static_range(STAGES):
                if jj < n_kv:
                    _issue_kv(
                        k_desc,
                        v_desc,
                        k_smem,
                        v_smem,
                        k_ready,
                        v_ready,
                        (it + jj) % STAGES,
                        row_base + jj * BLOCK_N,
                    )

        mbarrier.wait(q_ready.index(q_slot), (tcount // QBUFS) & 1)
        m_i = gl.full([BM_WG], float("-inf"), gl.float32, layout=row_layout)
        l_i = gl.full([BM_WG], 0.0, gl.float32, layout=row_layout)
        acc = gl.zeros([BM_WG, HEAD_DIM], gl.float32, o_layout)

        # Prologue: S_0 = Q K_0^T.
        stage = it % STAGES
        _turn_wait(turn_bars, rnd, WG, TURNS)
        mbarrier.wait(k_ready.index(stage), (it // STAGES) & 1)
        s_tok = warpgroup_mma(
            q_buf, k_smem.index(stage).permute((1, 0)), zero_s, use_acc=False, is_async=True
        )
        _turn_pass(turn_bars, WG, TURNS)
        rnd += 1
        s = warpgroup_mma_wait(0, deps=(s_tok,))
        _release(io, bufs, False, stage, 0, n_kv, row_base, C)
        p_op, _alpha0, m_i, l_i = _softmax_block(
            s,
            m_i,
            l_i,
            0,
            n_full <= 0,
            rows,
            S,
            qk_scale,
            BLOCK_N,
            CAUSAL,
            FAST_EXP,
            dtype,
            s_layout,
        )
        p = _pv_operand(p_op, dtype, p_layout)
        if DEFER_O_WAIT:  # noqa: SIM102 - a constexpr branch around a runtime one
            # The previous tile's O store had this prologue to read its Q buffer: only now wait
            # for it and hand that buffer to the producer (it holds the tile after this one).
            if tcount > 0:
                tma.store_wait(0)
                mbarrier.arrive(q_empty.index(((tcount - 1) % QBUFS) * WGS + WG), count=1)

        # Blocks that need no mask first, then the masked ones (diagonal / tail): two loops keep
        # every iteration free of branches between the wgmma issue and its wait. ptxas closes the
        # wgmma pipeline (waits for everything) at control-flow joins, which would serialise the
        # softmax after PV instead of overlapping it.
        n_split = gl.maximum(gl.minimum(n_full, n_own), 1)
        acc, p, m_i, l_i, rnd = _kv_range(
            io, bufs, q_buf, pin_buf, acc, p, m_i, l_i, zero_s, rnd, it, 1, n_split, n_kv,
            row_base, rows, WG, C, False,
        )  # fmt: skip
        acc, p, m_i, l_i, rnd = _kv_range(
            io, bufs, q_buf, pin_buf, acc, p, m_i, l_i, zero_s, rnd, it, n_split, n_own, n_kv,
            row_base, rows, WG, C, True,
        )  # fmt: skip

        # With O_TMA this tile's Q buffer stages O for a TMA store: the producer needs it only
        # for the tile after next (two buffers), or not at all (one tile a CTA).
        # Otherwise every QK^T of this tile has completed: hand Q back now, so that the
        # persistent producer loads the next tile's Q, and the K/V behind it, under the last PV.
        if not INLINE_LOADS and not O_TMA:
            mbarrier.arrive(q_empty.index(q_slot), count=1)

        # Epilogue: O += P_last V_last.
        last = it + n_own - 1
        stage = last % STAGES
        _turn_wait(turn_bars, rnd, WG, TURNS)
        mbarrier.wait(v_ready.index(stage), (last // STAGES) & 1)
        acc_tok = warpgroup_mma(p, v_smem.index(stage), acc, is_async=True)
        _turn_pass(turn_bars, WG, TURNS)
        rnd += 1
        acc, p = warpgroup_mma_wait(0, deps=(acc_tok, p))
        if not INLINE_LOADS:
            mbarrier.arrive(kv_empty.index(STAGES + stage), count=1)
        tcount += 1  # noqa: SIM113 - runtime loop over tiles; enumerate is not device code

        o = (acc / gl.convert_layout(l_i, orow_layout)[:, None]).to(dtype)
        if O_TMA:
            # A TMA store moves the rows in one bulk copy instead of 32 register stores a thread,
            # which queue up in the load/store unit; the tail tile overhangs S into the next head,
            # so it keeps the masked register stores.
            if row0 + BM_WG <= S:
                q_buf.store(o)
                fence_async_shared()
                _tma_store(o_desc, [row_base + row0, 0], q_buf)
                if not DEFER_O_WAIT:
                    tma.store_wait(0)
            else:
                _store_rows(o_ptr, o, row_base, row0, S, HEAD_DIM, o_layout)
            if not INLINE_LOADS and not DEFER_O_WAIT:
                mbarrier.arrive(q_empty.index(q_slot), count=1)
        else:
            _store_rows(o_ptr, o, row_base, row0, S, HEAD_DIM, o_layout)
        if WGS > 1:
            rnd = _pass_unused_blocks(bufs, rnd, it, n_own, n_kv, WG, C)
        it += n_kv
    if DEFER_O_WAIT:
        # The CTA's shared memory must outlive the last store's reads.
        tma.store_wait(0)


# Runtime sizes are not specialised on (divisibility by 16): one binary serves every shape.
@gluon.jit(do_not_specialize=["S", "BH", "head_group", "n_m"])
def gluon_attn_fwd(
    q_desc,
    k_desc,
    v_desc,
    o_ptr,
    o_desc,
    qk_scale,
    S,
    BH,
    head_group,
    n_m,
    sched,
    BLOCK_M: gl.constexpr,
    BLOCK_N: gl.constexpr,
    HEAD_DIM: gl.constexpr,
    CAUSAL: gl.constexpr,
    STAGES: gl.constexpr,
    WGS: gl.constexpr,
    FAST_EXP: gl.constexpr,
    PRODUCER_WARPS: gl.constexpr,
    PRODUCER_REGS: gl.constexpr,
    CONSUMER_REGS: gl.constexpr,
    PBUF: gl.constexpr,
    PIN: gl.constexpr,
    PP: gl.constexpr,
    TILE_ORDER: gl.constexpr,
    SCHEDULED: gl.constexpr,
    QBUFS: gl.constexpr,
    O_TMA: gl.constexpr,
):
    """Attention forward over a flat [B*H*S, D] view of q/k/v; grid = tiles or a persistent wave."""
    BM_WG: gl.constexpr = BLOCK_M // WGS
    dtype: gl.constexpr = q_desc.dtype
    # Q buffer of consumer w for the CTA's t-th tile: (t % QBUFS) * WGS + w.
    q_smem = gl.allocate_shared_memory(dtype, [QBUFS * WGS, BM_WG, HEAD_DIM], q_desc.layout)
    k_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], k_desc.layout)
    v_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], v_desc.layout)
    q_ready = gl.allocate_shared_memory(gl.int64, [QBUFS * WGS, 1], mbarrier.MBarrierLayout())
    q_empty = gl.allocate_shared_memory(gl.int64, [QBUFS * WGS, 1], mbarrier.MBarrierLayout())
    k_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    # kv_empty[s]: K of stage s is free; kv_empty[STAGES + s]: V of stage s is free.
    kv_empty = gl.allocate_shared_memory(gl.int64, [2 * STAGES, 1], mbarrier.MBarrierLayout())
    # turn_bars[w]: consumer w may issue (round robin, see _turn_wait).
    turn_bars = gl.allocate_shared_memory(gl.int64, [3, 1], mbarrier.MBarrierLayout())
    # Row sums of each consumer, stored every KV step only to order the softmax before the PV
    # wait in the scheduled code (see _kv_step); never read.
    pin_smem = gl.allocate_shared_memory(
        gl.float32, [WGS, BM_WG], gl.SwizzledSharedLayout(1, 1, 1, order=[0])
    )
    for w in gl.static_range(QBUFS * WGS):
        mbarrier.init(q_ready.index(w), count=1)
        mbarrier.init(q_empty.index(w), count=1)
    for i in gl.static_range(STAGES):
        mbarrier.init(k_ready.index(i), count=1)
        mbarrier.init(v_ready.index(i), count=1)
        mbarrier.init(kv_empty.index(i), count=WGS)
        mbarrier.init(kv_empty.index(STAGES + i), count=WGS)
    for i in gl.static_range(3):
        mbarrier.init(turn_bars.index(i), count=1)

    # Consumer warpgroups that take turns to issue their wgmmas (0: each issues freely).
    TURNS: gl.constexpr = WGS if (WGS > 1 and PP == 1) else 0
    C: gl.constexpr = _consts(
        BLOCK_M=BLOCK_M,
        BLOCK_N=BLOCK_N,
        BM_WG=BM_WG,
        HEAD_DIM=HEAD_DIM,
        WGS=WGS,
        STAGES=STAGES,
        CAUSAL=CAUSAL,
        FAST_EXP=FAST_EXP,
        TURNS=TURNS,
        INLINE_LOADS=PRODUCER_WARPS == 0,
        PBUF=PBUF,
        PIN=PIN,
        TILE_ORDER=TILE_ORDER,
        SCHEDULED=SCHEDULED,
        QBUFS=QBUFS,
        O_TMA=O_TMA,
    )
    # Runtime values reach the partitions in two tuples, the knobs in one constexpr (a tuple
    # built here would turn constexprs into tensors).
    io = (q_desc, k_desc, v_desc, o_ptr, o_desc, qk_scale, S, BH, head_group, n_m, sched)
    bufs = (
        q_smem,
        k_smem,
        v_smem,
        q_ready,
        q_empty,
        k_ready,
        v_ready,
        kv_empty,
        turn_bars,
        pin_smem,
    )
    # (The partition lists are literals: Gluon takes no list built in device code.)
    if PRODUCER_WARPS == 0:
        _consumer(io, bufs, 0, C)
    elif WGS == 1:
        gl.warp_specialize(
            [(_consumer, (io, bufs, 0, C)), (_producer, (io, bufs, C))],
            [PRODUCER_WARPS],
            [PRODUCER_REGS],
        )
    elif WGS == 2:
        gl.warp_specialize(
            [
                (_consumer, (io, bufs, 0, C)),
                (_producer, (io, bufs, C)),
                (_consumer, (io, bufs, 1, C)),
            ],
            [PRODUCER_WARPS, 4],
            [PRODUCER_REGS, CONSUMER_REGS],
        )
    else:
        gl.warp_specialize(
            [
                (_consumer, (io, bufs, 0, C)),
                (_producer, (io, bufs, C)),
                (_consumer, (io, bufs, 1, C)),
                (_consumer, (io, bufs, 2, C)),
            ],
            [PRODUCER_WARPS, 4, 4],
            [PRODUCER_REGS, CONSUMER_REGS, CONSUMER_REGS],
        )
