"""out = x + y for two vectors: the smallest evotune kernel plug-in (docs/guide/own-kernel.md).

evotune imports this module by the name that vecadd.yaml gives in `module:` (`vecadd`), so
the folder that holds it must be on the import path (PYTHONPATH) of the `evotune` process.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

_DTYPES = {"float16": torch.float16, "float32": torch.float32}


@triton.jit
def _add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, x + y, mask=mask)


# --- the plug-in interface (evotune/plugin.py) -----------------------------------------------


def make_inputs(dims: dict[str, Any], seed: int, device: str) -> dict[str, torch.Tensor]:
    """Fresh random inputs for a shape, the same for the same seed."""
    gen = torch.Generator(device=device).manual_seed(seed)
    n, dtype = int(dims["N"]), _DTYPES[dims["dtype"]]
    x = torch.randn(n, generator=gen, device=device).to(dtype)
    y = torch.randn(n, generator=gen, device=device).to(dtype)
    return {"x": x, "y": y}


def empty_output(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.empty_like(inputs["x"])


def run(inputs: dict[str, torch.Tensor], out: torch.Tensor, config: dict[str, Any]) -> None:
    """Launch the kernel with one config of vecadd.yaml's parameters, writing into `out`."""
    x, y = inputs["x"], inputs["y"]
    n = x.numel()
    grid = (triton.cdiv(n, config["BLOCK"]),)
    _add_kernel[grid](x, y, out, n, BLOCK=config["BLOCK"], num_warps=config["num_warps"])


def reference(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """What a correct output is, in float32: evotune compares within vecadd.yaml's tolerances."""
    return inputs["x"].float() + inputs["y"].float()


def flops(dims: dict[str, Any]) -> float:
    return float(dims["N"])  # one add per element


def unsupported(config: dict[str, Any], dims: dict[str, Any], device: Any) -> str | None:
    """Why a config cannot run on this device at all (None: it can). Nothing here."""
    return None
