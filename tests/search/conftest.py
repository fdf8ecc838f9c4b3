"""Fixtures for the search tests: a toy space (fast, exhaustible) and synthetic landscapes."""

from __future__ import annotations

import pytest

from evotune.landscape import Landscape
from evotune.space import SearchSpace, load_space
from evotune.synthetic_landscapes import synthetic_landscape
from tests.search.toy import toy_landscape, toy_space


@pytest.fixture(scope="session")
def toy() -> SearchSpace:
    return toy_space()


@pytest.fixture(scope="session")
def toy_land(toy: SearchSpace) -> Landscape:
    return toy_landscape(toy)


@pytest.fixture(scope="session")
def attention() -> SearchSpace:
    return load_space("attention")


@pytest.fixture(scope="session")
def mission_land(attention: SearchSpace) -> Landscape:
    return synthetic_landscape(attention, "mission", seed=0)
