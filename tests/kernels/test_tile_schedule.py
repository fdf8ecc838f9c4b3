"""The balanced table of tiles that persistent CTAs run."""

from __future__ import annotations

import itertools

import pytest

from evotune.kernels.tile_schedule import (
    TILE_OVERHEAD_BLOCKS,
    PersistentGrid,
    balanced_schedule,
    kv_blocks,
    tile_sequence,
)


@pytest.mark.parametrize(("bh", "group", "order"), [(6, 4, 1), (8, 4, 1), (5, 1, 1), (6, 4, 0)])
def test_every_tile_comes_exactly_once(bh: int, group: int, order: int) -> None:
    tiles = tile_sequence(3, bh, group, order)
    assert sorted(tiles) == [(m, h) for m in range(3) for h in range(bh)]


def test_tile_order_1_runs_the_remainder_group_first_heaviest_block_first() -> None:
    # 3 heads in groups of 2: head 0 (the remainder group), then heads 1 and 2.
    assert tile_sequence(2, 3, 2, 1) == [(1, 0), (0, 0), (1, 1), (1, 2), (0, 1), (0, 2)]


def test_tile_order_0_runs_all_heads_of_a_query_block_together() -> None:
    assert tile_sequence(2, 2, 2, 0) == [(1, 0), (1, 1), (0, 0), (0, 1)]


def test_kv_blocks_stop_at_the_diagonal_and_at_the_sequence_end() -> None:
    assert kv_blocks(0, 4096, 128, 128, causal=True) == 1
    assert kv_blocks(31, 4096, 128, 128, causal=True) == 32
    assert kv_blocks(0, 1000, 128, 64, causal=True) == 2
    assert kv_blocks(7, 1000, 128, 64, causal=True) == 16  # the tail tile ends at S
    assert kv_blocks(0, 1000, 128, 64, causal=False) == 16


def test_equal_tiles_go_round_robin() -> None:
    assigned = balanced_schedule([(0, t) for t in range(7)], [5] * 7, 3)
    assert [[h for _, h in mine] for mine in assigned] == [[0, 3, 6], [1, 4], [2, 5]]


def _loads(assigned: list[list[tuple[int, int]]], seq: int, block: int, causal: bool) -> list[int]:
    return [
        sum(kv_blocks(m, seq, block, block, causal) + TILE_OVERHEAD_BLOCKS for m, _ in mine)
        for mine in assigned
    ]


def test_causal_work_is_balanced_better_than_striding() -> None:
    """llama-d128 on 132 SMs (BLOCK 128, 15 heads a group): striding leaves the busiest CTA
    well above the mean; the table keeps it within one tile of it."""
    n_m, bh, programs, seq = 32, 128, 132, 4096
    tiles = tile_sequence(n_m, bh, 15, 1)
    costs = [kv_blocks(m, seq, 128, 128, True) + TILE_OVERHEAD_BLOCKS for m, _ in tiles]
    balanced = _loads(balanced_schedule(tiles, costs, programs), seq, 128, True)
    strided = _loads([tiles[p::programs] for p in range(programs)], seq, 128, True)
    mean = sum(costs) / programs
    assert max(balanced) <= mean + max(costs)
    assert max(strided) > max(balanced) + 10


def test_table_lists_offsets_then_packed_tiles() -> None:
    n_m, bh, programs = 4, 3, 5
    table = PersistentGrid(n_m, bh, 2, 1, programs, 500, 128, 128, True).table()
    offsets, packed = table[: programs + 1], table[programs + 1 :]
    assert offsets[0] == 0 and offsets[-1] == n_m * bh == len(packed)
    assert all(a < b for a, b in itertools.pairwise(offsets))  # every CTA has a tile
    decoded = sorted(divmod(x, bh) for x in packed)
    assert decoded == [(m, h) for m in range(n_m) for h in range(bh)]
    # The heaviest tile (the last query block) is the first tile of CTA 0.
    assert divmod(packed[0], bh)[0] == n_m - 1
