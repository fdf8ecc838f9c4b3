"""The worker pool on a CUDA GPU, with its compile pool: every injected fault ends as the
right status and the next trial on that GPU succeeds; timing looks like timing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from evotune.fingerprint import fingerprint_hash
from evotune.records import TrialResult, TrialStatus
from evotune.worker.pool import WorkerPool

from .helpers import FAULT_MODULE, attention_request, fault_request

pytestmark = pytest.mark.gpu

S = TrialStatus
EXPECTED = {
    "segfault": S.CRASHED,
    "abort": S.CRASHED,
    "hang": S.TIMEOUT,
    "compile_hang": S.TIMEOUT,
    "compile_error": S.COMPILE_ERROR,
    "out_of_resources": S.OUT_OF_RESOURCES,
    "nan": S.WRONG_RESULT,
    "unwritten": S.WRONG_RESULT,
    "wrong": S.WRONG_RESULT,
    "illegal_address": S.CUDA_ERROR,
    "device_assert": S.CUDA_ERROR,
    # Right on the first launch only, and faults that leave the worker unfit:
    "stale_queue": S.WRONG_RESULT,
    "every_nth": S.WRONG_RESULT,
    "first_inputs_only": S.WRONG_RESULT,
    "leak": S.OUT_OF_RESOURCES,
    "oom": S.OUT_OF_RESOURCES,
    "flood": S.OK,
}
# After these the next config must run in a new worker process.
RETIRE = {"stale_queue", "every_nth", "first_inputs_only", "leak", "oom", "nan", "wrong"}


@pytest.fixture(scope="module")
def gpu_pool() -> Iterator[WorkerPool]:
    with WorkerPool(FAULT_MODULE, gpus=[0], compile_workers=2, compile_timeout_s=60.0) as pool:
        yield pool


def _fault(trial_id: int, fault: str) -> object:
    if fault == "hang":
        return fault_request(trial_id, fault, timeout_s=3.0)
    if fault == "compile_hang":
        return fault_request(trial_id, fault, compile_timeout_s=3.0)
    return fault_request(trial_id, fault)


def test_environment_describes_the_gpu(gpu_pool: WorkerPool) -> None:
    env = gpu_pool.environment()
    assert env["interpreted"] is False
    assert env["gpu"] and env["cuda"] and env["sm_count"] > 0
    assert isinstance(env["driver"], str)
    assert len(env["device_capability"]) == 2
    assert len(fingerprint_hash(env)) == 16


def test_every_fault_then_a_good_trial(gpu_pool: WorkerPool) -> None:
    requests = []
    for i, fault in enumerate(EXPECTED):
        requests += [_fault(100 + 2 * i, fault), fault_request(101 + 2 * i, "none")]
    results: dict[int, TrialResult] = {r.trial_id: r for r in gpu_pool.evaluate(requests)}  # type: ignore[arg-type]
    assert len(results) == len(requests)
    problems = []
    for i, (fault, expected) in enumerate(EXPECTED.items()):
        bad, good = results[100 + 2 * i], results[101 + 2 * i]
        if bad.status is not expected:
            problems.append(f"{fault}: {bad.status.value} ({(bad.error or '')[:300]})")
        if good.status is not S.OK:
            problems.append(f"after {fault}: {good.status.value} ({(good.error or '')[:300]})")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("fault", sorted(RETIRE))
def test_the_config_after_a_fault_runs_on_a_fresh_worker(gpu_pool: WorkerPool, fault: str) -> None:
    pid = gpu_pool.worker_pids[0]
    bad, good = (
        {r.trial_id: r for r in gpu_pool.evaluate([_fault(1, fault), fault_request(2, "none")])}[i]  # type: ignore[list-item]
        for i in (1, 2)
    )
    assert bad.status is EXPECTED[fault], bad.error
    assert good.status is S.OK, good.error
    assert gpu_pool.worker_pids[0] != pid


def test_traps_say_which_launch_failed(gpu_pool: WorkerPool) -> None:
    results = {
        r.trial_id: r
        for r in gpu_pool.evaluate(
            [_fault(1, "stale_queue"), _fault(2, "every_nth"), _fault(3, "leak")]  # type: ignore[list-item]
        )
    }
    assert "correct on launch 1, wrong on launch 2" in (results[1].error or "")
    assert "correct on launch 1, wrong on launch" in (results[2].error or "")
    assert "state carried between launches" in (results[2].error or "")
    leak = results[3].error or ""
    assert "leaked GPU memory" in leak or "out of memory" in leak.lower(), leak


def test_the_device_knows_its_peaks_and_real_kernels_clear_the_floor() -> None:
    from evotune.worker.hardware import floor_problem
    from evotune.worker.trial import Device

    device = Device.open(interpreted=False)
    assert device.peaks is not None
    assert device.peaks.bandwidth > 1e12 and device.peaks.flops > 1e14
    result = None
    with WorkerPool("evotune.kernels.attention", gpus=[0], compile_workers=0) as pool:
        request = attention_request(1, {"B": 4, "H": 8, "S": 1024, "D": 64, "causal": True})
        result = next(iter(pool.evaluate([request])))
    assert result.status is S.OK, result.error
    from evotune.kernels import attention

    dims = request.dims
    assert result.p50_us is not None
    assert (
        floor_problem(result.p50_us, attention.bytes(dims), attention.flops(dims), device.peaks)
        is None
    )
    assert floor_problem(result.p50_us / 100, attention.bytes(dims), None, device.peaks)


def test_timing_of_a_good_trial(gpu_pool: WorkerPool) -> None:
    result = next(iter(gpu_pool.evaluate([fault_request(1, "none", min_runs=10, max_runs=100)])))
    assert result.status is S.OK, result.error
    assert result.max_error == 0.0
    assert result.p20_us is not None and result.p50_us is not None and result.p80_us is not None
    assert 0 < result.p20_us <= result.p50_us <= result.p80_us < 1000
    assert 10 <= result.n_runs <= 100 and len(result.samples_us) == result.n_runs


def test_shootout_on_the_gpu(gpu_pool: WorkerPool) -> None:
    requests = [fault_request(1, "none", min_runs=5), fault_request(2, "none", min_runs=5)]
    results = gpu_pool.shootout(requests, rounds=4)
    assert [r.trial_id for r in results] == [1, 2]
    assert all(r.status is S.OK and r.n_runs == 20 for r in results)


def test_warm_up_goes_through_every_process_then_the_pool_serves_trials() -> None:
    with WorkerPool(FAULT_MODULE, gpus=[0], compile_workers=2) as pool:
        pool.warm_up(fault_request(-1, "none"))  # type: ignore[arg-type]
        first = next(iter(pool.evaluate([fault_request(1, "none")])))  # type: ignore[list-item]
        assert first.status is S.OK, first.error
        assert pool.retirements == []
        # The warm-up built this kernel in every compile process: the trial's compile (the
        # compile pool's time) is a cache hit.
        assert first.compile_s is not None and first.compile_s < 0.5
        # A warm-up that kills its worker leaves a pool that still measures.
        pool.warm_up(fault_request(-1, "segfault"))  # type: ignore[arg-type]
        again = next(iter(pool.evaluate([fault_request(2, "none")])))  # type: ignore[list-item]
        assert again.status is S.OK, again.error
