"""Where a trial's time goes between the compile pool and the GPU worker (GPU host).

Times 24 triton configs of `mission`: the compile pool's `compile_only` from a cold cache,
the same configs again in the same processes and in fresh processes (warm cache), and a GPU
worker's own first call of each (cache warm). Run from the repository root:
    PYTHONPATH=. python3 tests/gpu/compile_latency.py
"""

from __future__ import annotations

import statistics
import time

from evotune.records import TrialRequest
from evotune.search.grid import valid_configs
from evotune.space import load_space
from evotune.worker.compile_pool import CompilePool, drain
from evotune.worker.pool import WorkerPool


def main() -> None:
    space = load_space("attention")
    shape = space.shape("mission")
    configs = [
        c
        for c in valid_configs(space.restricted("impl == 'triton'"), shape.dims)
        if not c.get("TMA") and not c.get("WARP_SPECIALIZE")
    ][:24]
    tolerance = space.tolerance(shape.dims).model_dump()
    requests = [
        TrialRequest(i, space.module, dict(shape.dims), c, i, tolerance, min_runs=5, max_runs=5)
        for i, c in enumerate(configs)
    ]
    with WorkerPool(space.module, gpus=[0], compile_workers=0) as gpu:
        device = gpu.device_info()

        def timed(pool: CompilePool) -> tuple[float, float]:
            t0 = time.perf_counter()
            outcomes = drain(pool, requests)
            return time.perf_counter() - t0, statistics.median(o.seconds for o in outcomes)

        def started() -> CompilePool:
            pool = CompilePool(space.module, device, workers=8, timeout_s=120, gpu=0)
            pool.wait_ready()
            return pool

        first = started()
        rows = [("cold", *timed(first)), ("warm, same processes", *timed(first))]
        first.close()
        second = started()
        rows.append(("warm, fresh processes", *timed(second)))
        second.close()
        t0 = time.perf_counter()
        results = list(gpu.evaluate(requests))
        wall = time.perf_counter() - t0
        compile_s = statistics.median(r.compile_s or 0.0 for r in results)
        run_s = statistics.median(r.run_s or 0.0 for r in results)
    print(f"{'compile pool (8 processes), 24 configs':<40}{'wall s':>8}{'median s/config':>17}")
    for label, wall_s, med in rows:
        print(f"{label:<40}{wall_s:>8.2f}{med:>17.3f}")
    print(
        f"GPU worker, warm cache: wall {wall:.2f} s, median compile {compile_s:.3f} s, run {run_s:.3f} s"
    )


if __name__ == "__main__":
    main()
