# mypy: allow-untyped-defs
"""The Triton GEMM kernels, C = A @ B with fp32 accumulation; `kernels/matmul.py` launches them.

`matmul_kernel` is one jitted kernel specialised by constexpr knobs:

- tile shape BLOCK_M x BLOCK_N x BLOCK_K and GROUP_M, the L2 swizzle: GROUP_M rows of tiles
  are walked column by column, so that while a group runs its A rows and a few B columns
  stay in L2 instead of every tile streaming a whole B column block from HBM;
- PERSISTENT: a grid of a few CTAs an SM, each looping over work items (tiles) with a
  stride of the grid, instead of one CTA a tile;
- AB_TMA / C_TMA: A and B (and C) through host-built tensor descriptors (TMA on Hopper), which
  also do the edge handling (out-of-bounds rows and columns read as zero, stores are clipped);
  otherwise plain pointer loads with any strides;
- SPLIT_K: the K loop of a tile is cut into SPLIT_K ranges, each a work item of its own that
  writes an fp32 partial tile into a workspace [SPLIT_K, M, N]; `splitk_reduce_kernel` then
  sums the partials in a fixed order (deterministic, no atomics, no memset) and casts to the
  output dtype. This is what lets a skinny M (decode: M=16) use all SMs;

Work item w is split s = w // tiles and tile t = w % tiles: the splits are the slowest index, so
that the tiles running at one time share K ranges (the same A and B panels in L2).
"""

from __future__ import annotations

import triton
import triton.language as tl

# Reduction tile of the split-K pass: 16 rows (the decode shapes have M=16) x 128 columns,
# 4 warps: 16 fp32 values a thread per partial, a few hundred CTAs at N=14336.
REDUCE_BLOCK_M = 16
REDUCE_BLOCK_N = 128


@triton.jit
def _divisible(x, DIV: tl.constexpr):
    """x, known to the compiler as a multiple of DIV (which the launcher checked it is).

    The JIT only tells apart integers divisible by 16: K=1234 or a row of 5000 fp16 would
    otherwise count as unaligned, which keeps their loads out of cp.async (no pipelining)
    and their stores scalar. `(x // DIV) * DIV` is x itself, with a divisibility the
    compiler's alignment analysis sees (tl.multiple_of on an argument does not reach it).
    """
    if DIV > 1:
        x = (x // DIV) * DIV
    return x


@triton.jit
def _work_coords(work, num_m, num_n, GROUP_M: tl.constexpr):
    """(pid_m, pid_n, split) of work item `work` (see the module docstring for the order)."""
    tiles = num_m * num_n
    split = work // tiles
    tile = work % tiles
    per_group = GROUP_M * num_n
    first_m = (tile // per_group) * GROUP_M
    rows = tl.minimum(num_m - first_m, GROUP_M)  # the last group may have fewer tile rows
    in_group = tile % per_group
    return first_m + in_group % rows, in_group // rows, split


@triton.jit
def _acc_pointers(
    a_ptr,
    b_ptr,
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    pid_m,
    pid_n,
    k_lo,
    k_hi,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    EVEN_K: tl.constexpr,
    LARGE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """The fp32 tile of A[rows, k_lo:k_hi] @ B[k_lo:k_hi, cols] (in BLOCK_K steps) by pointers."""
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    # Rows and columns past the edge read row/column 0 instead of being masked, so that the
    # loads need no predicates (the store masks them out). The hints keep the loads vector-
    # wide along a unit-stride M or N. A vector that the edge cuts (its first lane valid, the
    # rest clamped) still reads consecutive elements: that happens only where the row stride
    # is divisible by the vector width, so the vector ends within the row's stride, i.e. in
    # the padding of a padded parent tensor (as in Triton's own matmul tutorials).
    offs_m = tl.max_contiguous(tl.multiple_of(tl.where(offs_m < M, offs_m, 0), BLOCK_M), BLOCK_M)
    offs_n = tl.max_contiguous(tl.multiple_of(tl.where(offs_n < N, offs_n, 0), BLOCK_N), BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if LARGE:
        # Offsets past 2^31 elements: 64-bit offsets, and addresses rebuilt each step from them
        # (the step BLOCK_K * stride would be 32-bit arithmetic).
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
        offs_k = offs_k.to(tl.int64)
        for kt in range(k_lo, k_hi):
            ks = offs_k + kt * BLOCK_K  # kt * BLOCK_K < K + BLOCK_K fits 32 bits
            a_ptrs = a_ptr + offs_m[:, None] * stride_am + ks[None, :] * stride_ak
            b_ptrs = b_ptr + ks[:, None] * stride_bk + offs_n[None, :] * stride_bn
            a = tl.load(a_ptrs, mask=ks[None, :] < K, other=0.0)
            b = tl.load(b_ptrs, mask=ks[:, None] < K, other=0.0)
            acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)
    else:
        k0 = k_lo * BLOCK_K
        a_ptrs = a_ptr + offs_m[:, None] * stride_am + (k0 + offs_k[None, :]) * stride_ak
        b_ptrs = b_ptr + (k0 + offs_k[:, None]) * stride_bk + offs_n[None, :] * stride_bn
        for kt in range(k_lo, k_hi):
            if EVEN_K:
                a = tl.load(a_ptrs)
                b = tl.load(b_ptrs)
            else:
                k_left = K - kt * BLOCK_K
                a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
                b = tl.load(b_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
            acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)
            a_ptrs += BLOCK_K * stride_ak
            b_ptrs += BLOCK_K * stride_bk
    return acc


@triton.jit
def _acc_descriptors(
    a_desc,
    b_desc,
    pid_m,
    pid_n,
    k_lo,
    k_hi,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """The same tile through tensor descriptors: the TMA unit zero-fills past M, N and K."""
    off_m = pid_m * BLOCK_M
    off_n = pid_n * BLOCK_N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kt in range(k_lo, k_hi):
        a = a_desc.load([off_m, kt * BLOCK_K])
        b = b_desc.load([kt * BLOCK_K, off_n])
        acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)
    return acc


@triton.jit
def _store_tile(
    c,
    ws_ptr,
    acc,
    pid_m,
    pid_n,
    split,
    M,
    N,
    stride_cm,
    stride_cn,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    SPLIT_K: tl.constexpr,
    C_TMA: tl.constexpr,
    LARGE: tl.constexpr,
):
    """C tile (cast to C's dtype), or with SPLIT_K > 1 the fp32 partial of split `split`."""
    if C_TMA:
        c.store([pid_m * BLOCK_M, pid_n * BLOCK_N], acc.to(c.dtype))
    else:
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
        if LARGE:
            offs_m = offs_m.to(tl.int64)
            offs_n = offs_n.to(tl.int64)
        if SPLIT_K > 1:
            # The workspace is contiguous [SPLIT_K, M, N] fp32.
            base = ws_ptr + split.to(tl.int64) * M * N if LARGE else ws_ptr + split * M * N
            tl.store(base + offs_m[:, None] * N + offs_n[None, :], acc, mask=mask)
        else:
            ptrs = c + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
            tl.store(ptrs, acc.to(c.dtype.element_ty), mask=mask)


@triton.jit
def _work_item(
    work,
    a,
    b,
    c,
    ws_ptr,
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    SPLIT_K: tl.constexpr,
    AB_TMA: tl.constexpr,
    C_TMA: tl.constexpr,
    EVEN_K: tl.constexpr,
    LARGE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    pid_m, pid_n, split = _work_coords(work, num_m, num_n, GROUP_M)
    k_tiles = tl.cdiv(K, BLOCK_K)
    # Whole BLOCK_K steps a split; the last splits may get fewer (or none: a zero partial).
    per_split = tl.cdiv(k_tiles, SPLIT_K)
    k_lo = split * per_split
    k_hi = tl.minimum(k_lo + per_split, k_tiles)
    if AB_TMA:
        acc = _acc_descriptors(
            a,
            b,
            pid_m,
            pid_n,
            k_lo,
            k_hi,
            BLOCK_M,
            BLOCK_N,
            BLOCK_K,
            DOT_PRECISION,
        )
    else:
        acc = _acc_pointers(
            a,
            b,
            M,
            N,
            K,
            stride_am,
            stride_ak,
            stride_bk,
            stride_bn,
            pid_m,
            pid_n,
            k_lo,
            k_hi,
            BLOCK_M,
            BLOCK_N,
            BLOCK_K,
            EVEN_K,
            LARGE,
            DOT_PRECISION,
        )
    _store_tile(
        c,
        ws_ptr,
        acc,
        pid_m,
        pid_n,
        split,
        M,
        N,
        stride_cm,
        stride_cn,
        BLOCK_M,
        BLOCK_N,
        SPLIT_K,
        C_TMA,
        LARGE,
    )


@triton.jit
def matmul_kernel(
    a,
    b,
    c,
    ws_ptr,
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    SPLIT_K: tl.constexpr,
    PERSISTENT: tl.constexpr,
    AB_TMA: tl.constexpr,
    C_TMA: tl.constexpr,
    EVEN_K: tl.constexpr,
    LARGE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    DIV_K: tl.constexpr,
    DIV_N: tl.constexpr,
    DIV_AM: tl.constexpr,
    DIV_BK: tl.constexpr,
    DIV_CM: tl.constexpr,
):
    """a, b, c: pointers, or tensor descriptors where AB_TMA / C_TMA say so. ws_ptr: the fp32
    split-K workspace (unused, any pointer, with SPLIT_K == 1). DIV_*: a power of two that
    divides K, N and the row strides of A, B and C (see `_divisible`)."""
    K = _divisible(K, DIV_K)
    N = _divisible(N, DIV_N)
    stride_am = _divisible(stride_am, DIV_AM)
    stride_bk = _divisible(stride_bk, DIV_BK)
    stride_cm = _divisible(stride_cm, DIV_CM)
    if PERSISTENT:
        total = tl.cdiv(M, BLOCK_M) * tl.cdiv(N, BLOCK_N) * SPLIT_K
        for work in range(tl.program_id(0), total, tl.num_programs(0)):
            _work_item(
                work,
                a,
                b,
                c,
                ws_ptr,
                M,
                N,
                K,
                stride_am,
                stride_ak,
                stride_bk,
                stride_bn,
                stride_cm,
                stride_cn,
                BLOCK_M,
                BLOCK_N,
                BLOCK_K,
                GROUP_M,
                SPLIT_K,
                AB_TMA,
                C_TMA,
                EVEN_K,
                LARGE,
                DOT_PRECISION,
            )
    else:
        _work_item(
            tl.program_id(0),
            a,
            b,
            c,
            ws_ptr,
            M,
            N,
            K,
            stride_am,
            stride_ak,
            stride_bk,
            stride_bn,
            stride_cm,
            stride_cn,
            BLOCK_M,
            BLOCK_N,
            BLOCK_K,
            GROUP_M,
            SPLIT_K,
            AB_TMA,
            C_TMA,
            EVEN_K,
            LARGE,
            DOT_PRECISION,
        )


@triton.jit
def splitk_reduce_kernel(
    ws_ptr,
    c_ptr,
    M,
    N,
    stride_cm,
    stride_cn,
    SPLIT_K: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    LARGE: tl.constexpr,
    DIV_N: tl.constexpr,
    DIV_CM: tl.constexpr,
):
    """C = sum over s of ws[s] (fp32, s in order), cast to C's dtype; grid (cdiv M, cdiv N)."""
    N = _divisible(N, DIV_N)
    stride_cm = _divisible(stride_cm, DIV_CM)
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    if LARGE:
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
    # One plane of the workspace is M * N < 2^31 elements (the launcher checks): a 32-bit step.
    p = ws_ptr + offs_m[:, None] * N + offs_n[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for _s in tl.static_range(SPLIT_K):
        acc += tl.load(p, mask=mask, other=0.0)
        p += M * N
    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=mask)
