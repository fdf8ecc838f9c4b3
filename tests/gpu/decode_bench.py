"""Split-KV decoding (attention `impl: decode`) against torch SDPA at the decode shapes.

    PYTHONPATH=. python3 tests/gpu/decode_bench.py [--shapes decode,decode-long]
        [--dtypes float16,bfloat16] [--sweep] [--budget-ms 300] [--jobs N] [--json PATH]

Per shape and dtype: the tl-level kernel's default config, the space's decode seeds, KV_SPLITS
0 (from the SM count) and 1..64, and a few tile/warp/stage variations (with --sweep: every
decode config the space allows there), each checked against the reference and timed with
evotune's own timer (evotune.bench.bench_dims), then SDPA's FLASH, cuDNN and EFFICIENT
backends (enable_gqa). Prints one table per shape and dtype, and a summary table last: the
fastest decode config, the fastest SDPA backend, their ratio (above 1: decode is faster).
The kernels are compiled in a pool of processes first.

--dry-run runs tiny decode shapes once each on the CPU interpreter (TRITON_INTERPRET=1): it
tests this script, it measures nothing. Needs torch, triton, pyyaml and rich (no pydantic).
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

SPACE: dict[str, Any] = yaml.safe_load((ROOT / "search_spaces" / "attention.yaml").read_text())
DRY_SHAPES: dict[str, dict[str, Any]] = {
    "dry-decode": {"B": 2, "H": 8, "Hkv": 2, "S": 1, "Skv": 200, "D": 32, "causal": False},
}
console = Console(width=170)


def violations(config: dict[str, Any], dims: dict[str, Any]) -> list[str]:
    """The space's constraints a config breaks (inactive parameters at their defaults, as
    evotune.space evaluates them), without evotune.space (pydantic)."""
    ns: dict[str, Any] = complete_shape_dims(dims)
    for name, expr in (SPACE.get("derived") or {}).items():
        ns[name] = evaluate(expr, ns)
    for name, param in SPACE["parameters"].items():
        ns[name] = config.get(name, param["default"])
    return [c["expr"] for c in SPACE["constraints"] if not evaluate(c["expr"], ns)]


def decode_config(
    splits: int, block_n: int = 64, warps: int = 4, stages: int = 3
) -> dict[str, Any]:
    return {
        "impl": "decode",
        "KV_SPLITS": splits,
        "BLOCK_N": block_n,
        "num_warps": warps,
        "num_stages": stages,
    }


def label(config: dict[str, Any]) -> str:
    if config.get("impl") != "decode":
        return "triton default"
    c = {**decode_config(0), **config}
    splits = "auto" if c["KV_SPLITS"] == 0 else str(c["KV_SPLITS"])
    return f"decode splits={splits} bn{c['BLOCK_N']} w{c['num_warps']} s{c['num_stages']}"


def configs_for(dims: dict[str, Any], sweep: bool) -> dict[str, dict[str, Any]]:
    """Labelled configs valid at these dims: the tl kernel's default first."""
    seeds = [s["config"] for s in SPACE["seeds"] if s["config"].get("impl") == "decode"]
    if sweep:
        params = SPACE["parameters"]
        decode = [
            decode_config(s, bn, w, st)
            for s in params["KV_SPLITS"]["values"]
            for bn in params["BLOCK_N"]["values"]
            for w in params["num_warps"]["values"]
            for st in params["num_stages"]["values"]
        ]
    else:
        decode = [decode_config(s) for s in (0, 1, 2, 4, 8, 16, 32, 64)]
        decode += [decode_config(4, 32), decode_config(16, 32), decode_config(4, 128, 8)]
        decode += [decode_config(16, 128, 8), decode_config(4, 64, 8), decode_config(16, 64, 8)]
        decode += [decode_config(4, stages=4), decode_config(16, stages=4)]
        decode += [decode_config(4, stages=2), decode_config(16, stages=2)]
    configs: dict[str, dict[str, Any]] = {"triton default": {}}
    for config in [*seeds, *decode]:
        full = {**decode_config(0), **config}
        if not violations(full, dims):
            configs.setdefault(label(full), full)
    return configs


def _compile_one(job: tuple[dict[str, Any], dict[str, Any]]) -> str | None:
    dims, config = job
    try:
        attn.compile_only(dims, config, None)
    except Exception as exc:  # reported; the timed row shows the same failure
        text = str(exc).strip().splitlines()
        return f"{label(config)}: {type(exc).__name__}: {text[-1][:200] if text else ''}"
    return None


def precompile(jobs: list[tuple[dict[str, Any], dict[str, Any]]], workers: int) -> None:
    start = time.time()
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        errors = [e for e in pool.map(_compile_one, jobs) if e]
    print(f"compiled {len(jobs)} kernels in {time.time() - start:.0f} s; {len(errors)} failed")
    for error in errors[:20]:
        print(f"  {error}")


def fastest(rows: list[BenchRow], kind: str, prefix: str = "") -> BenchRow | None:
    timed = [r for r in rows if r.kind == kind and r.p50_us and r.label.startswith(prefix)]
    return min(timed, key=lambda r: r.p50_us or 0.0, default=None)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default="decode,decode-long")
    parser.add_argument("--dtypes", default="float16,bfloat16")
    parser.add_argument("--sweep", action="store_true", help="every decode config of the space")
    parser.add_argument("--budget-ms", type=float, default=300.0, help="timing budget of a row")
    parser.add_argument("--jobs", type=int, default=max(1, min(15, (os.cpu_count() or 2) - 1)))
    parser.add_argument(
        "--json", default=os.path.join(os.environ.get("OUT", "."), "decode_bench.json")
    )
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the interpreter")
    args = parser.parse_args()

    from evotune.worker.trial import Device

    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA GPU (use --dry-run on the CPU interpreter)", file=sys.stderr)
        return 2
    device = Device.open(interpreted=args.dry_run)
    if args.dry_run:
        device_name = "CPU interpreter (dry run: nothing measured)"
        shapes = DRY_SHAPES
        dtypes = ["float16"]
    else:
        props = torch.cuda.get_device_properties(0)
        device_name = (
            f"{props.name} sm_{props.major}{props.minor} {props.multi_processor_count} SMs"
        )
        shapes = {name: SPACE["shapes"][name] for name in args.shapes.split(",") if name}
        dtypes = [d for d in args.dtypes.split(",") if d]
    print(
        f"{datetime.date.today()} {device_name}, torch {torch.__version__}, "
        f"triton {triton.__version__}, cuda {torch.version.cuda}",
        flush=True,
    )
    cases = [(n, {**dims, "dtype": d}) for n, dims in shapes.items() for d in dtypes]
    plans = {(n, d["dtype"]): configs_for(d, args.sweep) for n, d in cases}
    if not args.dry_run:
        jobs = [(dims, c) for n, dims in cases for c in plans[n, dims["dtype"]].values()]
        precompile(jobs, args.jobs)

    summary: list[tuple[str, str, BenchRow | None, BenchRow | None, BenchRow | None]] = []
    results: dict[str, Any] = {"device": device_name, "date": str(datetime.date.today())}
    for name, dims in cases:
        configs = plans[name, dims["dtype"]]
        rows = bench_dims(
            attn,
            dims,
            configs,
            tolerance=SPACE["tolerances"][dims["dtype"]],
            baselines=not args.dry_run,
            device=device,
            time_budget_s=args.budget_ms / 1e3,
        )
        console.print(render_bench_table(rows, title=f"{name} {dims['dtype']} {dims}"))
        triton_row = next((r for r in rows if r.label == "triton default"), None)
        summary.append(
            (name, dims["dtype"], fastest(rows, "kernel", "decode"), triton_row,
             fastest(rows, "baseline"))
        )  # fmt: skip
        results[f"{name}/{dims['dtype']}"] = {"dims": dims, "configs": configs, "rows": rows}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(results, indent=1, default=lambda o: getattr(o, "__dict__", str(o)))
        )

    table = Table(title=f"impl: decode vs SDPA, {device_name}, {datetime.date.today()}")
    for column in ("shape", "dtype", "fastest decode", "µs", "triton default µs", "fastest SDPA",
                   "µs", "decode/SDPA"):  # fmt: skip
        table.add_column(column)
    for name, dtype, best, triton_row, sdpa in summary:
        table.add_row(
            name,
            dtype,
            best.label if best else "-",
            f"{best.p50_us:.1f}" if best and best.p50_us else "-",
            f"{triton_row.p50_us:.1f}" if triton_row and triton_row.p50_us else "-",
            sdpa.label if sdpa else "-",
            f"{sdpa.p50_us:.1f}" if sdpa and sdpa.p50_us else "-",
            f"{best.ratio_to_best_baseline:.3f}x" if best and best.ratio_to_best_baseline else "-",
        )
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
