"""Helpers of tests/gpu/matmul_bench.sh (GPU host, repository root on PYTHONPATH).

python3 tests/gpu/matmul_bench.py warm [JOBS]
    compile every (variant, shape, dtype) of the GPU tests in tests/kernels/test_matmul.py
    in parallel processes, so that pytest afterwards finds Triton's cache full.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _compile(job: tuple[dict[str, Any], dict[str, Any]]) -> str | None:
    from evotune.kernels.matmul import warm_up

    dims, config = job
    try:
        warm_up(dims, config)
    except Exception as exc:  # reported; pytest will show the same failure in context
        return f"{dims} {config}: {type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]}"
    return None


def warm(jobs: int) -> int:
    import torch

    from tests.kernels.test_matmul import GPU_DIMS, GPU_VARIANTS

    hopper = torch.cuda.get_device_capability() == (9, 0)
    work = [
        ({"M": M, "N": N, "K": K, "dtype": dtype}, config)
        for config in GPU_VARIANTS.values()
        if hopper or not config.get("TMA")
        for (M, N, K) in GPU_DIMS.values()
        for dtype in ("float16", "bfloat16")
    ]
    t0 = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        failures = [f for f in pool.map(_compile, work) if f]
    print(f"warm: {len(work)} compiles in {time.perf_counter() - t0:.0f} s, {len(failures)} failed")
    for failure in failures:
        print("  " + failure)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["warm"]:
        default_jobs = max(1, min(16, (os.cpu_count() or 2) - 2))
        return warm(int(argv[1]) if len(argv) > 1 else default_jobs)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
