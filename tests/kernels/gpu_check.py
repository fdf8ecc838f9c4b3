"""GPU self-check of the Triton attention kernel: compile in parallel, sweep, bench against SDPA.

    PYTHONPATH=. python3 tests/kernels/gpu_check.py [--shapes a,b] [--jobs N] [--json PATH]
                                                    [--finalists] [--probe SHAPE]

1. Compiles every config it will run (and the VARIANTS of test_attention_gpu.py) in a pool of
   processes, so that the timing loop and pytest afterwards find Triton's cache full.
2. Per named shape: times a set of tile/warp/stage bases (phase 1), then variations of the
   best one (FAST_EXP, CTA_MULT, stages, TMA, warp specialization; phase 2); every config is
   checked against the reference before it is timed (evotune.bench.bench_dims).
3. Prints one table per shape: the default config and the fastest configs, re-timed next to
   torch SDPA's FLASH, cuDNN and EFFICIENT backends, and a summary table last.

--finalists skips the sweep and times FINALISTS (picked from an earlier sweep) instead.
--probe SHAPE runs PROBES once each, naming each before it starts: run it under `timeout`
to find a config that hangs. Progress goes to $OUT/progress.log, results to --json as they come.

Needs torch, triton, pyyaml and rich only (no pydantic): it runs on a bare GPU host.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import triton  # noqa: E402
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from evotune.bench import BenchRow, bench_dims, render_bench_table  # noqa: E402
from evotune.expressions import evaluate  # noqa: E402
from evotune.kernels import attention as attn  # noqa: E402
from evotune.kernels.attention_common import complete_shape_dims  # noqa: E402
from tests.kernels.test_attention_gpu import ODD_SHAPES, ODD_VARIANTS, VARIANTS  # noqa: E402

SPACE: dict[str, Any] = yaml.safe_load((ROOT / "search_spaces" / "attention.yaml").read_text())

# Phase 1: tile shape x warps x stages (x TMA on/off), the knobs that matter most on H100.
BASES: list[dict[str, Any]] = [
    {"BLOCK_M": bm, "BLOCK_N": bn, "num_warps": w, "num_stages": s}
    for bm, bn, w, s in [
        (128, 64, 4, 3),
        (128, 64, 8, 3),
        (128, 128, 8, 3),
        (128, 128, 8, 2),
        (64, 64, 4, 3),
        (64, 128, 4, 3),
        (128, 32, 4, 3),
        (256, 64, 8, 3),
        (256, 32, 8, 3),
    ]
]


def _cfg(bm: int, bn: int, w: int, s: int, **knobs: Any) -> dict[str, Any]:
    return {"BLOCK_M": bm, "BLOCK_N": bn, "num_warps": w, "num_stages": s, **knobs}


# Picked from the 2026-11-23 H100 sweep (phase 1 bests: 64x64 w4 s3 at small/stage1,
# 128x64 w4 s3 at long/stage1-noncausal, 128x32 w4 s3 at mission, 64x64 w4 s3 tma at
# llama-d128) and the knobs phase 2 did not reach before a hang stopped it.
_D64 = [
    _cfg(64, 64, 4, 3),
    _cfg(64, 64, 4, 3, TMA=True),
    _cfg(64, 64, 4, 3, FAST_EXP=1),
    _cfg(64, 64, 4, 3, FAST_EXP=2),
    _cfg(64, 64, 4, 3, FAST_EXP=1, TMA=True),
    _cfg(64, 64, 4, 3, CTA_MULT=1),
    _cfg(64, 64, 4, 2, FAST_EXP=1),
    _cfg(128, 64, 4, 3),
    _cfg(128, 64, 4, 3, TMA=True),
    _cfg(128, 64, 4, 3, FAST_EXP=1),
    _cfg(128, 64, 4, 3, FAST_EXP=2),
    _cfg(128, 64, 4, 3, FAST_EXP=1, TMA=True),
    _cfg(128, 32, 4, 3, FAST_EXP=1),
    _cfg(128, 64, 8, 3, TMA=True, WARP_SPECIALIZE=True),
]
_D128 = [
    _cfg(64, 64, 4, 3, TMA=True),
    _cfg(64, 64, 4, 2, TMA=True),
    _cfg(64, 64, 4, 3, TMA=True, FAST_EXP=1),
    _cfg(64, 64, 4, 3, TMA=True, FAST_EXP=2),
    _cfg(64, 64, 4, 3, TMA=True, CTA_MULT=1),
    _cfg(64, 32, 4, 3, TMA=True),
    _cfg(64, 32, 4, 4, TMA=True),
    _cfg(128, 32, 4, 3, TMA=True),
    _cfg(128, 32, 4, 2, TMA=True, FAST_EXP=1),
    _cfg(64, 128, 4, 2, TMA=True),
    _cfg(128, 64, 8, 2, TMA=True),
    _cfg(128, 128, 8, 2, TMA=True),
    _cfg(128, 64, 8, 3, TMA=True, WARP_SPECIALIZE=True),
]
FINALISTS: dict[str, list[dict[str, Any]]] = {
    "tiny": [_cfg(64, 64, 4, 3), _cfg(128, 64, 8, 3), _cfg(64, 64, 4, 3, FAST_EXP=1)],
    "small": _D64,
    "mission": [*_D64, _cfg(128, 32, 4, 2, FAST_EXP=1), _cfg(64, 32, 4, 2, FAST_EXP=1)],
    "stage1": _D64,
    "stage1-noncausal": _D64,
    "llama-d128": _D128,
    "llama-d128-bf16": _D128,
    "long": _D64,
}
# The phase-2 configs that were running at mission when the sweep hung. The first one hung
# (H100, 2026-11-23); the launcher now refuses it and the other known-bad WS configs.
PROBES: list[dict[str, Any]] = [
    _cfg(128, 32, 4, 3, TMA=True, WARP_SPECIALIZE=True),
    _cfg(128, 32, 4, 3, TMA=True, WARP_SPECIALIZE=True, FAST_EXP=1),
    _cfg(128, 32, 4, 3, FAST_EXP=1),
    _cfg(128, 32, 4, 3, FAST_EXP=2),
    _cfg(128, 32, 4, 3, CTA_MULT=1),
    _cfg(128, 32, 4, 3, CTA_MULT=2),
    _cfg(128, 32, 4, 2),
    _cfg(128, 32, 4, 4),
    _cfg(128, 32, 4, 3, TMA=True),
    _cfg(128, 32, 4, 3, FAST_EXP=1, CTA_MULT=1),
]
console = Console(width=170)
_OUT = Path(os.environ.get("OUT", "."))


def progress(text: str) -> None:
    """One line to $OUT/progress.log, flushed: the last line names a config that hangs."""
    with (_OUT / "progress.log").open("a") as f:
        f.write(f"{time.strftime('%H:%M:%S')} {text}\n")


def tagged(prefix: str) -> Callable[[str], None]:
    """A bench_dims on_row callback that logs `prefix label` to the progress file."""

    def log(row_label: str) -> None:
        progress(f"{prefix} {row_label}")

    return log


def probe(name: str) -> int:
    """Run PROBES once each at one shape, saying which one starts (for `timeout`)."""
    dims = SPACE["shapes"][name]
    inputs = attn.make_inputs(dims, 0, "cuda")
    ref = attn.reference(inputs)
    for config in PROBES:
        print(f"probe {name} {label(config)} ...", end=" ", flush=True)
        progress(f"probe {name} {label(config)}")
        out = attn.empty_output(inputs)
        try:
            attn.run(inputs, out, config)
            torch.cuda.synchronize()
            print(f"ok, max error {(out.float() - ref).abs().max().item():.2e}", flush=True)
        except Exception as exc:
            print(f"{type(exc).__name__}: {str(exc).strip()[:120]}", flush=True)
    return 0


def full_config(config: dict[str, Any]) -> dict[str, Any]:
    """A triton config with every triton parameter set (defaults from the module)."""
    return {**attn.DEFAULT_CONFIG, **config}


def violations(config: dict[str, Any], dims: dict[str, Any]) -> list[str]:
    """The search space's constraints a config breaks (without evotune.space / pydantic)."""
    ns: dict[str, Any] = complete_shape_dims(dims)  # shapes leave out Hkv = H, Skv = S
    for name, expr in (SPACE.get("derived") or {}).items():
        ns[name] = evaluate(expr, ns)
    for name, param in SPACE["parameters"].items():
        ns[name] = config.get(name, param["default"])
    return [c["expr"] for c in SPACE.get("constraints", []) if not evaluate(c["expr"], ns)]


def label(config: dict[str, Any]) -> str:
    c = full_config(config)
    parts = [f"{c['BLOCK_M']}x{c['BLOCK_N']} w{c['num_warps']} s{c['num_stages']}"]
    if c["FAST_EXP"]:
        parts.append(f"fe{c['FAST_EXP']}")
    if c["CTA_MULT"]:
        parts.append(f"cta{c['CTA_MULT']}")
    if c["TMA"]:
        parts.append("tma")
    if c["WARP_SPECIALIZE"]:
        parts.append("ws")
    return " ".join(parts)


def compile_key(dims: dict[str, Any], config: dict[str, Any]) -> str:
    """What decides the compiled kernel (sizes are not specialised, see attn_fwd_kernel)."""
    c, full = full_config(config), complete_shape_dims(dims)
    fit = (full["S"] % c["BLOCK_M"] == 0, full["Skv"] % c["BLOCK_N"] == 0)
    return json.dumps([dims["D"], dims["dtype"], dims["causal"], fit, c], sort_keys=True)


def _compile_one(job: tuple[dict[str, Any], dict[str, Any]]) -> tuple[str | None, float]:
    dims, config = job
    start = time.time()
    try:
        attn.compile_only(dims, config, "cuda")
    except Exception as exc:
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[-1][:200] if text else ''}", time.time() - start
    return None, time.time() - start


def precompile(jobs: list[tuple[dict[str, Any], dict[str, Any]]], workers: int) -> dict[str, str]:
    """Compile distinct (dims, config) pairs in parallel; returns errors by compile key."""
    unique: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for dims, config in jobs:
        if not violations(full_config(config), dims) or config in VARIANTS.values():
            unique.setdefault(compile_key(dims, config), (dims, config))
    start = time.time()
    errors: dict[str, str] = {}
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(_compile_one, job): key for key, job in unique.items()}
        for future in concurrent.futures.as_completed(futures):
            try:
                error, _ = future.result()
            except Exception as exc:  # a worker that died (a compiler crash) is an error too
                error = f"worker died: {type(exc).__name__}: {exc}"
            if error:
                errors[futures[future]] = error
    print(
        f"compiled {len(unique)} kernels with {workers} processes in {time.time() - start:.0f} s; {len(errors)} failed",
        flush=True,
    )
    for key, error in list(errors.items())[:20]:
        print(f"  compile failure {key}: {error}", flush=True)
    return errors


def phase2_configs(best: dict[str, Any], dims: dict[str, Any]) -> list[dict[str, Any]]:
    """Variations of the best base: each secondary knob, one at a time (and TMA+WS)."""
    b = full_config(best)
    out = [{**b, "FAST_EXP": fe} for fe in (0, 1, 2) if fe != b["FAST_EXP"]] + [
        {**b, "CTA_MULT": m} for m in (0, 1, 2) if m != b["CTA_MULT"]
    ]
    out += [{**b, "num_stages": s} for s in (2, 3, 4) if s != b["num_stages"]]
    out.append({**b, "TMA": not b["TMA"], "WARP_SPECIALIZE": False})
    if b["FAST_EXP"] != 2:
        out.append({**b, "TMA": True, "WARP_SPECIALIZE": True})
        out.append({**b, "TMA": True, "WARP_SPECIALIZE": True, "FAST_EXP": 1})
    out.append({**b, "FAST_EXP": 1, "CTA_MULT": 1})
    seen, unique = set(), []
    for c in out:
        key = json.dumps(c, sort_keys=True)
        if key not in seen and not violations(c, dims):
            seen.add(key)
            unique.append(c)
    return unique


def best_of(
    rows: list[BenchRow], configs: dict[str, dict[str, Any]]
) -> list[tuple[float, dict[str, Any]]]:
    timed = [(r.p50_us, configs[r.label]) for r in rows if r.kind == "kernel" and r.p50_us]
    return sorted(timed, key=lambda t: t[0])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default="", help="comma-separated named shapes (default: all)")
    parser.add_argument("--jobs", type=int, default=max(1, min(15, (os.cpu_count() or 2) - 1)))
    parser.add_argument(
        "--json", default=os.path.join(os.environ.get("OUT", "."), "gpu_check.json")
    )
    parser.add_argument("--finalists", action="store_true", help="skip the sweep: time FINALISTS")
    parser.add_argument("--probe", default="", help="run PROBES once at this shape (see above)")
    parser.add_argument(
        "--budget-ms", type=float, default=300.0, help="timing budget of a final row"
    )
    parser.add_argument("--top", type=int, default=4, help="fastest configs re-timed against SDPA")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="on the CPU interpreter (TRITON_INTERPRET=1), one untimed run per row: tests this script",
    )
    args = parser.parse_args()

    device = "cpu" if args.dry_run else "cuda"
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA GPU (use --dry-run on the CPU interpreter)", file=sys.stderr)
        return 2
    device_name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU interpreter (dry run)"
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        device_name += f" sm_{props.major}{props.minor} {props.multi_processor_count} SMs"
    print(
        f"{datetime.date.today()} {device_name}, torch {torch.__version__}, "
        f"triton {triton.__version__}, cuda {torch.version.cuda}",
        flush=True,
    )
    if args.probe:
        precompile([(SPACE["shapes"][args.probe], c) for c in PROBES], args.jobs)
        return probe(args.probe)
    names = [s for s in args.shapes.split(",") if s] or list(SPACE["shapes"])
    shapes = {n: SPACE["shapes"][n] for n in names}
    tolerances = SPACE["tolerances"]
    fixed: dict[str, list[dict[str, Any]]] = FINALISTS if args.finalists else {}

    # Compile everything phase 1 (or the final table) and pytest will need, in parallel.
    jobs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for name, dims in shapes.items():
        planned = (
            fixed.get(name, [])
            if fixed
            else [{**b, "TMA": t} for b in BASES for t in (False, True)]
        )
        jobs += [(dims, c) for c in [*planned, attn.DEFAULT_CONFIG]]
        if not fixed:
            jobs += [(dims, v) for v in VARIANTS.values()]
    for dims in ODD_SHAPES.values() if not fixed else ():
        jobs += [(dims, VARIANTS[v]) for v in ODD_VARIANTS]
    if not args.dry_run:
        precompile(jobs, args.jobs)

    results: dict[str, Any] = {
        "device": device_name,
        "date": str(datetime.date.today()),
        "shapes": {},
    }
    summary: list[tuple[str, BenchRow, BenchRow | None, BenchRow | None]] = []
    candidates: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    if not fixed:
        # Phase 1: the bases, kernel only.
        for name, dims in shapes.items():
            tol = tolerances[dims["dtype"]]
            configs: dict[str, dict[str, Any]] = {
                label(c): full_config(c)
                for c in ({**b, "TMA": t} for b in BASES for t in (False, True))
                if not violations(full_config(c), dims)
            }
            start = time.time()
            rows = bench_dims(
                attn,
                dims,
                configs,
                tolerance=tol,
                baselines=False,
                time_budget_s=0.06,
                device=device,
                on_row=tagged(f"phase1 {name}"),
            )
            candidates[name] = best_of(rows, configs)
            failed = [f"{r.label}: {r.error}" for r in rows if r.error]
            top = candidates[name][0] if candidates[name] else None
            print(
                f"[phase1] {name}: {len(configs)} configs in {time.time() - start:.0f} s; best {label(top[1]) if top else '-'} {top[0] if top else 0:.1f} us; failed: {failed}",
                flush=True,
            )
        # Phase 2: variations of each shape's best base.
        phase2 = {n: phase2_configs(c[0][1], shapes[n]) for n, c in candidates.items() if c}
        if not args.dry_run:
            precompile([(shapes[n], c) for n, cs in phase2.items() for c in cs], args.jobs)
        for name, configs_list in phase2.items():
            dims = shapes[name]
            configs = {label(c): c for c in configs_list}
            start = time.time()
            rows = bench_dims(
                attn,
                dims,
                configs,
                tolerance=tolerances[dims["dtype"]],
                baselines=False,
                time_budget_s=0.06,
                device=device,
                on_row=tagged(f"phase2 {name}"),
            )
            candidates[name] = sorted(candidates[name] + best_of(rows, configs), key=lambda t: t[0])
            failed = [f"{r.label}: {r.error}" for r in rows if r.error]
            top = candidates[name][0]
            print(
                f"[phase2] {name}: {len(configs)} configs in {time.time() - start:.0f} s; best {label(top[1])} {top[0]:.1f} us; failed: {failed}",
                flush=True,
            )

    # Final tables: default + the fastest configs, re-timed next to SDPA.
    for name, dims in shapes.items():
        finalists = fixed.get(name) or [c for _, c in candidates.get(name, [])[: args.top]]
        configs = {"default": dict(attn.DEFAULT_CONFIG)}
        for c in finalists:
            configs.setdefault(label(c), full_config(c))
        rows = bench_dims(
            attn,
            dims,
            configs,
            tolerance=tolerances[dims["dtype"]],
            time_budget_s=args.budget_ms / 1e3,
            device=device,
            on_row=tagged(f"final {name}"),
        )
        console.print(render_bench_table(rows, title=f"{name} {dims} on {device_name}"))
        kernel_rows = [r for r in rows if r.kind == "kernel" and r.p50_us]
        sdpa_rows = [r for r in rows if r.kind == "baseline" and r.p50_us]
        best_kernel = min(kernel_rows, key=lambda r: r.p50_us or 0.0) if kernel_rows else None
        best_sdpa = min(sdpa_rows, key=lambda r: r.p50_us or 0.0) if sdpa_rows else None
        default_row = next(r for r in rows if r.label == "default")
        summary.append((name, default_row, best_kernel, best_sdpa))
        results["shapes"][name] = {
            "dims": dims,
            "configs": configs,
            "rows": [r.__dict__ for r in rows],
            "candidates": [(t, c) for t, c in candidates.get(name, [])[:10]],
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))

    table = Table(title=f"attention kernel vs SDPA, {device_name}, {datetime.date.today()}")
    for col in (
        "shape",
        "default TFLOPS",
        "best config",
        "best TFLOPS",
        "best SDPA",
        "SDPA TFLOPS",
        "best/SDPA",
    ):
        table.add_column(col)
    for name, default_row, best_kernel, best_sdpa in summary:
        table.add_row(
            name,
            f"{default_row.tflops:.0f}" if default_row.tflops else (default_row.error or "-"),
            best_kernel.label if best_kernel else "-",
            f"{best_kernel.tflops:.0f}" if best_kernel and best_kernel.tflops else "-",
            best_sdpa.label if best_sdpa else "-",
            f"{best_sdpa.tflops:.0f}" if best_sdpa and best_sdpa.tflops else "-",
            f"{best_kernel.ratio_to_best_baseline:.2f}x"
            if best_kernel and best_kernel.ratio_to_best_baseline
            else "-",
        )
    console.print(table)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
