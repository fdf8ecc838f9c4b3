"""The compile pool on the CPU: real Triton compiles for sm_90 (no GPU needed), a compile
timeout that kills and replaces the process, and failures that end there."""

from __future__ import annotations

import time

import pytest

from evotune.plugin import DeviceInfo
from evotune.records import TrialStatus
from evotune.worker.compile_pool import CompilePool, drain

from .helpers import FAULT_MODULE, fault_request

HOPPER = DeviceInfo(interpreted=False, name="compile test (sm_90)", capability=(9, 0), sm_count=132)


@pytest.fixture(scope="module")
def cpool():  # type: ignore[no-untyped-def]
    # The compile processes drop TRITON_INTERPRET (set by conftest on CPU machines): they
    # compile for the GPU architecture, which needs no GPU.
    pool = CompilePool(FAULT_MODULE, HOPPER, workers=2, timeout_s=120.0)
    try:
        pool.wait_ready()
        yield pool
    finally:
        pool.close()


def test_compile_failures_end_in_the_pool(cpool: CompilePool) -> None:
    requests = [
        fault_request(1, "none"),
        fault_request(2, "compile_error"),
        fault_request(3, "out_of_resources"),
        fault_request(4, "device_assert"),
        fault_request(5, "segfault"),  # runs fine until launched: not the compile pool's job
    ]
    outcomes = {o.request.trial_id: o for o in drain(cpool, requests)}
    assert outcomes[1].status is None and outcomes[1].error is None
    assert outcomes[2].status is TrialStatus.COMPILE_ERROR
    assert "does not compile" in (outcomes[2].error or "")
    assert outcomes[3].status is TrialStatus.OUT_OF_RESOURCES
    assert "shared memory" in (outcomes[3].error or "")
    assert outcomes[4].status is None
    assert outcomes[5].status is None
    result = outcomes[2].to_result()
    assert result.trial_id == 2 and result.status is TrialStatus.COMPILE_ERROR
    assert result.compile_s is not None and result.compile_s > 0


def test_compile_timeout_kills_and_replaces(cpool: CompilePool) -> None:
    t0 = time.monotonic()
    outcomes = {
        o.request.trial_id: o
        for o in drain(
            cpool,
            [fault_request(10, "compile_hang", compile_timeout_s=2.0), fault_request(11, "none")],
        )
    }
    assert outcomes[10].status is TrialStatus.TIMEOUT
    assert "compile timed out after 2.0 s" in (outcomes[10].error or "")
    assert outcomes[11].status is None
    assert time.monotonic() - t0 < 60
    # the replaced process compiles again
    again = drain(cpool, [fault_request(12, "none")])
    assert again[0].status is None


def test_unsupported_is_invalid(cpool: CompilePool) -> None:
    request = fault_request(20, "none")
    bogus = type(request)(**{**request.__dict__, "config": {"fault": "bogus", "BLOCK": 1024}})
    outcome = drain(cpool, [bogus])[0]
    assert outcome.status is TrialStatus.INVALID
    assert "unknown fault 'bogus'" in (outcome.error or "")
    assert outcome.to_result().compile_s is None
