#!/usr/bin/env bash
# One timer (issue 21): for each shape, a short `evotune search`, then the published p50 against
# `evotune bench --best` in a fresh process. Both measure through evotune/worker/trial.py, so
# they should agree within 2 %.
# Usage (repo root, wheels for missing packages in .whl/):
#   bash tests/gpu/one_timer.sh OUTDIR BUDGET SECONDS SHAPE...
# Writes OUTDIR/<shape>.search.json, <shape>.best.json, <shape>.bench.json and a log; prints a
# table last: shape, trials (statuses), published p50, bench p50, bench/published.
set -uo pipefail
out=${1:?output folder} budget=${2:?trials} seconds=${3:?seconds}
shift 3
source tests/gpu/host_env.sh || exit 1
export EVOTUNE_DB="sqlite:///$out/one_timer.db"
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader
date -u
for shape in "$@"; do
  python3 -m evotune search --shape "$shape" --budget "$budget" --time-limit "$seconds" --json \
    >"$out/$shape.search.json" 2>>"$out/one_timer.log"
  echo "search $shape exit $?"
  python3 -m evotune best --shape "$shape" --json >"$out/$shape.best.json" 2>>"$out/one_timer.log"
  python3 -m evotune bench --shape "$shape" --best --json >"$out/$shape.bench.json" 2>>"$out/one_timer.log"
  echo "bench $shape exit $?"
done
python3 - "$out" "$@" <<'PY'
import json, sys
out, shapes = sys.argv[1], sys.argv[2:]
print(f"{'shape':<18} {'statuses':<40} {'published':>10} {'bench':>10} {'ratio':>7}  best vs baselines")
for shape in shapes:
    try:
        search = json.load(open(f"{out}/{shape}.search.json"))
        best = json.load(open(f"{out}/{shape}.best.json"))
        rows = {r["label"]: r for r in json.load(open(f"{out}/{shape}.bench.json"))}
    except (OSError, ValueError) as exc:
        print(f"{shape:<18} missing output: {exc}")
        continue
    published = best["shootout_p50_us"] or best["p50_us"]
    bench = rows["best"]["p50_us"]
    ratio = f"{bench / published:.3f}" if bench else "-"
    vs = rows["best"].get("ratio_to_best_baseline")
    statuses = ",".join(f"{k}:{v}" for k, v in sorted(search["status_counts"].items()))
    vs_text = f"{vs:.3f}x" if vs else "-"
    print(f"{shape:<18} {statuses:<40} {published:>10.2f} {bench or 0:>10.2f} {ratio:>7}  {vs_text}")
PY
