"""The physical floor: no call can move its bytes faster than the memory, or do its
arithmetic faster than the tensor cores, of the device it runs on.

A plug-in that declares `bytes(dims)` (the fewest bytes a call must move) and `flops(dims)`
gets a floor of max(bytes / bandwidth, flops / peak rate); a p50 more than `FLOOR_SLACK`
below it is not a fast kernel but one that did not do its work
(docs/how-evotune-measures.md). The peaks are the larger of the datasheet figure and one
measured on the device at worker start, so that no real kernel is ever refused: the
datasheet rate is the fastest dense tensor-core format of the chip (FP8 where it has one),
whatever the plug-in computes in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["FLOOR_SLACK", "DevicePeaks", "datasheet_peaks", "floor_problem", "measure_peaks"]

FLOOR_SLACK = 0.10  # a p50 more than 10 % below the floor is refused

# (substring of torch's device name, memory bandwidth in bytes/s, dense tensor-core FLOP/s of
# the fastest format). Vendors' datasheets; the first match wins, so specific names first.
_DATASHEET: tuple[tuple[str, float, float], ...] = (
    ("GH200", 4.9e12, 1979e12),
    ("H200", 4.8e12, 1979e12),
    ("H100 NVL", 3.9e12, 1671e12),
    ("H100 PCIe", 2.0e12, 1513e12),
    ("H100", 3.35e12, 1979e12),
    ("A100-SXM4-80GB", 2.039e12, 624e12),  # INT8 dense; FP16 is half of it
    ("A100 80GB PCIe", 1.935e12, 624e12),
    ("A100", 1.555e12, 624e12),
    ("L40S", 0.864e12, 733e12),
    ("L4", 0.300e12, 242e12),
    ("A10", 0.600e12, 250e12),
    ("RTX 4090", 1.008e12, 661e12),
)


@dataclass(frozen=True)
class DevicePeaks:
    """What the device can do at most; `source` says where each figure came from."""

    bandwidth: float  # bytes/s, reads plus writes
    flops: float  # FLOP/s
    source: str

    def floor_s(self, n_bytes: float | None, n_flops: float | None) -> float:
        """The least time a call moving n_bytes and doing n_flops can take."""
        t = 0.0
        if n_bytes and self.bandwidth > 0:
            t = max(t, n_bytes / self.bandwidth)
        if n_flops and self.flops > 0:
            t = max(t, n_flops / self.flops)
        return t


def datasheet_peaks(device_name: str) -> DevicePeaks | None:
    for needle, bandwidth, flops in _DATASHEET:
        if needle in device_name:
            return DevicePeaks(bandwidth, flops, f"datasheet ({needle})")
    return None


def measure_peaks(torch: Any, device_name: str) -> DevicePeaks:
    """A device-to-device copy (bytes read + written) and a large fp16 matrix product, on
    CUDA device 0, each the best of a few runs; the larger of them and the datasheet."""
    bandwidth, flops = _copy_bandwidth(torch), _matmul_rate(torch)
    torch.cuda.empty_cache()
    sheet = datasheet_peaks(device_name)
    if sheet is None:
        return DevicePeaks(bandwidth, flops, "measured (no datasheet entry)")
    return DevicePeaks(
        max(bandwidth, sheet.bandwidth),
        max(flops, sheet.flops),
        f"max of {sheet.source} and measured ({bandwidth / 1e12:.2f} TB/s, "
        f"{flops / 1e12:.0f} TFLOP/s)",
    )


def _copy_bandwidth(torch: Any) -> float:
    n_bytes = 512 << 20
    src = torch.empty(n_bytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    return 2 * n_bytes / _best_seconds(torch, lambda: dst.copy_(src))


def _matmul_rate(torch: Any, n: int = 8192) -> float:
    a = torch.randn((n, n), device="cuda", dtype=torch.float16)
    b = torch.randn((n, n), device="cuda", dtype=torch.float16)
    return 2.0 * n**3 / _best_seconds(torch, lambda: a @ b)


def _best_seconds(torch: Any, fn: Any, runs: int = 5) -> float:
    fn()  # first use: handles, workspaces, clocks
    torch.cuda.synchronize()
    best = math.inf
    for _ in range(runs):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) * 1e-3)
    return best


def floor_problem(
    p50_us: float, n_bytes: float | None, n_flops: float | None, peaks: DevicePeaks | None
) -> str | None:
    """Why a p50 is not physically possible on this device, else None."""
    if peaks is None:
        return None
    floor_us = peaks.floor_s(n_bytes, n_flops) * 1e6
    if floor_us <= 0 or p50_us >= (1.0 - FLOOR_SLACK) * floor_us:
        return None
    parts = []
    if n_bytes:
        parts.append(f"{n_bytes / 1e6:.4g} MB at {peaks.bandwidth / 1e12:.4g} TB/s")
    if n_flops:
        parts.append(f"{n_flops / 1e12:.3g} TFLOP at {peaks.flops / 1e12:.4g} TFLOP/s")
    return (
        f"faster than the hardware allows: p50 {p50_us:.4g} µs, but {' and '.join(parts)} "
        f"take at least {floor_us:.4g} µs ({peaks.source}); the kernel did not do its work"
    )
