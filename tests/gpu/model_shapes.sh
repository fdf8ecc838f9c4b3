#!/usr/bin/env bash
# The model shapes of issue 26 (grouped-query heads, a KV cache, decoding): for each, a short
# `evotune search`, then `evotune bench --best` in a fresh process against torch SDPA's backends
# (enable_gqa; a backend without a kernel for the shape is listed as refused, not timed).
# Usage (repo root, wheels for missing packages in .whl/):
#   bash tests/gpu/model_shapes.sh OUTDIR BUDGET SECONDS [SHAPE...]
# SHAPE defaults to every model shape of search_spaces/attention.yaml. Writes
# OUTDIR/<shape>.search.json, <shape>.best.json, <shape>.bench.json and model_shapes.log; prints a table last:
# shape, trial statuses, the tuned config's p50, the fastest SDPA backend and its p50, their
# ratio (above 1: the tuned kernel is faster), the backends that refused the shape, and (issue 21's
# one timer) the published p50 with `bench --best`'s p50 over it.
set -uo pipefail
out=${1:?output folder} budget=${2:?trials} seconds=${3:?seconds}
shift 3
shapes=("$@")
[ ${#shapes[@]} -gt 0 ] ||
  shapes=(llama3-8b-prefill llama3-8b-prefill-bf16 chunked-prefill decode decode-long)
mkdir -p "$out"
source tests/gpu/host_env.sh || exit 1
export EVOTUNE_DB="sqlite:///$out/model_shapes.db"
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader
date -u
for shape in "${shapes[@]}"; do
  python3 -m evotune search --shape "$shape" --budget "$budget" --time-limit "$seconds" --json \
    >"$out/$shape.search.json" 2>>"$out/model_shapes.log"
  echo "search $shape exit $?"
  python3 -m evotune best --shape "$shape" --json >"$out/$shape.best.json" 2>>"$out/model_shapes.log"
  python3 -m evotune bench --shape "$shape" --best --json >"$out/$shape.bench.json" \
    2>>"$out/model_shapes.log"
  echo "bench $shape exit $?"
done
python3 - "$out" "${shapes[@]}" <<'PY'
import json, sys
out, shapes = sys.argv[1], sys.argv[2:]
print(f"{'shape':<24} {'statuses':<28} {'best µs':>9} {'fastest SDPA':<16} {'its µs':>9} "
      f"{'ratio':>6}  {'published':>9} {'bench/pub':>9}  refused")
for shape in shapes:
    try:
        search = json.load(open(f"{out}/{shape}.search.json"))
        rows = json.load(open(f"{out}/{shape}.bench.json"))
    except (OSError, ValueError) as exc:
        print(f"{shape:<24} missing output: {exc}")
        continue
    statuses = ",".join(f"{k}:{v}" for k, v in sorted(search["status_counts"].items()))
    best = next((r for r in rows if r["label"] == "best"), {})
    timed = [r for r in rows if r["kind"] == "baseline" and r["p50_us"]]
    refused = [r["label"].removeprefix("sdpa:") for r in rows
               if r["kind"] == "baseline" and not r["p50_us"]]
    fastest = min(timed, key=lambda r: r["p50_us"], default=None)
    best_us = best.get("p50_us")
    ratio = f"{fastest['p50_us'] / best_us:.3f}" if best_us and fastest else "-"
    try:
        published_doc = json.load(open(f"{out}/{shape}.best.json"))
        published = published_doc["shootout_p50_us"] or published_doc["p50_us"]
    except (OSError, ValueError, KeyError):
        published = None
    one_timer = f"{best_us / published:.3f}" if best_us and published else "-"
    print(f"{shape:<24} {statuses:<28} {best_us or 0:>9.1f} "
          f"{fastest['label'] if fastest else '-':<16} {fastest['p50_us'] if fastest else 0:>9.1f} "
          f"{ratio:>6}  {published or 0:>9.1f} {one_timer:>9}  {','.join(refused) or '-'}")
PY
