# mypy: allow-untyped-defs
# ruff: noqa: E741
# (Triton kernels: untyped tensor parameters, O as a name.)
"""Split-KV (flash-decoding) attention kernels for few queries over many keys;
`kernels/attention_decode.py` launches them.

`decode_split_kernel`: one program per (batch, K/V head, split, row tile). Its rows (the M
dimension of both products) are all the query heads that share the K/V head times the Sq
queries, so that grouped-query decoding feeds the tensor cores 16+ rows from one K/V stream
instead of one row per query head. A program walks its share of the keys in BLOCK_N tiles with
the online softmax and writes, per row, the normalised partial output (fp32) and its
log2-sum-exp; with a single split it writes the final output instead.

`decode_combine_kernel`: one program per output row, reducing the partial outputs of all
splits by their log2-sum-exp weights.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _attend_block(
    acc,
    l_i,
    m_i,
    q,
    k_base,
    v_base,
    stride_kn,
    stride_kd,
    stride_vn,
    stride_vd,
    start_n,
    Skv,
    last_key,
    qk_scale,
    MASKED: tl.constexpr,
    CAUSAL: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_N: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """Online softmax over keys [start_n, start_n + BLOCK_N). MASKED blocks drop keys past Skv
    and (CAUSAL) keys past each row's `last_key`; a row may then see no key at all."""
    cols = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    k_ptrs = k_base + cols[:, None] * stride_kn + offs_d[None, :] * stride_kd
    v_ptrs = v_base + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd
    if MASKED:
        in_bounds = cols[:, None] < Skv
        k = tl.load(k_ptrs, mask=in_bounds, other=0.0)
        v = tl.load(v_ptrs, mask=in_bounds, other=0.0)
    else:
        k = tl.load(k_ptrs)
        v = tl.load(v_ptrs)
    s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
    if MASKED:
        keep = (cols < Skv)[None, :]
        if CAUSAL:
            keep = keep & (cols[None, :] <= last_key[:, None])
        s = tl.where(keep, s, float("-inf"))
    m_ij = tl.maximum(m_i, tl.max(s, 1))
    m_sub = m_ij
    if MASKED:
        # A row with no key so far keeps m = -inf; it subtracts 0 instead, so that its scores
        # (all -inf) give p = 0 and alpha = 0 rather than NaN from -inf - (-inf).
        m_sub = tl.where(m_ij == float("-inf"), 0.0, m_ij)
    p = tl.math.exp2(s - m_sub[:, None])
    alpha = tl.math.exp2(m_i - m_sub)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=DOT_PRECISION)
    return acc, l_i, m_ij


# Sizes are not specialised on divisibility (they only bound loops and masks); Sq and
# kv_group are, so that Sq == 1 (decoding) folds the row-to-(head, query) arithmetic.
@triton.jit(
    do_not_specialize=["Skv", "rows", "num_m", "num_splits", "blocks_per_split", "lse_offset"]
)
def decode_split_kernel(
    Q,
    K,
    V,
    O,
    Part,
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
    Hkv,
    kv_group,
    Sq,
    Skv,
    rows,
    num_m,
    num_splits,
    blocks_per_split,
    lse_offset,
    qk_scale,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr,
    SPLIT: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """Attention of one row tile of one (batch, K/V head) over one split of the keys.

    Q/O are [B, H, Sq, HEAD_DIM], K/V [B, Hkv, Skv, HEAD_DIM], any strides; H = Hkv * kv_group.
    Tile rows r < rows = kv_group * Sq are query head kvh * kv_group + r // Sq, query r % Sq.
    Split s covers key blocks [s * blocks_per_split, (s + 1) * blocks_per_split) (the launcher
    leaves no split empty). With SPLIT, Part holds fp32 partial outputs [B*H*Sq, num_splits,
    HEAD_DIM] and, from element lse_offset, their log2-sum-exp [B*H*Sq, num_splits]; without,
    the one split covers every key and writes O. qk_scale is sm_scale * log2(e). Causal masks
    are aligned bottom-right: query i sees keys j <= i + Skv - Sq.
    """
    # Row tiles of one split are neighbours in launch order, so they share its K/V in L2.
    pid = tl.program_id(0)
    m_idx = pid % num_m
    split = (pid // num_m) % num_splits
    pair = pid // (num_m * num_splits)
    off_b = (pair // Hkv).to(tl.int64)
    off_kvh = (pair % Hkv).to(tl.int64)

    r = m_idx * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = r < rows
    head = off_kvh * kv_group + r // Sq
    query = r % Sq
    offs_d = tl.arange(0, HEAD_DIM)
    q_ptrs = (
        Q
        + off_b * stride_qb
        + head[:, None] * stride_qh
        + query[:, None] * stride_qs
        + offs_d[None, :] * stride_qd
    )
    q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)  # padding rows: zeros, never stored
    k_base = K + off_b * stride_kb + off_kvh * stride_kh
    v_base = V + off_b * stride_vb + off_kvh * stride_vh

    lo = split * blocks_per_split * BLOCK_N
    hi = tl.minimum(lo + blocks_per_split * BLOCK_N, tl.cdiv(Skv, BLOCK_N) * BLOCK_N)
    # Keys below `unmasked_hi` are in bounds and visible to every row (the first query, the
    # most restricted one, sees keys up to Skv - Sq): those blocks skip the masks.
    visible_to_all = Skv - Sq + 1 if CAUSAL else Skv
    unmasked_hi = visible_to_all // BLOCK_N * BLOCK_N
    mid = tl.maximum(lo, tl.minimum(hi, unmasked_hi))
    last_key = query + (Skv - Sq)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    for start_n in tl.range(lo, mid, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        acc, l_i, m_i = _attend_block(
            acc, l_i, m_i, q, k_base, v_base, stride_ks, stride_kd, stride_vs, stride_vd,
            start_n, Skv, last_key, qk_scale, False, CAUSAL, HEAD_DIM, BLOCK_N, DOT_PRECISION,
        )  # fmt: skip
    for start_n in tl.range(mid, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        acc, l_i, m_i = _attend_block(
            acc, l_i, m_i, q, k_base, v_base, stride_ks, stride_kd, stride_vs, stride_vd,
            start_n, Skv, last_key, qk_scale, True, CAUSAL, HEAD_DIM, BLOCK_N, DOT_PRECISION,
        )  # fmt: skip

    if SPLIT:
        # A causal row may see none of this split's keys (l = 0): weight 0 in the combine.
        seen = l_i > 0.0
        l_safe = tl.where(seen, l_i, 1.0)
        o = acc * (1.0 / l_safe)[:, None]  # acc = 0 where no key was seen
        lse = tl.where(seen, m_i + tl.math.log2(l_safe), float("-inf"))
        out_row = (off_b * H + head) * Sq + query
        slot = out_row * num_splits + split
        part_ptrs = Part + slot[:, None] * HEAD_DIM + offs_d[None, :]
        tl.store(part_ptrs, o, mask=row_ok[:, None])
        tl.store(Part + lse_offset + slot, lse, mask=row_ok)
    else:
        # One split sees every key, and every row sees key 0: l > 0.
        o = (acc * (1.0 / l_i)[:, None]).to(O.dtype.element_ty)
        o_ptrs = (
            O
            + off_b * stride_ob
            + head[:, None] * stride_oh
            + query[:, None] * stride_os
            + offs_d[None, :] * stride_od
        )
        tl.store(o_ptrs, o, mask=row_ok[:, None])


@triton.jit(do_not_specialize=["num_splits", "lse_offset"])
def decode_combine_kernel(
    Part,
    O,
    stride_ob,
    stride_oh,
    stride_os,
    stride_od,
    H,
    Sq,
    num_splits,
    lse_offset,
    HEAD_DIM: tl.constexpr,
    SPLITS_POW2: tl.constexpr,
):
    """O[b, h, i] = sum_s w_s * part_s / sum_s w_s with w_s = 2^(lse_s - max lse), for the
    output row (b, h, i) = program id; Part as decode_split_kernel writes it."""
    row = tl.program_id(0)
    offs_s = tl.arange(0, SPLITS_POW2)
    offs_d = tl.arange(0, HEAD_DIM)
    split_ok = offs_s < num_splits
    slot = row.to(tl.int64) * num_splits + offs_s
    lse = tl.load(Part + lse_offset + slot, mask=split_ok, other=float("-inf"))
    # Every row sees key 0, which split 0 holds: the maximum is finite.
    weight = tl.math.exp2(lse - tl.max(lse, 0))
    part = tl.load(
        Part + slot[:, None] * HEAD_DIM + offs_d[None, :], mask=split_ok[:, None], other=0.0
    )
    o = tl.sum(part * weight[:, None], 0) / tl.sum(weight, 0)
    off_b = (row // (H * Sq)).to(tl.int64)
    off_h = (row // Sq) % H
    query = row % Sq
    o_ptrs = O + off_b * stride_ob + off_h * stride_oh + query * stride_os + offs_d * stride_od
    tl.store(o_ptrs, o.to(O.dtype.element_ty))
