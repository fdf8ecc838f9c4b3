"""Plain, picklable records that cross process boundaries: requests, results, statuses.

CUDA tensors never travel: a worker rebuilds inputs from the shape and the seed.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "Config",
    "Dims",
    "TrialRequest",
    "TrialResult",
    "TrialStatus",
    "config_hash",
]

Config = dict[str, Any]
Dims = dict[str, Any]


class TrialStatus(str, enum.Enum):
    """Every trial ends as exactly one of these (docs/how-evotune-measures.md, "Trial statuses")."""

    OK = "ok"
    COMPILE_ERROR = "compile_error"
    OUT_OF_RESOURCES = "out_of_resources"
    TIMEOUT = "timeout"
    CRASHED = "crashed"
    CUDA_ERROR = "cuda_error"
    WRONG_RESULT = "wrong_result"
    INVALID = "invalid"
    # Transient: stored before dispatch so that a death is pinned on the right trial.
    RUNNING = "running"

    @classmethod
    def final(cls) -> list[TrialStatus]:
        return [s for s in cls if s is not cls.RUNNING]


def config_hash(config: Config) -> str:
    """Stable short hash of a config: the dedup key of a trial within a study."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrialRequest:
    """One candidate to evaluate: everything a worker needs, nothing it must share."""

    trial_id: int
    kernel: str
    dims: Dims
    config: Config
    seed: int
    tolerance: dict[str, float]
    timeout_s: float = 60.0
    # Timing knobs (the worker clamps them to sane ranges).
    min_runs: int = 10
    max_runs: int = 200
    target_rel_spread: float = 0.01
    # Worker limits (evotune/worker): None takes the pool's compile timeout; the timing loop
    # stops after time_budget_s of wall time even if the median is not yet stable.
    compile_timeout_s: float | None = None
    time_budget_s: float = 1.0


@dataclass
class TrialResult:
    """What a worker (or the replay evaluator) says of one request."""

    trial_id: int
    status: TrialStatus
    p50_us: float | None = None
    p20_us: float | None = None
    p80_us: float | None = None
    n_runs: int = 0
    samples_us: list[float] = field(default_factory=list)
    max_error: float | None = None
    compile_s: float | None = None
    run_s: float | None = None
    error: str | None = None
    # The plug-in's flops(dims) for an `ok` result, so that the parent, which never imports
    # the plug-in, can give TFLOPS; None from an evaluator without the plug-in (a replay).
    flops: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data
