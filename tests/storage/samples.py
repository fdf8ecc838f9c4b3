"""What the storage tests store: one environment, one shape, one search, its trials."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from evotune.fingerprint import fingerprint_hash
from evotune.records import config_hash
from evotune.space import Shape
from evotune.storage import NewTrial, StudySpec

__all__ = ["ENV", "FINGERPRINT", "SHAPE", "SPEC", "new_trial"]

ENV = {
    "gpu": "NVIDIA H100 80GB HBM3",
    "driver": "580.65",
    "cuda": "13.0",
    "torch": "2.11.0",
    "triton": "3.6.0",
    "kernel_source_hash": "0123456789abcdef",
    "interpreted": False,
}
FINGERPRINT = fingerprint_hash(ENV)
SHAPE = Shape("tiny", {"B": 1, "S": 128, "causal": True, "dtype": "float16"})
SPEC = StudySpec(
    kernel="attention",
    shape=SHAPE,
    environment=ENV,
    strategy="evolution",
    settings={"population": 8, "mutation_rate": 0.25, "nested": {"a": [1, 2]}},
    seed=7,
    budget=10,
)


def new_trial(number: int, **changes: Any) -> NewTrial:
    """Trial `number` of a search: its own config, seed and lineage."""
    config = {"BLOCK_M": 64 * (number + 1), "TMA": number % 2 == 0, "impl": "triton"}
    trial = NewTrial(
        number=number,
        config=config,
        config_hash=config_hash(config),
        seed=number,
        generation=1,
        parents=("p0", "p1"),
        operator="crossover",
    )
    return replace(trial, **changes)
