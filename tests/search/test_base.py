"""The strategy base: the record of the landscapes a strategy's defaults were tuned on."""

from __future__ import annotations

from pathlib import Path

import pytest

from evotune.landscape import load_landscape
from evotune.search.base import Strategy
from evotune.search.registry import DEFAULT_STRATEGY, STRATEGIES

ROOT = Path(__file__).resolve().parents[2]
LANDSCAPES = ROOT / "tests" / "data" / "landscapes"


@pytest.mark.parametrize("name", sorted(n for n, cls in STRATEGIES.items() if cls.tuned_on))
def test_the_tuning_subset_names_shipped_files_with_their_content(name: str) -> None:
    """Retuned on other files, or a file of the subset changed? Then the record must say so:
    compare marks results by this hash, and the held-out landscapes are the other files."""
    for landscape in STRATEGIES[name].tuned_on:
        path = ROOT / landscape.path
        assert path.is_file(), f"{name} was tuned on {landscape.path}, which does not exist"
        assert load_landscape(path).content_sha256 == landscape.sha256, landscape.path


def test_the_default_strategy_keeps_landscapes_out_of_its_tuning() -> None:
    """The hold-out protocol: the default strategy names its tuning subset, and at least one
    shipped landscape is left out of it to test the defaults on."""
    tuned = {Path(t.path).name for t in STRATEGIES[DEFAULT_STRATEGY].tuned_on}
    shipped = {p.name for p in LANDSCAPES.iterdir() if ".json" in p.name}
    assert tuned and tuned < shipped


def test_was_tuned_on_matches_by_content_hash() -> None:
    evolution: type[Strategy] = STRATEGIES[DEFAULT_STRATEGY]
    recorded = evolution.tuned_on[0].sha256
    assert evolution.was_tuned_on(recorded)
    assert not evolution.was_tuned_on("0" * 64)
    assert not evolution.was_tuned_on(None)  # a landscape not loaded from a file
    assert not STRATEGIES["random"].was_tuned_on(recorded)  # random has nothing to tune
