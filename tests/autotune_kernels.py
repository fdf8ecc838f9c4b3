"""Kernels for tests/test_autotune.py and tests/autotuning/, in a module of their own so that
a second Python process (or `evotune tune-pending`) imports the very same kernel (same module,
name and source)."""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl


@triton.jit
def accumulate(x_ptr, y_ptr, n, BLOCK: tl.constexpr, BUG: tl.constexpr = 0):
    """y += x (+ 1 where BUG is set). BLOCK > 128 fails to compile, on purpose."""
    tl.static_assert(BLOCK <= 128)
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    tl.store(y_ptr + offsets, y + x + BUG, mask=mask)


@triton.jit
def gather(x_ptr, idx_ptr, y_ptr, n, BLOCK: tl.constexpr):
    """y[i] = x[idx[i]]: right only when every index points into x."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    idx = tl.load(idx_ptr + offsets, mask=mask, other=0)
    tl.store(y_ptr + offsets, tl.load(x_ptr + idx, mask=mask), mask=mask)


def gather_inputs(args: dict[str, Any]) -> dict[str, Any]:
    """The `inputs=` hook of gather: indices that are a permutation of x's."""
    order = torch.randperm(args["n"], generator=torch.Generator().manual_seed(1))
    return {"idx_ptr": order.to(args["x_ptr"].device)}
