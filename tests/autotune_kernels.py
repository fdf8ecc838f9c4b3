"""Kernels for tests/test_autotune.py, in a module of their own so that a second Python
process imports the very same kernel (same module, name and source)."""

from __future__ import annotations

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
