"""The physical floor: peaks from the datasheet, the floor of a call, and a trial refused
for beating it (CPU: a device given made-up peaks)."""

from __future__ import annotations

import pytest

from evotune.plugin import DeviceInfo
from evotune.records import TrialStatus
from evotune.worker.hardware import DevicePeaks, datasheet_peaks, floor_problem
from evotune.worker.measure import WallTimer
from evotune.worker.trial import Device, Verdict, prepare, time_prepared

from . import fault_plugin
from .helpers import fault_request


def test_datasheet_names_the_specific_part_first() -> None:
    h200 = datasheet_peaks("NVIDIA H200")
    gh200 = datasheet_peaks("NVIDIA GH200 480GB")
    h100 = datasheet_peaks("NVIDIA H100 80GB HBM3")
    assert h200 is not None and h200.bandwidth == 4.8e12
    assert gh200 is not None and gh200.bandwidth == 4.9e12
    assert h100 is not None and h100.bandwidth == 3.35e12
    assert datasheet_peaks("NVIDIA H100 PCIe") != h100
    assert datasheet_peaks("Some Future GPU") is None


def test_the_floor_is_the_slower_of_moving_the_bytes_and_doing_the_math() -> None:
    peaks = DevicePeaks(bandwidth=1e12, flops=1e15, source="test")
    assert peaks.floor_s(1e9, 1e9) == pytest.approx(1e-3)  # bytes bound: 1 ms
    assert peaks.floor_s(1e6, 1e13) == pytest.approx(1e-2)  # math bound: 10 ms
    assert peaks.floor_s(None, None) == 0.0


def test_a_p50_more_than_ten_percent_under_the_floor_is_refused() -> None:
    peaks = DevicePeaks(bandwidth=1e12, flops=1e15, source="test")  # 1 GB: 1000 µs
    assert floor_problem(950.0, 1e9, None, peaks) is None
    assert floor_problem(901.0, 1e9, None, peaks) is None
    problem = floor_problem(4.4, 1e9, None, peaks)
    assert problem is not None and "faster than the hardware allows" in problem
    assert "p50 4.4 µs, but 1000 MB at 1 TB/s take at least 1000 µs (test)" in problem
    assert floor_problem(4.4, 1e9, None, None) is None  # no peaks (the interpreter): no floor


def _device(peaks: DevicePeaks | None) -> Device:
    return Device(True, DeviceInfo(interpreted=True, name="cpu"), WallTimer(), peaks=peaks)


def _trial(device: Device) -> Verdict:
    request = fault_request(1, "none")
    prepared = prepare(fault_plugin, request, device)
    assert not isinstance(prepared, Verdict), prepared.result.error
    return time_prepared(fault_plugin, prepared, device)


def test_a_trial_that_beats_the_floor_is_a_wrong_result() -> None:
    slow_memory = DevicePeaks(bandwidth=1.0, flops=1e30, source="a test device")  # 1 B/s
    verdict = _trial(_device(slow_memory))
    result = verdict.result
    assert result.status is TrialStatus.WRONG_RESULT and result.p50_us is None
    assert "faster than the hardware allows" in (result.error or "")
    assert "a test device" in (result.error or "") and verdict.retire is not None
    assert _trial(_device(None)).result.status is TrialStatus.OK
