"""A toy search space (100 valid configs at S=128) with every parameter kind, a conditional
branch and constraints, and a made-up landscape over it: small enough to exhaust in tests."""

from __future__ import annotations

import math

from evotune.landscape import Landscape, LandscapeTrial
from evotune.records import Config, TrialStatus
from evotune.search.grid import valid_configs
from evotune.space import SearchSpace, Shape

__all__ = ["TOY_DIMS", "toy_landscape", "toy_objective", "toy_space"]

TOY_DIMS = {"S": 128}


def toy_space() -> SearchSpace:
    return SearchSpace.model_validate(
        {
            "kernel": "toy",
            "module": "tests.search.toy",
            "dims": {"S": "int"},
            "parameters": {
                "impl": {"kind": "categorical", "values": ["a", "b"], "default": "a"},
                "BLOCK": {"kind": "ordered", "values": [16, 32, 64, 128], "default": 32},
                "warps": {
                    "kind": "ordered",
                    "values": [2, 4, 8],
                    "default": 4,
                    "when": "impl == 'a'",
                },
                "stages": {"kind": "int", "low": 1, "high": 4, "default": 2, "when": "impl == 'a'"},
                "flag": {"kind": "bool", "default": False},
                "ring": {"kind": "ordered", "values": [2, 3], "default": 2, "when": "impl == 'b'"},
            },
            "constraints": [
                {"expr": "BLOCK <= S", "why": "a tile fits the sequence"},
                {"expr": "impl != 'a' or BLOCK * stages <= 256", "why": "shared memory"},
            ],
            "tolerances": {"float16": {"atol": 0.01}},
            "shapes": {"s128": {"S": 128}, "s32": {"S": 32}},
        }
    )


def toy_objective(config: Config) -> tuple[TrialStatus, float | None]:
    """A bowl around BLOCK=64, warps=4, stages=3 (impl a), with a failing corner."""
    block = int(config["BLOCK"])
    if config["impl"] == "a":
        if int(config["warps"]) == 8 and block == 128:
            return TrialStatus.OUT_OF_RESOURCES, None
        p50 = 10.0 + 3 * abs(math.log2(block) - 6) + 2 * abs(int(config["warps"]) - 4) / 2
        p50 += 1.5 * abs(int(config["stages"]) - 3)
    else:
        p50 = 14.0 + 2 * abs(math.log2(block) - 5) + (0.5 if config["ring"] == 2 else 0.0)
    p50 += 0.7 if config["flag"] else 0.0
    return TrialStatus.OK, p50


def toy_landscape(space: SearchSpace | None = None) -> Landscape:
    space = space or toy_space()
    trials = []
    for config in valid_configs(space, TOY_DIMS):
        status, p50 = toy_objective(config)
        trials.append(LandscapeTrial(config, status, p50_us=p50))
    return Landscape("toy", Shape("s128", dict(TOY_DIMS)), {"gpu": "toy"}, len(trials), trials)
