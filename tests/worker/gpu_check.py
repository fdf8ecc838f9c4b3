"""GPU check of the worker (issue 5); run on a CUDA host from the repository root:

    PYTHONPATH=. python3 tests/worker/gpu_check.py

1. every injected fault through the pool (GPU worker only, no compile pool: the worker's own
   classification), each followed by a good trial: a status table;
2. the attention plug-in's default config at the mission shape measured in 5 fresh workers:
   (max - min) / median of p50 (target <= 2%);
3. per-trial overhead (wall time per trial) for 30 attention configs with the compile pool,
   first on a cold Triton cache, then again in the same workers.
Needs only torch, triton, numpy and evotune's worker modules (no pydantic, no database).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import random
import statistics
import sys
import time
from typing import Any

from evotune.records import TrialRequest, TrialResult, TrialStatus
from evotune.worker.pool import WorkerPool

MISSION = {"B": 32, "H": 8, "S": 512, "D": 64, "causal": True, "dtype": "float16"}
FP16_TOL = {"atol": 1e-2, "rtol": 1e-2}
EXPECTED = {
    "segfault": "crashed",
    "abort": "crashed",
    "hang": "timeout",
    "compile_hang": "timeout",
    "compile_error": "compile_error",
    "out_of_resources": "out_of_resources",
    "nan": "wrong_result",
    "unwritten": "wrong_result",
    "wrong": "wrong_result",
    "illegal_address": "cuda_error",
    "device_assert": "cuda_error",
}


def say(text: str = "") -> None:
    print(text, flush=True)


def check_faults(report: dict[str, Any]) -> None:
    from tests.worker.helpers import fault_request

    say("## 1. injected faults (GPU worker, no compile pool)")
    requests: list[TrialRequest] = []
    for i, fault in enumerate(EXPECTED):
        extra: dict[str, float] = {}
        if fault == "hang":
            extra["timeout_s"] = 3.0
        if fault == "compile_hang":
            extra["compile_timeout_s"] = 3.0
        requests += [fault_request(2 * i, fault, **extra), fault_request(2 * i + 1, "none")]
    t0 = time.monotonic()
    with WorkerPool("tests.worker.fault_plugin", gpus=[0], compile_workers=0) as pool:
        started = time.monotonic() - t0
        done: dict[int, tuple[TrialResult, float]] = {}
        for result in pool.evaluate(requests):
            done[result.trial_id] = (result, time.monotonic() - t0)
    say(f"pool start {started:.1f} s")
    say("| fault | status | expected | next trial | seconds (cumulative) | error |")
    say("| --- | --- | --- | --- | --- | --- |")
    rows = []
    for i, (fault, expected) in enumerate(EXPECTED.items()):
        bad, t_bad = done[2 * i]
        good, _ = done[2 * i + 1]
        first = (bad.error or "").strip().splitlines()[0][:90] if bad.error else ""
        mark = "" if bad.status.value == expected and good.status is TrialStatus.OK else " **FAIL**"
        say(
            f"| {fault} | {bad.status.value}{mark} | {expected} | {good.status.value} | "
            f"{t_bad:.1f} | {first} |"
        )
        rows.append(
            {
                "fault": fault,
                "status": bad.status.value,
                "expected": expected,
                "next": good.status.value,
            }
        )
    report["faults"] = rows


def attention_default() -> dict[str, Any] | None:
    if importlib.util.find_spec("evotune.kernels.attention") is None:
        return None
    import evotune.kernels.attention as attention

    return dict(attention.DEFAULT_CONFIG)


def check_stability(report: dict[str, Any], default: dict[str, Any]) -> None:
    say("\n## 2. default attention config, mission shape, 5 fresh workers")
    request = TrialRequest(
        1, "evotune.kernels.attention", dict(MISSION), default, 1234, dict(FP16_TOL), timeout_s=60
    )
    p50s: list[float] = []
    for k in range(5):
        t0 = time.monotonic()
        with WorkerPool("evotune.kernels.attention", gpus=[0], compile_workers=0) as pool:
            result = next(iter(pool.evaluate([request])))
        if result.status is not TrialStatus.OK or result.p50_us is None:
            say(f"worker {k}: {result.status.value}: {(result.error or '')[:400]}")
            report["stability"] = {"error": result.status.value}
            return
        p50s.append(result.p50_us)
        say(
            f"worker {k}: p50 {result.p50_us:.2f} us  p20 {result.p20_us:.2f}  p80 {result.p80_us:.2f}  "
            f"runs {result.n_runs}  max_error {result.max_error:.2e}  compile {result.compile_s:.2f} s  "
            f"wall {time.monotonic() - t0:.1f} s"
        )
    med = statistics.median(p50s)
    spread = (max(p50s) - min(p50s)) / med
    flops = 4.0 * 32 * 8 * 512 * 512 * 64 / 2
    say(
        f"(max - min) / median of p50 = {100 * spread:.2f} %  (median {med:.2f} us, {flops / med / 1e6:.1f} TFLOP/s)"
    )
    report["stability"] = {"p50_us": p50s, "rel_spread": spread}


def overhead_configs(default: dict[str, Any], n: int) -> list[dict[str, Any]]:
    grid = itertools.product([64, 128], [32, 64, 128], [4, 8], [2, 3, 4])
    configs = [
        {**default, "BLOCK_M": bm, "BLOCK_N": bn, "num_warps": w, "num_stages": s}
        for bm, bn, w, s in grid
    ]
    random.Random(0).shuffle(configs)
    return configs[:n]


def mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def check_overhead(report: dict[str, Any], default: dict[str, Any]) -> None:
    say("\n## 3. per-trial overhead, 30 attention configs, mission shape (compile pool of 8)")
    configs = overhead_configs(default, 30)
    t0 = time.monotonic()
    with WorkerPool("evotune.kernels.attention", gpus=[0], compile_workers=8) as pool:
        say(f"pool start (GPU worker + 8 compile processes) {time.monotonic() - t0:.1f} s")
        for label, seed0 in (("cold Triton cache", 0), ("same workers again", 100)):
            requests = [
                TrialRequest(
                    seed0 + i,
                    "evotune.kernels.attention",
                    dict(MISSION),
                    c,
                    seed0 + i,
                    dict(FP16_TOL),
                    timeout_s=60,
                )
                for i, c in enumerate(configs)
            ]
            t1 = time.monotonic()
            results = list(pool.evaluate(requests))
            wall = time.monotonic() - t1
            counts: dict[str, int] = {}
            for r in results:
                counts[r.status.value] = counts.get(r.status.value, 0) + 1
            ok = [r for r in results if r.status is TrialStatus.OK]
            busy = sum((r.compile_s or 0.0) + (r.run_s or 0.0) for r in results)
            say(
                f"{label}: {len(results)} trials in {wall:.1f} s = {wall / len(results):.3f} s/trial "
                f"({60 * len(results) / wall:.0f} trials/min); statuses {counts}; "
                f"worker busy {100 * busy / wall:.0f} % of wall; "
                f"mean worker compile_s {mean([r.compile_s for r in ok if r.compile_s is not None]):.3f}, "
                f"run_s {mean([r.run_s for r in ok if r.run_s is not None]):.3f}, "
                f"n_runs {mean([float(r.n_runs) for r in ok]):.0f}"
            )
            for r in results:
                if r.status is not TrialStatus.OK:
                    say(
                        f"  trial {r.trial_id}: {r.status.value}: {(r.error or '').splitlines()[0][:150] if r.error else ''}"
                    )
            if ok:
                best = min(ok, key=lambda r: r.p50_us or float("inf"))
                say(f"  best p50 {best.p50_us:.2f} us: {configs[best.trial_id - seed0]}")
            report.setdefault("overhead", []).append(
                {
                    "pass": label,
                    "trials": len(results),
                    "wall_s": wall,
                    "statuses": counts,
                    "busy_s": busy,
                }
            )


def main() -> int:
    report: dict[str, Any] = {}
    check_faults(report)
    default = attention_default()
    if default is None:
        say("\nkernels.attention does not exist: stability and overhead skipped")
    else:
        check_stability(report, default)
        check_overhead(report, default)
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "gpu_check.json"), "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
