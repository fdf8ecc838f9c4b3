"""Which query tiles each CTA of a persistent grid runs, balanced by their causal work.

A persistent grid that strides over the tiles (CTA p takes tiles p, p + P, p + 2P, ...) gives
one CTA more heavy causal tiles than another: at llama-d128 on an H200 (4096 tiles of 1 to 32
KV blocks, 132 CTAs, 15 heads a group) the busiest CTA has 5 % more work than the mean, and the
kernel waits for it. Instead the host plays the tiles through a greedy list scheduler once per
shape, in the order the gluon kernel numbers them (kernels/tile_order.py: head groups that share
L2, heaviest query block first), each tile to the CTA that would be free first; the busiest CTA
is then within one tile of the mean. The table is cached on the device, so a launch only reads
it. (The tl-level kernel's persistent grid still strides.)

Table layout (int32): `offsets[programs + 1]` then the tiles, CTA p's tiles at
`offsets[p] .. offsets[p + 1] - 1`, each packed as `m_block * bh_total + bh`.
"""

from __future__ import annotations

import functools
import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# A tile costs its KV blocks plus about one block of prologue/epilogue (measured on an H200,
# docs/lab/benchmarks.md issue 4 run 9: 1.3 us a tile boundary against 1.7 us a KV step). Its
# blocks, not the sum of its consumers' own blocks (three consumers skip some, see the gluon
# kernel): the sum balanced worse, stage1 359 us against 355, long 605 against 592 (two device
# calls, docs/lab/benchmarks.md issue 4 run 12).
TILE_OVERHEAD_BLOCKS = 1


def tile_sequence(n_m: int, bh: int, head_group: int, tile_order: int) -> list[tuple[int, int]]:
    """(m_block, bh) of every tile in the gluon kernel's numbering (the twin of its device-side
    `_tile_coords`): TILE_ORDER 1 runs groups of `head_group` heads, the remainder group
    first, heaviest query block first inside a group; TILE_ORDER 0 runs all heads of a query
    block together, heaviest first."""
    if tile_order != 1:
        return [(n_m - 1 - m_idx, h) for m_idx in range(n_m) for h in range(bh)]
    rem = bh % head_group
    groups = ([(0, rem)] if rem else []) + [
        (start, head_group) for start in range(rem, bh, head_group)
    ]
    return [
        (n_m - 1 - m_idx, start + h)
        for start, heads in groups
        for m_idx in range(n_m)
        for h in range(heads)
    ]


def kv_blocks(m_block: int, seq: int, block_m: int, block_n: int, causal: bool) -> int:
    """KV blocks a query tile visits (the twin of the device-side `_kv_blocks`)."""
    end = min(seq, (m_block + 1) * block_m) if causal else seq
    return -(-end // block_n)


def balanced_schedule(
    tiles: list[tuple[int, int]], costs: list[int], programs: int
) -> list[list[tuple[int, int]]]:
    """Each tile, in order, to the program with the least work so far (ties: lowest index)."""
    loads = [(0, p) for p in range(programs)]
    assigned: list[list[tuple[int, int]]] = [[] for _ in range(programs)]
    for tile, cost in zip(tiles, costs, strict=True):
        load, p = heapq.heappop(loads)
        assigned[p].append(tile)
        heapq.heappush(loads, (load + cost, p))
    return assigned


@dataclass(frozen=True)
class PersistentGrid:
    """What a persistent launch's schedule depends on: the tiles (query blocks x heads, their
    order and KV blocks) and the number of CTAs."""

    n_m: int
    bh: int
    head_group: int
    tile_order: int
    programs: int
    seq: int
    block_m: int
    block_n: int
    causal: bool

    def table(self) -> list[int]:
        """The int32 table the launch reads (layout in the module docstring)."""
        tiles = tile_sequence(self.n_m, self.bh, self.head_group, self.tile_order)
        costs = [
            kv_blocks(m, self.seq, self.block_m, self.block_n, self.causal) + TILE_OVERHEAD_BLOCKS
            for m, _ in tiles
        ]
        assigned = balanced_schedule(tiles, costs, self.programs)
        offsets = [0]
        for mine in assigned:
            offsets.append(offsets[-1] + len(mine))
        return offsets + [m * self.bh + h for mine in assigned for m, h in mine]


@functools.lru_cache(maxsize=32)
def schedule_tensor(grid: PersistentGrid, device: str) -> torch.Tensor:
    """`grid.table()` as an int32 tensor on `device`, built and uploaded once a shape."""
    import torch

    return torch.tensor(grid.table(), dtype=torch.int32, device=device)
