"""The fault-injection search space is a valid space file that names the plug-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import FAULT_MODULE, TINY

pytest.importorskip("pydantic")  # GPU hosts run the worker without it

SPACES = Path(__file__).with_name("spaces")


def test_faulty_space_loads_and_lists_every_fault() -> None:
    from evotune.space import load_space

    from . import fault_plugin

    space = load_space("faulty", SPACES)
    assert space.module == FAULT_MODULE
    assert space.parameters["fault"].choices() == list(fault_plugin.FAULTS)
    assert space.shape("tiny").dims == TINY
    assert space.default_config() == {"fault": "none", "BLOCK": 1024}
