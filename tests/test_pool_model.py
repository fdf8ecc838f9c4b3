"""The simulated pool: compile processes first come first served, GPUs in compile order."""

from __future__ import annotations

import pytest

from evotune.errors import UserError
from evotune.pool_model import PoolModel, SimulatedPool
from evotune.records import TrialStatus


def _drain(pool: SimulatedPool, n: int) -> list[tuple[str, float]]:
    return [(pool.next_result(), pool.now) for _ in range(n)]


def test_one_compiler_one_gpu_is_a_two_stage_line() -> None:
    pool = SimulatedPool(PoolModel(gpus=1, compilers=1))
    pool.submit([("a", 1.0, 1.0), ("b", 1.0, 1.0)])
    # b compiles while a runs, then waits for nothing: done one GPU second after a.
    assert _drain(pool, 2) == [("a", 2.0), ("b", 3.0)]
    with pytest.raises(RuntimeError, match="nothing submitted"):
        pool.next_result()


def test_the_gpu_takes_what_compiled_first_and_refusals_skip_it() -> None:
    pool = SimulatedPool(PoolModel(gpus=1, compilers=3))
    pool.submit([("slow", 3.0, 1.0), ("fast", 1.0, 1.0), ("refused", 0.5, 0.0)])
    assert _drain(pool, 3) == [("refused", 0.5), ("fast", 2.0), ("slow", 4.0)]


def test_jobs_submitted_later_start_at_the_current_time() -> None:
    pool = SimulatedPool(PoolModel(gpus=2, compilers=2))
    pool.submit([("a", 1.0, 1.0)])
    assert _drain(pool, 1) == [("a", 2.0)]
    pool.submit([("b", 1.0, 1.0), ("c", 1.0, 1.0)])
    assert _drain(pool, 2) == [("b", 4.0), ("c", 4.0)]
    with pytest.raises(RuntimeError):
        pool.next_result()


def test_compile_and_gpu_times_follow_the_model() -> None:
    model = PoolModel(compile_s=0.5, compile_rules=(("impl == 'gluon'", 3.0),), gpu_s=0.2)
    ok = TrialStatus.OK
    assert model.compile_seconds({"impl": "gluon"}, ok) == 3.0
    assert model.compile_seconds({"impl": "triton"}, ok) == 0.5
    assert model.compile_seconds({"impl": "gluon"}, TrialStatus.INVALID) == model.refusal_s
    # A compile time the landscape recorded beats the rules; a refusal still takes refusal_s.
    assert model.compile_seconds({"impl": "gluon"}, ok, recorded=7.0) == 7.0
    assert model.compile_seconds({}, TrialStatus.INVALID, recorded=7.0) == model.refusal_s
    # A rule naming a parameter the config lacks does not hold.
    strict = PoolModel(compile_rules=(("PRODUCER_WARPS > 0", 9.0),))
    assert strict.compile_seconds({"impl": "triton"}, ok) == strict.compile_s
    assert model.gpu_seconds(ok) == 0.2 and model.gpu_seconds(TrialStatus.WRONG_RESULT) == 0.2
    assert model.gpu_seconds(TrialStatus.COMPILE_ERROR) == 0.0


def test_impossible_models_are_refused() -> None:
    # The CLI's --sim-* options make them: a user error (one line, exit 2), not a traceback.
    with pytest.raises(UserError, match="at least one GPU"):
        PoolModel(gpus=0)
    with pytest.raises(UserError, match="cannot be negative"):
        PoolModel(gpu_s=-1.0)
    with pytest.raises(UserError, match="cannot be negative"):
        PoolModel(compile_rules=(("impl == 'gluon'", -3.0),))
