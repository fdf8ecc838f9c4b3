"""y = 2 * x with `evotune.autotune` (docs/guide/own-kernel.md, "The decorator").

    TRITON_INTERPRET=1 python scale.py --tune   # a miss is tuned here, on this call
    TRITON_INTERPRET=1 python scale.py          # a new process launches the stored winner

The store is $EVOTUNE_DB, else ./evotune.db. Without a GPU, set TRITON_INTERPRET=1 so that
Triton's CPU interpreter runs the kernel.
"""

from __future__ import annotations

import sys

import torch
import triton
import triton.language as tl

import evotune

TUNE = "--tune" in sys.argv[1:]


@evotune.autotune(
    configs={"BLOCK": [64, 128, 256, 512], "num_warps": [2, 4]},
    key=["n"],
    constraints=["BLOCK <= n"],  # the space-file language, over knobs and key arguments
    tune=TUNE,
)
@triton.jit
def scale(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    tl.store(y_ptr + offsets, tl.load(x_ptr + offsets, mask=mask) * 2, mask=mask)


def main() -> None:
    device = "cpu" if torch.cuda.device_count() == 0 else "cuda"
    n = 3000
    x = torch.randn(n, device=device)
    y = torch.empty_like(x)
    scale[lambda meta: (triton.cdiv(n, meta["BLOCK"]),)](x, y, n)
    torch.testing.assert_close(y, 2 * x)
    print(f"launched with {scale.last_config} (tune={TUNE})")


if __name__ == "__main__":
    main()
