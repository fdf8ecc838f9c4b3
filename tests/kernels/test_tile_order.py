"""The head-group rule both attention launchers number their tiles with."""

from __future__ import annotations

import pytest

from evotune.kernels.tile_order import MAX_CAUSAL_HEAD_GROUP, head_group

MiB = 1 << 20


def test_non_causal_tiles_go_one_head_at_a_time() -> None:
    assert head_group(256, 512 * 1024, 60 * MiB, causal=False) == 1


def test_causal_groups_are_capped() -> None:
    # mission on an H200: 128 KiB of K/V a head, half the L2 holds 234 heads.
    assert head_group(256, 128 * 1024, 60 * MiB, causal=True) == MAX_CAUSAL_HEAD_GROUP


def test_causal_groups_fit_in_half_the_l2() -> None:
    # long / llama-d128: 2 MiB of K/V a head; half of 60 MiB holds 15 heads.
    assert head_group(32, 2 * MiB, 60 * MiB, causal=True) == 15


@pytest.mark.parametrize(
    ("bh", "head_bytes", "l2"), [(3, 128 * 1024, 60 * MiB), (8, 64 * MiB, 60 * MiB), (1, 1, 0)]
)
def test_a_group_has_between_one_head_and_all_of_them(bh: int, head_bytes: int, l2: int) -> None:
    group = head_group(bh, head_bytes, l2, causal=True)
    assert 1 <= group <= bh
