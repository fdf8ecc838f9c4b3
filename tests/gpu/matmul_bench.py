"""Helpers of tests/gpu/matmul_bench.sh (GPU host, repository root on PYTHONPATH).

python3 tests/gpu/matmul_bench.py warm [JOBS]
    compile every (variant, shape, dtype) of the GPU tests in tests/kernels/test_matmul.py
    in parallel processes, so that pytest afterwards finds Triton's cache full;
python3 tests/gpu/matmul_bench.py table OUT SHAPE...
    the published best config of each shape (OUT/best_SHAPE.json, from `evotune best
    --json`) and the space's default, checked against the reference and timed next to
    torch.matmul (cuBLAS) in this one process with evotune.bench.time_cuda (L2 flushed,
    CUDA events, median); prints the table and writes OUT/table.txt and OUT/table.json.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
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
    from kernels.matmul import warm_up

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


def _short(config: dict[str, Any]) -> str:
    text = (
        f"{config['BLOCK_M']}x{config['BLOCK_N']}x{config['BLOCK_K']} g{config['GROUP_M']} "
        f"w{config['num_warps']} s{config['num_stages']}"
    )
    if config.get("SPLIT_K", 1) > 1:
        text += f" sk{config['SPLIT_K']}"
    if config.get("CTA_MULT", 0):
        text += f" persistent{config['CTA_MULT']}"
    if config.get("TMA"):
        text += " tma" + ("+ws" if config.get("WARP_SPECIALIZE") else "")
    return text


def table(out_dir: Path, shapes: list[str]) -> int:
    import torch

    from evotune.bench import time_cuda
    from evotune.space import load_space
    from kernels import matmul as mm

    space = load_space("matmul")
    rows: list[dict[str, Any]] = []
    for name in shapes:
        dims = space.shape(name).dims
        tol = space.tolerance(dims)
        best_file = out_dir / f"best_{name}.json"
        configs: dict[str, dict[str, Any]] = {}
        if best_file.is_file() and best_file.stat().st_size:
            configs["best"] = json.loads(best_file.read_text())["config"]
        configs["default"] = space.default_config()
        inputs = mm.make_inputs(dims, 0, "cuda")
        ref = mm.reference(inputs)
        bound = tol.atol + tol.rtol * ref.abs()
        outs = {label: mm.empty_output(inputs) for label in configs}
        calls = {
            label: functools.partial(mm.run, inputs, outs[label], config)
            for label, config in configs.items()
        }
        calls.update(mm.baselines(inputs))
        for label, call in calls.items():
            row: dict[str, Any] = {"shape": name, "row": label}
            row["config"] = _short(mm.resolve_config(configs[label])) if label in configs else ""
            try:
                if label in configs:
                    out = outs[label].fill_(float("nan"))  # poisoned: unwritten stays NaN
                    call()
                else:
                    out = call()
                torch.cuda.synchronize()
                err = (out.float() - ref).abs()
                row["max_err"] = float(err.max())
                row["ok"] = bool((err <= bound).all())
                p50, runs = time_cuda(call)
                row.update(p50_us=p50, runs=runs)
                row["tflops"] = mm.flops(dims) / (p50 * 1e-6) / 1e12
                row["tb_s"] = mm.bytes(dims) / (p50 * 1e-6) / 1e12
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:120]}"
            rows.append(row)
        cublas = next(
            (r.get("p50_us") for r in rows if r["shape"] == name and r["row"] == "cublas"), None
        )
        for r in rows:
            if r["shape"] == name and r.get("p50_us") and cublas:
                r["vs_cublas"] = cublas / r["p50_us"]

    header = f"{'shape':12} {'row':8} {'config':44} {'p50 us':>9} {'TFLOPS':>7} {'TB/s':>6} {'vs cuBLAS':>9} {'max err':>9}  note"
    lines = [torch.cuda.get_device_name(), header, "-" * len(header)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['shape']:12} {r['row']:8} {r['config']:44} {r['error']}")
            continue
        vs = f"{r['vs_cublas']:.2f}x" if "vs_cublas" in r else "-"
        note = "" if r["ok"] else "OVER TOLERANCE"
        lines.append(
            f"{r['shape']:12} {r['row']:8} {r['config']:44} {r['p50_us']:9.1f} {r['tflops']:7.1f} "
            f"{r['tb_s']:6.2f} {vs:>9} {r['max_err']:9.2e}  {note}"
        )
    text = "\n".join(lines)
    print(text)
    (out_dir / "table.txt").write_text(text + "\n")
    (out_dir / "table.json").write_text(json.dumps(rows, indent=1))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["warm"]:
        default_jobs = max(1, min(16, (os.cpu_count() or 2) - 2))
        return warm(int(argv[1]) if len(argv) > 1 else default_jobs)
    if argv[:1] == ["table"] and len(argv) >= 3:
        return table(Path(argv[1]), argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
