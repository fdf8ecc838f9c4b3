"""The Triton attention kernel on a CUDA GPU: every knob at every named shape, odd shapes,
non-contiguous inputs, against the float32 reference with the search space's tolerances.

Runs on a bare GPU host (torch, triton, pyyaml; no pydantic): shapes and tolerances are
read from search_spaces/attention.yaml directly. `tests/kernels/gpu_check.py` reuses VARIANTS.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

SPACE_FILE = Path(__file__).resolve().parents[2] / "search_spaces" / "attention.yaml"
SPACE: dict[str, Any] = yaml.safe_load(SPACE_FILE.read_text())
SHAPES: dict[str, dict[str, Any]] = SPACE["shapes"]
TOLERANCES: dict[str, dict[str, float]] = SPACE["tolerances"]

# Each knob away from the default config, and a few combinations of them.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "fast_exp1": {"FAST_EXP": 1},
    "fast_exp2": {"FAST_EXP": 2},
    "tma": {"TMA": True},
    # Warp specialization only where Triton 3.6 gets it right on H100 (8 warps, BLOCK_N >= 64).
    "tma_ws": {"BLOCK_M": 128, "num_warps": 8, "TMA": True, "WARP_SPECIALIZE": True},
    "tma_ws_fe1": {
        "BLOCK_M": 128,
        "num_warps": 8,
        "TMA": True,
        "WARP_SPECIALIZE": True,
        "FAST_EXP": 1,
    },
    "cta1": {"CTA_MULT": 1},
    "cta2_tma_fe2": {"CTA_MULT": 2, "TMA": True, "FAST_EXP": 2},
    "bm64_bn32_w4_cta1": {
        "BLOCK_M": 64,
        "BLOCK_N": 32,
        "num_warps": 4,
        "num_stages": 2,
        "CTA_MULT": 1,
    },
    "bm256_bn32_tma_fe1": {
        "BLOCK_M": 256,
        "BLOCK_N": 32,
        "num_warps": 8,
        "num_stages": 2,
        "TMA": True,
        "FAST_EXP": 1,
    },
}

# Shapes off the tile grid (masked tails, EVEN_M/EVEN_N false) and the variants run there.
ODD_SHAPES: dict[str, dict[str, Any]] = {
    "odd-d64-causal": {"B": 2, "H": 3, "S": 1000, "D": 64, "causal": True, "dtype": "float16"},
    "odd-d64-bf16": {"B": 2, "H": 3, "S": 777, "D": 64, "causal": False, "dtype": "bfloat16"},
    "odd-d128-causal-bf16": {
        "B": 1,
        "H": 4,
        "S": 1000,
        "D": 128,
        "causal": True,
        "dtype": "bfloat16",
    },
    "odd-d128": {"B": 1, "H": 2, "S": 77, "D": 128, "causal": False, "dtype": "float16"},
}
ODD_VARIANTS = ("default", "fast_exp1", "fast_exp2", "tma", "tma_ws", "cta1")

pytestmark = pytest.mark.gpu


def device_info() -> Any:
    from evotune.plugin import DeviceInfo

    props = torch.cuda.get_device_properties(0)
    return DeviceInfo(
        interpreted=False,
        name=props.name,
        capability=torch.cuda.get_device_capability(0),
        sm_count=props.multi_processor_count,
    )


@functools.lru_cache(maxsize=1)
def _case(name: str) -> tuple[dict[str, Any], torch.Tensor]:
    """Inputs and reference of one shape (cached: the tests run shape by shape)."""
    from evotune.kernels import attention as attn

    dims = SHAPES.get(name) or ODD_SHAPES[name]
    inputs = attn.make_inputs(dims, 1234, "cuda")
    return inputs, attn.reference(inputs)


def check_config(name: str, dims: dict[str, Any], config: dict[str, Any]) -> float:
    """Run one config on a shape's cached inputs; assert it matches the reference; max error."""
    from evotune.kernels import attention as attn

    reason = attn.unsupported(config, dims, device_info())
    if reason:
        pytest.skip(reason)
    inputs, ref = _case(name)
    out = attn.empty_output(inputs)
    out.fill_(float("nan"))
    attn.run(inputs, out, config)
    torch.cuda.synchronize()
    tol = TOLERANCES[dims["dtype"]]
    assert not torch.isnan(out).any(), "NaN in the output (unwritten or overflow)"
    err = (out.float() - ref).abs()
    bound = tol["atol"] + tol["rtol"] * ref.abs()
    assert bool((err <= bound).all()), f"max error {err.max().item():.3g} over tolerance {tol}"
    return float(err.max())


@pytest.mark.parametrize(
    ("shape", "variant"), [(s, v) for s in SHAPES for v in VARIANTS], ids=lambda x: str(x)
)
def test_named_shape(shape: str, variant: str) -> None:
    check_config(shape, SHAPES[shape], VARIANTS[variant])


@pytest.mark.parametrize(
    ("shape", "variant"), [(s, v) for s in ODD_SHAPES for v in ODD_VARIANTS], ids=lambda x: str(x)
)
def test_odd_shape(shape: str, variant: str) -> None:
    check_config(shape, ODD_SHAPES[shape], VARIANTS[variant])


@pytest.mark.parametrize("variant", ["default", "tma", "tma_ws"])
def test_non_contiguous_on_gpu(variant: str) -> None:
    from evotune.kernels import attention as attn

    B, S, H, D = 2, 300, 4, 64
    gen = torch.Generator(device="cuda").manual_seed(5)
    # [B, S, H, D] storage seen as [B, H, S, D]: TMA configs fall back to pointers here.
    q, k, v = (
        torch.randn(B, S, H, D, generator=gen, device="cuda").half().transpose(1, 2)
        for _ in range(3)
    )
    out = attn.attention(q, k, v, causal=True, config=VARIANTS[variant])
    ref = attn.reference({"q": q, "k": k, "v": v, "causal": True, "sm_scale": None})
    torch.testing.assert_close(out.float(), ref, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize(
    "config",
    [
        {"WARP_SPECIALIZE": True},  # needs TMA
        # hung (BLOCK_N=32) or returned inf (4 warps) on H100 with Triton 3.6: refused up front
        {"BLOCK_M": 128, "BLOCK_N": 32, "TMA": True, "WARP_SPECIALIZE": True},
        {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "TMA": True, "WARP_SPECIALIZE": True},
    ],
)
def test_bad_config_is_an_exception_not_a_crash(config: dict[str, Any]) -> None:
    from evotune.kernels import attention as attn

    inputs, _ = _case("tiny")
    with pytest.raises(ValueError, match="config"):
        attn.run(inputs, attn.empty_output(inputs), config)
