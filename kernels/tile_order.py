"""How many heads the attention kernels schedule together (host side of their tile order).

Both kernels (tl-level, and gluon with TILE_ORDER=1) number their query tiles in groups of
`head_group` heads: the CTAs that run at the same time then read the K/V of few heads, which
stay in L2, and inside a group the query blocks with the most causal work go first. When the
heads do not divide evenly, the smaller group (BH % head_group heads) runs first: left for
last, its heavy tiles would start late and run alone at the end of the kernel.

Measured on an H200 (2026-11-30, docs/lab/benchmarks.md, issue 3), tl-level kernel 64x64 w4 s3:
- non-causal (stage1-noncausal): one head a group was fastest (623 µs; groups of 16: 635,
  as many heads as fill half the L2: 665), since every tile has the same work.
- causal: groups of 32 heads were fastest at mission and stage1 (2-3 % over 1-16 heads),
  16 at long (32: +1 %, one head: +6 %, the causal tail); with the remainder group last, the
  old order lost 8 % at mission (a last group of 22 heads).
"""

from __future__ import annotations

# Causal groups: larger groups balance the heavy-first order over more heads; more than this
# spreads the concurrent CTAs over more K/V without a measured gain.
MAX_CAUSAL_HEAD_GROUP = 32


def head_group(bh: int, head_kv_bytes: int, l2_bytes: int, causal: bool) -> int:
    """Heads per tile group, for `bh` heads whose K and V take `head_kv_bytes` each head: one
    head when every tile has the same work (not causal); otherwise up to
    MAX_CAUSAL_HEAD_GROUP heads, as many as fill half of the L2."""
    if not causal:
        return 1
    fit = (l2_bytes // 2) // max(1, head_kv_bytes)
    return max(1, min(bh, MAX_CAUSAL_HEAD_GROUP, fit))
