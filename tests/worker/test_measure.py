"""The correctness oracle and the timing loop (CPU: the loop runs on a scripted timer)."""

from __future__ import annotations

import math

import pytest
import torch

from evotune.worker.measure import (
    PendingCheck,
    WallTimer,
    check_output,
    checked_runs,
    measure,
    median_is_stable,
    rotation_sets,
    summarize,
    tensor_bytes,
)

# --- correctness oracle ---------------------------------------------------------------------


def test_exact_output_passes_with_zero_error() -> None:
    ref = torch.randn(64)
    check = check_output(ref.clone().half(), ref, atol=1e-2, rtol=1e-2)
    assert check.ok
    assert 0.0 <= check.max_error < 1e-2


def test_nan_output_fails_with_infinite_error() -> None:
    ref = torch.zeros(10)
    out = ref.clone()
    out[3] = math.nan
    check = check_output(out, ref, atol=1.0, rtol=0.0)
    assert not check.ok
    assert check.n_nan == 1 and check.n_over == 0
    assert check.max_error == math.inf
    assert "1 of 10 elements NaN or unwritten" in check.describe()


def test_unwritten_buffer_left_nan_fails() -> None:
    ref = torch.ones(8)
    out = torch.full((8,), math.nan)
    out[:4] = 1.0  # the "kernel" wrote only half
    check = check_output(out, ref, atol=1e-3, rtol=0.0)
    assert not check.ok and check.n_nan == 4


def test_error_over_tolerance_fails_and_reports_max_error() -> None:
    ref = torch.tensor([1.0, 2.0, 100.0])
    out = torch.tensor([1.0, 2.05, 100.5])
    # atol + rtol*|ref|: 0.01 + 0.01*2 = 0.03 < 0.05 fails; 0.01 + 0.01*100 = 1.01 > 0.5 passes
    check = check_output(out, ref, atol=0.01, rtol=0.01)
    assert not check.ok
    assert check.n_over == 1
    assert check.max_error == pytest.approx(0.5)


def test_error_within_relative_tolerance_passes() -> None:
    ref = torch.tensor([100.0, -200.0])
    out = torch.tensor([100.9, -201.5])
    assert check_output(out, ref, atol=0.01, rtol=0.01).ok


def test_infinite_output_fails() -> None:
    check = check_output(torch.tensor([math.inf]), torch.tensor([1.0]), atol=1.0, rtol=1.0)
    assert not check.ok and check.max_error == math.inf


def test_pending_check_reads_the_same_verdict_later() -> None:
    ref = torch.ones(8)
    out = ref.clone()
    pending = PendingCheck(out, ref, atol=1e-3, rtol=0.0)
    assert pending.result().ok
    out[2] = math.nan  # what it computed is already queued: a later write changes nothing
    assert pending.result().ok
    assert not PendingCheck(out, ref, atol=1e-3, rtol=0.0).result().ok


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        check_output(torch.zeros(4), torch.zeros(5), atol=1.0, rtol=0.0)


# --- statistics and the timing loop ---------------------------------------------------------


def test_summarize_percentiles() -> None:
    timing = summarize([float(v) for v in range(1, 101)])
    assert timing.n_runs == 100
    assert timing.p50_us == pytest.approx(50.5)
    assert timing.p20_us == pytest.approx(20.8)
    assert timing.p80_us == pytest.approx(80.2)


def test_median_stability() -> None:
    assert median_is_stable([10.0] * 12, 0.01)
    assert not median_is_stable([10.0] * 5, 0.01)  # too few samples to judge
    drifting = [10.0 + i for i in range(20)]  # the median keeps climbing
    assert not median_is_stable(drifting, 0.01)
    assert median_is_stable(drifting, 0.5)


class Launches:
    """A subject that records what the timer did with it."""

    def __init__(self) -> None:
        self.launched: list[int] = []
        self.poisoned: list[int] = []
        self.verified: list[int] = []
        self.settled = 0

    def launch(self, i: int) -> None:
        self.launched.append(i)

    def poison(self, i: int) -> None:
        self.poisoned.append(i)

    def verify(self, i: int) -> None:
        self.verified.append(i)

    def settle(self) -> None:
        self.settled += 1


class ScriptedTimer:
    """Returns preset samples in order; runs the subject like a real timer."""

    def __init__(self, samples: list[float]) -> None:
        self.samples = samples
        self.calls: list[tuple[int, int]] = []

    def batch(self, subject, first: int, n: int, checked: frozenset[int]) -> list[float]:  # type: ignore[no-untyped-def]
        self.calls.append((first, n))
        WallTimer().batch(subject, first, n, checked)
        out, self.samples = self.samples[:n], self.samples[n:]
        return out


def _measure(timer: ScriptedTimer, subject: Launches | None = None, **kw):  # type: ignore[no-untyped-def]
    args = {"min_runs": 10, "max_runs": 200, "target_rel_spread": 0.01, "budget_s": 60.0}
    args.update(kw)
    return measure(subject or Launches(), timer, **args)


def test_measure_stops_early_when_the_median_is_stable() -> None:
    subject = Launches()
    timing, index = _measure(ScriptedTimer([5.0] * 1000), subject)
    assert timing.n_runs == 10 and index == 10
    assert timing.p50_us == 5.0
    assert subject.launched == list(range(10))  # consecutive input-set indices


def test_measure_numbers_runs_on_from_first() -> None:
    subject = Launches()
    _, index = _measure(ScriptedTimer([5.0] * 1000), subject, first=3)
    assert subject.launched == list(range(3, 13)) and index == 13


def test_every_batch_verifies_its_last_run_and_one_more_each_poisoned_first() -> None:
    subject = Launches()
    timer = ScriptedTimer([float(v) for v in range(1, 1001)])
    _measure(timer, subject, max_runs=40, target_rel_spread=0.0)
    assert [n for _, n in timer.calls] == [10, 10, 10, 10]
    for first, n in timer.calls:
        checked = checked_runs(first, n)
        assert first + n - 1 in checked and 1 <= len(checked) <= 2
        assert checked <= set(range(first, first + n))
    assert subject.poisoned == subject.verified  # each verified run was poisoned before it
    assert sorted(subject.verified) == sorted(
        i for first, n in timer.calls for i in checked_runs(first, n)
    )
    assert subject.settled == 4  # once per batch, after it


def test_checked_runs_are_not_always_the_same_offset() -> None:
    offsets = {min(checked_runs(first, 10)) - first for first in range(0, 1000, 10)}
    assert len(offsets) > 5


def test_measure_runs_to_the_cap_when_noisy() -> None:
    noisy = [float(v) for v in range(1, 1001)]  # the running median never settles
    timing, _ = _measure(ScriptedTimer(noisy), max_runs=40, target_rel_spread=0.001)
    assert timing.n_runs == 40
    assert timing.samples_us == noisy[:40]


def test_measure_respects_the_time_budget_after_min_runs() -> None:
    noisy = [float(v) for v in range(1, 1001)]
    timing, _ = _measure(
        ScriptedTimer(noisy), min_runs=20, max_runs=500, target_rel_spread=0.0, budget_s=0.0
    )
    assert timing.n_runs == 20


def test_measure_warms_up_before_timing() -> None:
    timer = ScriptedTimer([99.0] * 3 + [5.0] * 100)
    timing, _ = _measure(timer, max_runs=10, warmup_s=1e-9)
    assert timer.calls[0] == (0, 3)  # one warm-up batch, discarded
    assert timing.samples_us == [5.0] * 10


def test_wall_timer_times_each_call() -> None:
    subject = Launches()
    samples = WallTimer().batch(subject, 4, 3, frozenset({6}))
    assert subject.launched == [4, 5, 6]
    assert subject.poisoned == [6] and subject.verified == [6] and subject.settled == 1
    assert len(samples) == 3 and all(s >= 0 for s in samples)


# --- inputs -------------------------------------------------------------------------------


def test_tensor_bytes_counts_nested_tensors() -> None:
    inputs = {"q": torch.zeros(4, dtype=torch.float16), "more": [torch.zeros(2)], "flag": True}
    assert tensor_bytes(inputs) == 4 * 2 + 2 * 4


def test_rotation_sets() -> None:
    l2 = 50 << 20
    assert rotation_sets(67 << 20, l2) == 2  # overflows the L2: two sets, to check two
    assert rotation_sets(1 << 10, 0) == 2  # the interpreter (no L2) checks two sets too
    assert rotation_sets(l2, l2) == 2
    assert rotation_sets(20 << 20, l2) == 5  # the sets together span twice the L2
    assert rotation_sets(10 << 20, l2) == 8  # capped
    assert rotation_sets(1 << 10, l2) == 8
