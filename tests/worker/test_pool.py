"""The worker pool on the CPU (Triton interpreter): every fault that the interpreter can
produce ends as the right status, and the next trial on that worker succeeds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from evotune.errors import NoGpuError, WorkerError
from evotune.records import TrialRequest, TrialResult, TrialStatus
from evotune.worker.compile_pool import CompileOutcome
from evotune.worker.pool import WorkerPool

from .helpers import FAULT_MODULE, fault_request

ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    """The process no longer exists (or is a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    # The parent has no TRITON_INTERPRET here: the pool must set it in the worker itself
    # (without it, the worker could not launch a kernel on a machine without a GPU).
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TRITON_INTERPRET", raising=False)
        p = WorkerPool(FAULT_MODULE, interpreted=True, gpus=None, compile_timeout_s=10.0)
    with p:
        yield p


def _run(pool: WorkerPool, *requests) -> dict[int, TrialResult]:  # type: ignore[no-untyped-def]
    results = list(pool.evaluate(list(requests)))
    assert sorted(r.trial_id for r in results) == sorted(r.trial_id for r in requests)
    return {r.trial_id: r for r in results}


def _assert_ok(result: TrialResult) -> None:
    assert result.status is TrialStatus.OK, result.error
    assert result.p50_us is not None and result.p50_us > 0
    assert result.p20_us is not None and result.p80_us is not None
    assert result.p20_us <= result.p50_us <= result.p80_us
    assert 1 <= result.n_runs <= 3 and len(result.samples_us) == result.n_runs
    assert result.max_error == 0.0
    assert result.compile_s is not None and result.run_s is not None


def test_environment_is_the_interpreter(pool: WorkerPool) -> None:
    env = pool.environment()
    assert env["interpreted"] is True
    assert env["device_capability"] is None
    assert set(env) == {
        "gpu",
        "driver",
        "cuda",
        "torch",
        "triton",
        "kernel_source_hash",
        "interpreted",
        "device_capability",
        "sm_count",
    }


def test_ok_trial_is_timed(pool: WorkerPool) -> None:
    _assert_ok(_run(pool, fault_request(1, "none"))[1])


def test_segfault_is_crashed_and_worker_replaced(pool: WorkerPool) -> None:
    before = pool.worker_pids[0]
    out = _run(pool, fault_request(10, "segfault"), fault_request(11, "none"))
    assert out[10].status is TrialStatus.CRASHED
    assert "SIGSEGV" in (out[10].error or "")
    _assert_ok(out[11])
    assert before is not None and pool.worker_pids[0] != before and _gone(before)


def test_abort_is_crashed(pool: WorkerPool) -> None:
    out = _run(pool, fault_request(20, "abort"), fault_request(21, "none"))
    assert out[20].status is TrialStatus.CRASHED
    assert "SIGABRT" in (out[20].error or "")
    _assert_ok(out[21])


def test_hang_in_timing_is_a_run_timeout(pool: WorkerPool) -> None:
    before = pool.worker_pids[0]
    t0 = time.monotonic()
    out = _run(pool, fault_request(30, "hang", timeout_s=2.0), fault_request(31, "none"))
    assert out[30].status is TrialStatus.TIMEOUT
    assert "run timed out after 2.0 s" in (out[30].error or "")
    assert out[30].compile_s is not None  # the first call returned; the timing hung
    _assert_ok(out[31])
    assert time.monotonic() - t0 < 30
    assert before is not None and _gone(before)  # killed, not left spinning


def test_hang_before_the_first_call_returns_is_a_compile_timeout(pool: WorkerPool) -> None:
    out = _run(
        pool,
        fault_request(40, "compile_hang", compile_timeout_s=2.0),
        fault_request(41, "none"),
    )
    assert out[40].status is TrialStatus.TIMEOUT
    assert "compile timed out after 2.0 s" in (out[40].error or "")
    _assert_ok(out[41])


def test_compile_error(pool: WorkerPool) -> None:
    out = _run(pool, fault_request(50, "compile_error"), fault_request(51, "none"))
    assert out[50].status is TrialStatus.COMPILE_ERROR
    assert "does not compile" in (out[50].error or "")
    assert out[50].p50_us is None
    _assert_ok(out[51])


@pytest.mark.parametrize(
    ("fault", "detail", "max_error"),
    [
        ("wrong", "4096 of 4096 elements over tolerance", 1.0),
        ("nan", "1 of 4096 elements NaN", float("inf")),
        ("unwritten", "2048 of 4096 elements unwritten", float("inf")),
    ],
)
def test_wrong_results(pool: WorkerPool, fault: str, detail: str, max_error: float) -> None:
    out = _run(pool, fault_request(60, fault), fault_request(61, "none"))
    bad = out[60]
    assert bad.status is TrialStatus.WRONG_RESULT
    assert detail in (bad.error or "")
    assert bad.max_error == pytest.approx(max_error, rel=1e-4)
    assert bad.p50_us is None and bad.n_runs == 0
    _assert_ok(out[61])


def test_unsupported_config_is_invalid_without_running(pool: WorkerPool) -> None:
    before = pool.worker_pids[0]
    out = _run(pool, fault_request(70, "illegal_address"), fault_request(71, "none"))
    assert out[70].status is TrialStatus.INVALID
    assert "needs a GPU" in (out[70].error or "")
    assert out[70].compile_s is None
    _assert_ok(out[71])
    assert pool.worker_pids[0] == before


def test_many_requests_each_get_one_result(pool: WorkerPool) -> None:
    faults = ["none", "wrong", "none", "compile_error", "none"]
    out = _run(pool, *(fault_request(80 + i, f) for i, f in enumerate(faults)))
    statuses = [out[80 + i].status.value for i in range(len(faults))]
    assert statuses == ["ok", "wrong_result", "ok", "compile_error", "ok"]


def test_abandoned_evaluate_leaves_no_stale_answer(pool: WorkerPool) -> None:
    gen = pool.evaluate([fault_request(90, "none"), fault_request(91, "none")])
    first = next(gen)
    gen.close()  # the second request may still be in flight: the pool must forget it
    assert first.trial_id == 90
    out = _run(pool, fault_request(92, "none"))
    assert set(out) == {92}
    _assert_ok(out[92])


def test_requests_submitted_while_others_run_are_measured_too(pool: WorkerPool) -> None:
    pool.submit([fault_request(70, "none"), fault_request(71, "segfault")])
    first = pool.collect()
    assert first and {r.trial_id for r in first} <= {70, 71}
    pool.submit([fault_request(72, "none")])  # more work while some is outstanding
    with pytest.raises(WorkerError, match="outstanding"):
        pool.shootout([fault_request(73, "none")])
    with pytest.raises(WorkerError, match="outstanding"):
        next(iter(pool.evaluate([fault_request(74, "none")])))
    results = {r.trial_id: r for r in first}
    while len(results) < 3:
        batch = pool.collect()
        assert batch, "collect returned nothing while requests were outstanding"
        results.update({r.trial_id: r for r in batch})
    assert set(results) == {70, 71, 72}
    _assert_ok(results[70])
    assert results[71].status is TrialStatus.CRASHED
    _assert_ok(results[72])
    assert pool.collect() == []  # nothing outstanding: returns at once


def test_shootout_returns_results_in_request_order(pool: WorkerPool) -> None:
    requests = [
        fault_request(101, "none", min_runs=1),
        fault_request(100, "wrong"),
        fault_request(102, "none", min_runs=1),
    ]
    results = pool.shootout(requests, rounds=3)
    assert [r.trial_id for r in results] == [101, 100, 102]
    assert results[1].status is TrialStatus.WRONG_RESULT
    for r in (results[0], results[2]):
        assert r.status is TrialStatus.OK
        assert r.n_runs == 3  # one run per visit in the interpreter, three rounds


def test_shootout_survives_a_crash(pool: WorkerPool) -> None:
    results = pool.shootout([fault_request(110, "none"), fault_request(111, "segfault")], 2)
    assert [r.status for r in results] == [TrialStatus.CRASHED, TrialStatus.CRASHED]
    _assert_ok(_run(pool, fault_request(112, "none"))[112])


def test_gpu_mode_without_a_gpu_is_a_clear_error() -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(NoGpuError, match="no CUDA device"):
        WorkerPool(FAULT_MODULE, interpreted=False, gpus=[0], compile_workers=0)


def test_workers_die_with_their_parent(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import time
            from evotune.worker.pool import WorkerPool

            if __name__ == "__main__":
                pool = WorkerPool({FAULT_MODULE!r}, interpreted=True, gpus=None)
                print(pool.worker_pids[0], flush=True)
                time.sleep(600)
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert parent.stdout is not None
        worker_pid = int(parent.stdout.readline())
        assert not _gone(worker_pid)
        parent.kill()  # SIGKILL: no cleanup code runs in the parent
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not _gone(worker_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(worker_pid), "the worker outlived its parent"
    finally:
        parent.kill()


class _CompiledElsewhere:
    """Stands in for the compile pool: every request compiled in 2.5 s, go on to a worker."""

    size = 1

    def __init__(self) -> None:
        self.queued: list[TrialRequest] = []

    def submit(self, request: TrialRequest) -> None:
        self.queued.append(request)

    def poll(self) -> list[CompileOutcome]:
        done, self.queued = self.queued, []
        return [CompileOutcome(r, None, seconds=2.5) for r in done]

    def handles(self) -> list[object]:
        return []

    def next_deadline(self) -> float | None:
        return None

    def cancel(self) -> None:
        self.queued = []

    def close(self) -> None:
        pass


def test_a_trial_the_compile_pool_compiled_reports_the_pools_compile_time() -> None:
    """Its worker only loads the cached binary; the trial's compile time is the compile
    process's (what landscapes record and the simulated pool's clock replays)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TRITON_INTERPRET", raising=False)
        pool = WorkerPool(FAULT_MODULE, interpreted=True, gpus=None, compile_timeout_s=10.0)
    with pool:
        pool._compile_pool = _CompiledElsewhere()  # type: ignore[assignment]
        (result,) = pool.evaluate([fault_request(1, "none")])  # type: ignore[list-item]
        _assert_ok(result)
        assert result.compile_s == 2.5
