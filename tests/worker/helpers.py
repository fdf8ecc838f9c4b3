"""Requests for the fault-injection plug-in (tests/worker/fault_plugin.py)."""

from __future__ import annotations

from typing import Any

from evotune.records import TrialRequest

FAULT_MODULE = "tests.worker.fault_plugin"
TINY = {"N": 4096, "dtype": "float32"}
TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}


def fault_request(trial_id: int, fault: str, **overrides: Any) -> TrialRequest:
    fields: dict[str, Any] = {"timeout_s": 20.0, "min_runs": 3, "max_runs": 30}
    fields.update(overrides)
    return TrialRequest(
        trial_id=trial_id,
        kernel=FAULT_MODULE,
        dims=dict(TINY),
        config={"fault": fault, "BLOCK": 1024},
        seed=1000 + trial_id,
        tolerance=dict(TOLERANCE),
        **fields,
    )


def attention_request(trial_id: int, dims: dict[str, Any], **overrides: Any) -> TrialRequest:
    """The attention kernel's default config at fp16 `dims` (dtype filled in)."""
    fields: dict[str, Any] = {"timeout_s": 60.0}
    fields.update(overrides)
    return TrialRequest(
        trial_id=trial_id,
        kernel="evotune.kernels.attention",
        dims={"dtype": "float16", **dims},
        config={},
        seed=trial_id,
        tolerance={"atol": 1e-2, "rtol": 1e-2},
        **fields,
    )
