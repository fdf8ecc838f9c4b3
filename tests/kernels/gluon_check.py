"""GPU check of the Gluon attention kernel: correctness of many configs, then a timing table.

Run on an sm_90 machine from the repository root:
    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 tests/kernels/gluon_check.py 2>&1 | tee $OUT/gluon.log

Each config is checked in its own subprocess with a time limit, so a hang or a sticky CUDA error
costs that config only. Timing runs afterwards, one process, only for configs whose check passed,
against torch SDPA's FLASH / CUDNN / EFFICIENT backends. Full error texts go to
$OUT/gluon_errors.log, one JSON line per result to $OUT/gluon_results.jsonl.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.environ.get("OUT", "/tmp/gluon_out")

# Named timing shapes (issue 4): B, H, S, D; causal, float16.
NAMED: dict[str, tuple[int, int, int, int]] = {
    "stage1": (16, 16, 2048, 64),
    "llama-d128": (4, 32, 4096, 128),
    "long": (2, 16, 8192, 64),
    "mission": (32, 8, 512, 64),
}
# Small and odd shapes for correctness: B, H, S.
SMALL: list[tuple[int, int, int]] = [(1, 2, 1), (2, 3, 67), (1, 2, 128), (2, 2, 250), (1, 3, 1000)]
TOL = {"float16": (1e-2, 1e-2), "bfloat16": (2e-2, 2e-2)}

WS2 = {"BLOCK_M": 128, "BLOCK_N": 128, "CONSUMER_WGS": 2, "PRODUCER_WARPS": 1, "KV_STAGES": 2}
PERS = {**WS2, "CTA_MULT": 1}
M256 = {**WS2, "BLOCK_M": 256, "BLOCK_N": 64, "KV_STAGES": 3, "CTA_MULT": 1}
N64 = {**WS2, "BLOCK_N": 64, "KV_STAGES": 4}
NOWS = {"BLOCK_M": 64, "BLOCK_N": 128, "CONSUMER_WGS": 1, "PRODUCER_WARPS": 0}
# name -> (head dims, config). The best configs measured so far (runs 1-3 in docs/lab/benchmarks.md),
# each in both tile orders (TILE_ORDER=1: groups of heads, K/V shared in L2).
CONFIGS: dict[str, tuple[list[int], dict[str, int]]] = {}
for _label, _base, _dims in (
    ("ws2_m128n128_pers", PERS, [64, 128]),
    ("ws2_m256n64_s3_pers", M256, [64]),
    ("ws2_m128n64_s4", N64, [64, 128]),
    ("nows_m64n128", NOWS, [64, 128]),
):
    for _order in (0, 1):
        CONFIGS[_label + f"_t{_order}"] = (_dims, {**_base, "TILE_ORDER": _order})


def _device_info() -> Any:
    import torch

    from evotune.plugin import DeviceInfo

    props = torch.cuda.get_device_properties(0)
    return DeviceInfo(
        interpreted=False,
        name=props.name,
        capability=(props.major, props.minor),
        sm_count=props.multi_processor_count,
    )


def _inputs(
    b: int, h: int, s: int, d: int, dtype: str, seed: int, hot: bool = False
) -> tuple[Any, Any, Any]:
    import torch

    gen = torch.Generator(device="cuda").manual_seed(seed)
    tdt = getattr(torch, dtype)
    q, k, v = (
        torch.randn((b, h, s, d), generator=gen, device="cuda", dtype=torch.float32)
        for _ in range(3)
    )
    if hot:  # large logits: exercises the running max and the rescaling
        q = q * 4.0
    return q.to(tdt), k.to(tdt), v.to(tdt)


def _reference(q: Any, k: Any, v: Any, causal: bool, scale: float) -> Any:
    import torch
    import torch.nn.functional as F

    s_len = q.shape[2]
    if s_len <= 2048 and q.shape[0] * q.shape[1] * s_len * s_len <= 2**27:
        qf, kf, vf = q.float(), k.float(), v.float()
        att = (qf @ kf.transpose(-1, -2)) * scale
        if causal:
            mask = torch.ones(s_len, s_len, dtype=torch.bool, device=q.device).tril()
            att = att.masked_fill(~mask, float("-inf"))
        return torch.softmax(att, dim=-1) @ vf
    # Large shapes: float32 SDPA (memory-efficient backend), one batch at a time.
    outs = []
    for i in range(q.shape[0]):
        outs.append(
            F.scaled_dot_product_attention(
                q[i : i + 1].float(),
                k[i : i + 1].float(),
                v[i : i + 1].float(),
                is_causal=causal,
                scale=scale,
            )
        )
    return torch.cat(outs)


def _check_one(
    config: dict[str, int],
    b: int,
    h: int,
    s: int,
    d: int,
    causal: bool,
    dtype: str,
    seed: int,
    hot: bool = False,
) -> dict[str, Any]:
    import torch

    from evotune.kernels.attention_gluon import gluon_attention

    q, k, v = _inputs(b, h, s, d, dtype, seed, hot)
    scale = 1.0 / math.sqrt(d)
    out = torch.full_like(q, float("nan"))
    gluon_attention(q, k, v, causal, scale, config, out)
    torch.cuda.synchronize()
    ref = _reference(q, k, v, causal, scale)
    atol, rtol = TOL[dtype]
    diff = (out.float() - ref).abs()
    nan = int(torch.isnan(out).sum().item())
    bad = int((diff > atol + rtol * ref.abs()).sum().item())
    return {
        "ok": nan == 0 and bad == 0,
        "max_err": float(diff.nan_to_num(1e9).max().item()),
        "nan": nan,
        "bad": bad,
    }


def worker_check(name: str, config: dict[str, int], dims_list: list[int]) -> None:
    """Subprocess: correctness of one config on small/odd shapes (both dtypes, causal and not)."""
    import traceback

    from evotune.kernels.attention_gluon import gluon_unsupported

    dev = _device_info()
    seed = 0
    for d in dims_list:
        for dtype in ("float16", "bfloat16"):
            for causal in (True, False):
                dims = {"B": 1, "H": 1, "S": 128, "D": d, "causal": causal, "dtype": dtype}
                reason = gluon_unsupported(config, dims, dev)
                if reason:
                    print(
                        json.dumps(
                            {
                                "kind": "check",
                                "name": name,
                                "D": d,
                                "dtype": dtype,
                                "causal": causal,
                                "unsupported": reason,
                            }
                        ),
                        flush=True,
                    )
                    continue
                for b, h, s in SMALL:
                    for hot in (False, True) if s == 250 else (False,):
                        seed += 1
                        rec: dict[str, Any] = {
                            "kind": "check",
                            "name": name,
                            "shape": [b, h, s, d],
                            "dtype": dtype,
                            "causal": causal,
                            "hot": hot,
                        }
                        t0 = time.time()
                        try:
                            rec.update(_check_one(config, b, h, s, d, causal, dtype, seed, hot))
                        except Exception as exc:  # report and go on; the parent logs the text
                            rec.update(ok=False, error=f"{type(exc).__name__}: {str(exc)[-300:]}")
                            sys.stderr.write(f"=== {name} {rec['shape']} {dtype} causal={causal}\n")
                            sys.stderr.write(traceback.format_exc()[-6000:] + "\n")
                            print(json.dumps(rec), flush=True)
                            return  # a compile error repeats; a CUDA error poisons the context
                        rec["sec"] = round(time.time() - t0, 2)
                        print(json.dumps(rec), flush=True)


def _sdpa_fns(q: Any, k: Any, v: Any, scale: float) -> dict[str, Any]:
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    fns = {}
    for label, backend in (
        ("sdpa_flash", SDPBackend.FLASH_ATTENTION),
        ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION),
        ("sdpa_efficient", SDPBackend.EFFICIENT_ATTENTION),
    ):

        def fn(backend: Any = backend) -> Any:
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)

        fns[label] = fn
    return fns


def worker_time(plan: list[tuple[str, dict[str, int], str]]) -> None:
    """Subprocess: time SDPA backends and the passing configs on the named shapes (causal fp16)."""
    import torch
    import triton.testing

    from evotune.kernels.attention_gluon import gluon_attention

    shapes = sorted({shape for _, _, shape in plan})
    for shape in shapes:
        b, h, s, d = NAMED[shape]
        flops = 4.0 * b * h * s * s * d / 2.0
        q, k, v = _inputs(b, h, s, d, "float16", 1234)
        scale = 1.0 / math.sqrt(d)
        ref = None
        for label, fn in _sdpa_fns(q, k, v, scale).items():
            try:
                fn()
                ms = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
                graph_ms = None
                if shape == "mission":
                    try:
                        with torch.cuda.stream(torch.cuda.Stream()):
                            graph_ms = triton.testing.do_bench_cudagraph(
                                fn, rep=50, return_mode="median"
                            )
                    except Exception:  # some backends refuse capture; the eager time stands
                        graph_ms = None
                print(
                    json.dumps(
                        {
                            "kind": "time",
                            "name": label,
                            "shape": shape,
                            "ms": ms,
                            "tflops": flops / ms / 1e9,
                            "graph_ms": graph_ms,
                        }
                    ),
                    flush=True,
                )
            except Exception as exc:
                print(
                    json.dumps(
                        {
                            "kind": "time",
                            "name": label,
                            "shape": shape,
                            "error": f"{type(exc).__name__}: {str(exc)[:200]}",
                        }
                    ),
                    flush=True,
                )
        for name, config, shp in plan:
            if shp != shape:
                continue
            out = torch.full_like(q, float("nan"))
            rec: dict[str, Any] = {"kind": "time", "name": name, "shape": shape}
            try:
                gluon_attention(q, k, v, True, scale, config, out)
                torch.cuda.synchronize()
                if ref is None:
                    ref = _reference(q, k, v, True, scale)
                diff = (out.float() - ref).abs()
                rec["max_err"] = float(diff.nan_to_num(1e9).max().item())
                rec["ok"] = bool(torch.isfinite(out).all().item()) and bool(
                    (diff <= 1e-2 + 1e-2 * ref.abs()).all().item()
                )
                bench = functools.partial(gluon_attention, q, k, v, True, scale, config, out)
                ms = triton.testing.do_bench(bench, warmup=25, rep=100, return_mode="median")
                rec.update(ms=ms, tflops=flops / ms / 1e9)
                if shape == "mission":  # short kernels: also without host launch overhead
                    with torch.cuda.stream(torch.cuda.Stream()):
                        graph_ms = triton.testing.do_bench_cudagraph(
                            bench, rep=50, return_mode="median"
                        )
                    rec.update(graph_ms=graph_ms, graph_tflops=flops / graph_ms / 1e9)
            except Exception as exc:
                rec["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            print(json.dumps(rec), flush=True)
        del q, k, v, ref
        torch.cuda.empty_cache()


def profile_one(spec: str) -> None:
    """Launch one config twice on a named shape (compile + warm, then the one ncu profiles)."""
    import torch

    from evotune.kernels.attention_gluon import gluon_attention

    shape, name = spec.split(":")
    b, h, s, d = NAMED[shape]
    q, k, v = _inputs(b, h, s, d, "float16", 7)
    out = torch.empty_like(q)
    for _ in range(2):
        gluon_attention(q, k, v, True, 1.0 / math.sqrt(d), CONFIGS[name][1], out)
        torch.cuda.synchronize()
    print(f"profiled {shape} {name}", flush=True)


def _spawn(args: list[str], timeout: float, errlog: Any) -> list[dict[str, Any]]:
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run(
            [sys.executable, __file__, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=ROOT,
        )
        stdout, stderr, status = proc.stdout, proc.stderr, str(proc.returncode)
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        status = f"timeout after {timeout}s"
    recs = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                recs.append(json.loads(line))
    if stderr.strip() or status != "0":
        errlog.write(f"##### {args[:2]} status={status}\n{stderr[-8000:]}\n")
        errlog.flush()
    if status != "0":
        recs.append({"kind": "worker", "args": args[:2], "status": status})
    return recs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", choices=["check", "time"])
    parser.add_argument("--payload", default="")
    parser.add_argument("--only", default="", help="comma-separated config names")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--profile", default="", help="SHAPE:CONFIG: two launches, for ncu")
    parser.add_argument("--check-timeout", type=float, default=150)
    parser.add_argument("--time-timeout", type=float, default=150)
    args = parser.parse_args()
    if args.worker == "check":
        p = json.loads(args.payload)
        worker_check(p["name"], p["config"], p["dims"])
        return
    if args.profile:
        profile_one(args.profile)
        return
    if args.worker == "time":
        worker_time([tuple(x) for x in json.loads(args.payload)])
        return

    import torch
    import triton

    os.makedirs(OUT, exist_ok=True)
    print(
        f"torch {torch.__version__} triton {triton.__version__} gpu {torch.cuda.get_device_name(0)} "
        f"date {time.strftime('%Y-%m-%d %H:%M')}",
        flush=True,
    )
    names = [n for n in CONFIGS if not args.only or n in args.only.split(",")]
    results: list[dict[str, Any]] = []
    t0 = time.time()
    with open(os.path.join(OUT, "gluon_errors.log"), "w") as errlog:

        def run_check(name: str) -> list[dict[str, Any]]:
            dims, cfg = CONFIGS[name]
            payload = json.dumps({"name": name, "config": cfg, "dims": dims})
            return _spawn(["--worker", "check", "--payload", payload], args.check_timeout, errlog)

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for recs in pool.map(run_check, names):
                results.extend(recs)
        print(f"checks done in {time.time() - t0:.0f}s", flush=True)
        summary: dict[str, dict[str, Any]] = {}
        for r in results:
            if r.get("kind") == "check":
                s = summary.setdefault(
                    r["name"], {"pass": 0, "fail": 0, "unsup": 0, "max_err": 0.0, "first": ""}
                )
                if "unsupported" in r:
                    s["unsup"] += 1
                elif r.get("ok"):
                    s["pass"] += 1
                    s["max_err"] = max(s["max_err"], r["max_err"])
                else:
                    s["fail"] += 1
                    if not s["first"]:
                        s["first"] = json.dumps(
                            {
                                k: r.get(k)
                                for k in (
                                    "shape",
                                    "dtype",
                                    "causal",
                                    "hot",
                                    "max_err",
                                    "nan",
                                    "bad",
                                    "error",
                                )
                            }
                        )
            elif r.get("kind") == "worker":
                print("WORKER", r, flush=True)
        for name in names:
            s = summary.get(name, {})
            print(
                f"CHECK {name:22s} pass={s.get('pass', 0):3d} fail={s.get('fail', 0):3d} "
                f"unsup={s.get('unsup', 0):2d} max_err={s.get('max_err', 0):.2e} {s.get('first', '')[:300]}",
                flush=True,
            )

        plan = []
        for name in names:
            s = summary.get(name, {})
            if s.get("pass", 0) and not s.get("fail", 0):
                dims, cfg = CONFIGS[name]
                for shape, (_, _, _, d) in NAMED.items():
                    if d in dims:
                        plan.append((name, cfg, shape))
        t1 = time.time()
        timing = _spawn(
            ["--worker", "time", "--payload", json.dumps(plan)], args.time_timeout, errlog
        )
        results.extend(timing)
        print(f"timing done in {time.time() - t1:.0f}s", flush=True)
    with open(os.path.join(OUT, "gluon_results.jsonl"), "w") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")

    best_sdpa: dict[str, float] = {}
    for r in timing:
        if r.get("name", "").startswith("sdpa") and "ms" in r:
            best_sdpa[r["shape"]] = min(best_sdpa.get(r["shape"], 1e9), r["ms"])
    print(
        f"\n{'shape':11s} {'impl':22s} {'ms':>8s} {'TFLOPS':>7s} {'vs best SDPA':>12s} {'ok':>3s} "
        f"{'max_err':>8s} graph_ms"
    )
    for r in timing:
        if r.get("kind") != "time":
            continue
        if "ms" not in r:
            print(f"{r['shape']:11s} {r['name']:22s} ERROR {r.get('error', '')[:120]}")
            continue
        speed = best_sdpa.get(r["shape"], float("nan")) / r["ms"]
        ok = "" if r["name"].startswith("sdpa") else ("yes" if r.get("ok") else "NO")
        err = f"{r['max_err']:.1e}" if "max_err" in r else ""
        graph = f"{r['graph_ms']:.4f}" if r.get("graph_ms") else ""
        print(
            f"{r['shape']:11s} {r['name']:22s} {r['ms']:8.3f} {r['tflops']:7.1f} {speed:11.2f}x {ok:>3s} "
            f"{err:>8s} {graph}"
        )


if __name__ == "__main__":
    main()
