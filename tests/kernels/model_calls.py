"""What the tests of attention as models call it share (test_attention_models.py, the tl-level
kernel; test_attention_decode.py, the split-KV kernel): inputs with grouped K/V heads, a
float64 reference and the space's tolerances."""

from __future__ import annotations

import torch
import yaml

from tests.kernels.aot import ROOT

__all__ = ["TOLERANCES", "check", "qkv", "reference"]

TOLERANCES: dict[str, dict[str, float]] = yaml.safe_load(
    (ROOT / "search_spaces" / "attention.yaml").read_text()
)["tolerances"]


def reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float | None = None
) -> torch.Tensor:
    """torch's SDPA in float64 on K/V with their heads repeated for each query head of the
    group, and a bottom-right causal mask (query i sees keys j <= i + Skv - Sq; SDPA's own
    is_causal aligns top-left when Sq != Skv)."""
    group = q.shape[1] // k.shape[1]
    Sq, Skv = q.shape[2], k.shape[2]
    k64, v64 = (t.double().repeat_interleave(group, dim=1) for t in (k, v))
    mask = torch.ones(Sq, Skv, dtype=torch.bool).tril(Skv - Sq) if causal else None
    return torch.nn.functional.scaled_dot_product_attention(
        q.double(), k64, v64, attn_mask=mask, scale=scale
    )


def qkv(
    B: int, H: int, Hkv: int, Sq: int, Skv: int, D: int, dtype: torch.dtype, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q [B, H, Sq, D] and k, v [B, Hkv, Skv, D] ~ N(0, 1), reproducible from the seed."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, Sq, D, generator=gen).to(dtype)
    k = torch.randn(B, Hkv, Skv, D, generator=gen).to(dtype)
    v = torch.randn(B, Hkv, Skv, D, generator=gen).to(dtype)
    return q, k, v


def check(out: torch.Tensor, ref: torch.Tensor) -> None:
    """No NaN, and within the space's tolerance of the float64 reference."""
    tol = TOLERANCES[str(out.dtype).removeprefix("torch.")]
    assert not torch.isnan(out).any(), "NaN in the output"
    torch.testing.assert_close(out.double(), ref, atol=tol["atol"], rtol=tol["rtol"])
