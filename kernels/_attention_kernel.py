# mypy: allow-untyped-defs
# ruff: noqa: E741, SIM102, SIM108, SIM109, SIM300
# (Triton kernels: untyped tensor parameters, O as a name, constexpr if-blocks kept as blocks and
# apart from runtime conditions, comparisons the Triton front end folds at compile time.)
"""The Triton (tl-level) FlashAttention forward kernel; `kernels/attention.py` launches it.

One jitted kernel, specialised by constexpr knobs: tile sizes, the exp2 variant (FAST_EXP),
a persistent tile loop, tensor-descriptor (TMA) loads and Triton's warp specialization of
the KV loop. Causal attention runs one KV loop per query tile, which masks only the blocks
that reach the diagonal (a uniform branch per block): measured on an H200 (2026-11-30), this
was 2-5 % faster at mission, small and stage1 than two loops (unmasked, then diagonal), whose
second loop started its K/V loads only after the first had drained.
"""

from __future__ import annotations

import triton
import triton.language as tl

# 2^f on f in [-0.5, 0.5] by a degree-3 polynomial (relative-error fit, max 7.5e-5): enough for
# probabilities that are rounded to fp16/bf16 before the P @ V product.
_P0 = tl.constexpr(0.9999280571937561)
_P1 = tl.constexpr(0.6932609677314758)
_P2 = tl.constexpr(0.24261115491390228)
_P3 = tl.constexpr(0.055171653628349304)
# Adding 1.5 * 2^23 rounds a float32 of magnitude < 2^22 to an integer held in the low mantissa bits.
_ROUND_MAGIC = tl.constexpr(12582912.0)

# Loop modes: no mask; causal mask on every block (plus sequence bounds on loads); key tail
# (bounds only); causal mask only on the blocks that reach the diagonal.
_FULL = tl.constexpr(0)
_DIAG = tl.constexpr(1)
_TAIL = tl.constexpr(2)
_CAUSAL = tl.constexpr(3)


@triton.jit
def _exp2_fma(x):
    """2^x for x <= 0 on the FMA/ALU pipes only: 2^round(x) by exponent bits, times a polynomial."""
    # Clamp so that the exponent field of the result stays positive (2^-125 is zero after the
    # cast to fp16/bf16); this also maps -inf (masked scores) to that tiny value.
    x = tl.maximum(x, -125.0)
    t = x + _ROUND_MAGIC
    j = t - _ROUND_MAGIC
    f = x - j
    p = _P3 * f + _P2
    p = p * f + _P1
    p = p * f + _P0
    # The low bits of t hold round(x); shifted into the exponent field they multiply by 2^j
    # (the high bits of t shift out of the word).
    bits = p.to(tl.int32, bitcast=True) + (t.to(tl.int32, bitcast=True) << 23)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _exp2_packed(x, P_DTYPE: tl.constexpr):
    """2^x two lanes per instruction (ex2.approx.f16x2 / .bf16x2); returns a half-precision tile."""
    if P_DTYPE == tl.bfloat16:
        return tl.inline_asm_elementwise(
            "ex2.approx.ftz.bf16x2 $0, $1;",
            "=r,r",
            [x.to(tl.bfloat16)],
            dtype=tl.bfloat16,
            is_pure=True,
            pack=2,
        )
    else:
        return tl.inline_asm_elementwise(
            "ex2.approx.f16x2 $0, $1;",
            "=r,r",
            [x.to(tl.float16)],
            dtype=tl.float16,
            is_pure=True,
            pack=2,
        )


@triton.jit
def _probabilities(
    x, FAST_EXP: tl.constexpr, P_DTYPE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr
):
    """p = 2^x (x = scaled score minus row max) as the P @ V operand, and its row sums in fp32."""
    if FAST_EXP == 1:
        p_half = _exp2_packed(x, P_DTYPE)
        row_sum = tl.sum(p_half.to(tl.float32), 1)
        p = p_half.to(P_DTYPE)
    elif FAST_EXP == 2:
        # Even columns on the SFU, odd columns on the FMA pipes. Each thread of the MMA
        # accumulator layout holds column pairs, so the split and join move no data.
        x_sfu, x_fma = tl.split(tl.reshape(x, [BLOCK_M, BLOCK_N // 2, 2]))
        p32 = tl.reshape(tl.join(tl.math.exp2(x_sfu), _exp2_fma(x_fma)), [BLOCK_M, BLOCK_N])
        row_sum = tl.sum(p32, 1)
        p = p32.to(P_DTYPE)
    else:
        p32 = tl.math.exp2(x)
        row_sum = tl.sum(p32, 1)
        p = p32.to(P_DTYPE)
    return p, row_sum


@triton.jit
def _kv_loop(
    acc,
    l_i,
    m_i,
    q,
    K,
    V,
    k_base,
    v_base,
    stride_kn,
    stride_kd,
    stride_vn,
    stride_vd,
    kv_row0,
    lo,
    hi,
    S,
    qk_scale,
    offs_m,
    MODE: tl.constexpr,
    EVEN_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    FAST_EXP: tl.constexpr,
    TMA: tl.constexpr,
    WARP_SPECIALIZE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """Online softmax over key blocks [lo, hi) of S keys: updates the accumulator, row sums and
    row maxima. Causal modes keep the keys cols <= offs_m (query rows in key coordinates)."""
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    LOAD_MASK: tl.constexpr = MODE != _FULL and not EVEN_N
    P_DTYPE: tl.constexpr = q.dtype
    first_row = tl.min(offs_m)  # the tile's first query row: blocks past it need the mask
    for start_n in tl.range(lo, hi, BLOCK_N, warp_specialize=WARP_SPECIALIZE):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        cols = start_n + offs_n
        if TMA:
            # Rows past this head belong to the next one (or are zero-filled past the
            # tensor): their scores are masked below, so they never count.
            k = K.load([kv_row0 + start_n, 0])
        else:
            k_ptrs = k_base + cols[:, None] * stride_kn + offs_d[None, :] * stride_kd
            if LOAD_MASK:
                k = tl.load(k_ptrs, mask=cols[:, None] < S, other=0.0)
            else:
                k = tl.load(k_ptrs)
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION)
        if MODE == _FULL or MODE == _CAUSAL:
            if MODE == _CAUSAL:
                if start_n + BLOCK_N > first_row:
                    qk = tl.where(offs_m[:, None] >= cols[None, :], qk, float("-inf"))
            # log2(e) is folded into qk_scale: one FMA per score gives the exp2 argument
            # (a masked -inf stays -inf).
            m_ij = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
            x = qk * qk_scale - m_ij[:, None]
        else:
            if MODE == _DIAG:
                keep = offs_m[:, None] >= cols[None, :]
            else:
                keep = (cols < S)[None, :]
            s = tl.where(keep, qk * qk_scale, float("-inf"))
            m_ij = tl.maximum(m_i, tl.max(s, 1))
            x = s - m_ij[:, None]
        p, row_sum = _probabilities(x, FAST_EXP, P_DTYPE, BLOCK_M, BLOCK_N)
        alpha = tl.math.exp2(m_i - m_ij)
        l_i = l_i * alpha + row_sum
        acc = acc * alpha[:, None]
        if TMA:
            v = V.load([kv_row0 + start_n, 0])
        else:
            v_ptrs = v_base + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd
            if LOAD_MASK:
                v = tl.load(v_ptrs, mask=cols[:, None] < S, other=0.0)
            else:
                v = tl.load(v_ptrs)
        acc = tl.dot(p, v, acc, input_precision=DOT_PRECISION)
        m_i = m_ij
    return acc, l_i, m_i


@triton.jit
def _attn_tile(
    tile,
    Q,
    K,
    V,
    O,
    stride_qb,
    stride_qh,
    stride_qs,
    stride_qd,
    stride_kb,
    stride_kh,
    stride_ks,
    stride_kd,
    stride_vb,
    stride_vh,
    stride_vs,
    stride_vd,
    stride_ob,
    stride_oh,
    stride_os,
    stride_od,
    H,
    kv_group,
    Sq,
    Skv,
    BH,
    num_m,
    head_group,
    qk_scale,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr,
    EVEN_M: tl.constexpr,
    EVEN_N: tl.constexpr,
    FAST_EXP: tl.constexpr,
    TMA: tl.constexpr,
    O_TMA: tl.constexpr,
    WARP_SPECIALIZE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """One query tile of one (batch, head): the whole KV loop, then the normalised store."""
    # Tiles come in groups of `head_group` heads whose K/V share L2, the smaller remainder
    # group first (kernels/tile_order.py); inside a group the query blocks with the most
    # causal work go first, across all heads of the group.
    rem = BH % head_group
    in_rem = tile < rem * num_m
    heads = tl.where(in_rem, rem, head_group)
    t = tl.where(in_rem, tile, tile - rem * num_m)
    group = t // (heads * num_m)
    r = t - group * heads * num_m
    m_idx = r // heads
    bh = tl.where(in_rem, 0, rem + group * head_group) + (r - m_idx * heads)
    if CAUSAL:
        start_m = num_m - 1 - m_idx
    else:
        start_m = m_idx
    off_b = (bh // H).to(tl.int64)
    off_h = (bh % H).to(tl.int64)
    # q heads [g * kv_group, (g + 1) * kv_group) share K/V head g; since H = Hkv * kv_group,
    # bh // kv_group is the flat (batch, K/V head) index.
    off_kvh = ((bh % H) // kv_group).to(tl.int64)
    kv_row0 = (bh // kv_group) * Skv
    q_row0 = bh * Sq + start_m * BLOCK_M

    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    k_base = K
    v_base = V
    if not TMA:
        k_base = K + off_b * stride_kb + off_kvh * stride_kh
        v_base = V + off_b * stride_vb + off_kvh * stride_vh
    if TMA:
        q = Q.load([q_row0, 0])
    else:
        q_ptrs = (
            Q
            + off_b * stride_qb
            + off_h * stride_qh
            + offs_m[:, None] * stride_qs
            + offs_d[None, :] * stride_qd
        )
        if EVEN_M:
            q = tl.load(q_ptrs)
        else:
            q = tl.load(q_ptrs, mask=offs_m[:, None] < Sq, other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    # Triton 3.6 cannot warp-specialize a KV loop that follows another one, so with
    # WARP_SPECIALIZE each tile runs a single loop, masked throughout where it needs a mask
    # (causal: on every block; the per-block branch is not tried in a specialized loop).
    if CAUSAL:
        # Bottom-right alignment: the loop compares key columns with the query rows shifted
        # by Skv - Sq (0 for self-attention), computed once per tile.
        shift = Skv - Sq
        diag_hi = tl.minimum((start_m + 1) * BLOCK_M + shift, Skv)
        kv_offs_m = (start_m * BLOCK_M + shift) + tl.arange(0, BLOCK_M)
        mode: tl.constexpr = _DIAG if WARP_SPECIALIZE else _CAUSAL
        acc, l_i, m_i = _kv_loop(
            acc, l_i, m_i, q, K, V, k_base, v_base, stride_ks, stride_kd, stride_vs, stride_vd,
            kv_row0, 0, diag_hi, Skv, qk_scale, kv_offs_m, mode, EVEN_N, HEAD_DIM, BLOCK_M, BLOCK_N,
            FAST_EXP, TMA, WARP_SPECIALIZE, DOT_PRECISION,
        )  # fmt: skip
    elif EVEN_N:
        acc, l_i, m_i = _kv_loop(
            acc, l_i, m_i, q, K, V, k_base, v_base, stride_ks, stride_kd, stride_vs, stride_vd,
            kv_row0, 0, Skv, Skv, qk_scale, offs_m, _FULL, EVEN_N, HEAD_DIM, BLOCK_M, BLOCK_N,
            FAST_EXP, TMA, WARP_SPECIALIZE, DOT_PRECISION,
        )  # fmt: skip
    elif WARP_SPECIALIZE:
        acc, l_i, m_i = _kv_loop(
            acc, l_i, m_i, q, K, V, k_base, v_base, stride_ks, stride_kd, stride_vs, stride_vd,
            kv_row0, 0, Skv, Skv, qk_scale, offs_m, _TAIL, EVEN_N, HEAD_DIM, BLOCK_M, BLOCK_N,
            FAST_EXP, TMA, WARP_SPECIALIZE, DOT_PRECISION,
        )  # fmt: skip
    else:
        full_hi = Skv // BLOCK_N * BLOCK_N
        acc, l_i, m_i = _kv_loop(
            acc, l_i, m_i, q, K, V, k_base, v_base, stride_ks, stride_kd, stride_vs, stride_vd,
            kv_row0, 0, full_hi, Skv, qk_scale, offs_m, _FULL, EVEN_N, HEAD_DIM, BLOCK_M, BLOCK_N,
            FAST_EXP, TMA, WARP_SPECIALIZE, DOT_PRECISION,
        )  # fmt: skip
        acc, l_i, m_i = _kv_loop(
            acc, l_i, m_i, q, K, V, k_base, v_base, stride_ks, stride_kd, stride_vs, stride_vd,
            kv_row0, full_hi, Skv, Skv, qk_scale, offs_m, _TAIL, EVEN_N, HEAD_DIM, BLOCK_M, BLOCK_N,
            FAST_EXP, TMA, WARP_SPECIALIZE, DOT_PRECISION,
        )  # fmt: skip

    # Every row saw at least one unmasked key, so l_i > 0.
    o = (acc * (1.0 / l_i)[:, None]).to(q.dtype)
    if O_TMA:
        O.store([q_row0, 0], o)
    else:
        o_ptrs = (
            O
            + off_b * stride_ob
            + off_h * stride_oh
            + offs_m[:, None] * stride_os
            + offs_d[None, :] * stride_od
        )
        if EVEN_M:
            tl.store(o_ptrs, o)
        else:
            tl.store(o_ptrs, o, mask=offs_m[:, None] < Sq)


# Sizes are not specialised on divisibility (the masks and tile indices do not profit), so one
# compiled kernel serves every shape with the same head dim, dtype, causality and tile fit.
# kv_group is left to Triton's specialisation: at 1 (every q head has its own K/V head) it
# becomes a constant and the K/V head index costs nothing.
@triton.jit(do_not_specialize=["H", "Sq", "Skv", "BH", "num_m", "num_tiles", "head_group"])
def attn_fwd_kernel(
    Q,
    K,
    V,
    O,
    stride_qb,
    stride_qh,
    stride_qs,
    stride_qd,
    stride_kb,
    stride_kh,
    stride_ks,
    stride_kd,
    stride_vb,
    stride_vh,
    stride_vs,
    stride_vd,
    stride_ob,
    stride_oh,
    stride_os,
    stride_od,
    H,
    kv_group,
    Sq,
    Skv,
    BH,
    num_m,
    num_tiles,
    head_group,
    qk_scale,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr,
    EVEN_M: tl.constexpr,
    EVEN_N: tl.constexpr,
    FAST_EXP: tl.constexpr,
    PERSISTENT: tl.constexpr,
    TMA: tl.constexpr,
    O_TMA: tl.constexpr,
    WARP_SPECIALIZE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """O = softmax(Q K^T * scale) V; Q/O are [B, H, Sq, HEAD_DIM], K/V [B, H / kv_group, Skv,
    HEAD_DIM] (Sq <= Skv), as pointers or as descriptors over their flattened rows.

    q head h reads K/V head h // kv_group (grouped-query attention, without copies). Causal
    masks are aligned bottom-right: query i sees keys j <= i + Skv - Sq.
    qk_scale is sm_scale * log2(e). With PERSISTENT each program walks tiles
    pid, pid + grid, ...; otherwise the grid has one program per tile.
    """
    if PERSISTENT:
        for tile in tl.range(tl.program_id(0), num_tiles, tl.num_programs(0)):
            _attn_tile(
                tile, Q, K, V, O,
                stride_qb, stride_qh, stride_qs, stride_qd, stride_kb, stride_kh, stride_ks,
                stride_kd, stride_vb, stride_vh, stride_vs, stride_vd, stride_ob, stride_oh,
                stride_os, stride_od, H, kv_group, Sq, Skv, BH, num_m, head_group, qk_scale,
                HEAD_DIM, BLOCK_M, BLOCK_N, CAUSAL, EVEN_M, EVEN_N, FAST_EXP, TMA, O_TMA,
                WARP_SPECIALIZE, DOT_PRECISION,
            )  # fmt: skip
    else:
        _attn_tile(
            tl.program_id(0), Q, K, V, O,
            stride_qb, stride_qh, stride_qs, stride_qd, stride_kb, stride_kh, stride_ks,
            stride_kd, stride_vb, stride_vh, stride_vs, stride_vd, stride_ob, stride_oh,
            stride_os, stride_od, H, kv_group, Sq, Skv, BH, num_m, head_group, qk_scale,
            HEAD_DIM, BLOCK_M, BLOCK_N, CAUSAL, EVEN_M, EVEN_N, FAST_EXP, TMA, O_TMA,
            WARP_SPECIALIZE, DOT_PRECISION,
        )  # fmt: skip
