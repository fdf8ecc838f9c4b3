#!/usr/bin/env bash
# Launch cost and CUDA graphs (issue 26, items 1-2): `evotune bench --json` at small, mission and
# stage1, each with its tuned config (docs/results/h200.md: the default config at small and
# mission, `g3` at stage1) beside the default, against the SDPA backends. Per row: GPU µs (one
# call, L2 flushed), wall µs/call (100 back-to-back calls, one synchronize), host µs/call (their
# enqueue time), graph µs/call (the call captured in a CUDA graph and replayed). Target: a tuned
# config's host µs/call <= 15. First, tests/gpu/launch_breakdown.py: where a call's host time goes.
# Usage (repo root, wheels for missing packages in .whl/): bash tests/gpu/launch_cost.sh OUTDIR
# Writes OUTDIR/<shape>.bench.json, OUTDIR/breakdown.txt and OUTDIR/launch_cost.log; prints a
# table last.
set -uo pipefail
out=${1:?output folder}
mkdir -p "$out"
source tests/gpu/host_env.sh || exit 1
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
date -u
python3 tests/gpu/launch_breakdown.py 2>>"$out/launch_cost.log" | tee "$out/breakdown.txt"
g3='{"impl":"gluon","PRODUCER_WARPS":1,"TILE_ORDER":1,"CTA_MULT":1,"PRODUCER_REGS":24,"CONSUMER_WGS":3,"BLOCK_M":192,"BLOCK_N":128,"KV_STAGES":3}'
for shape in small mission stage1; do
  config=()
  [[ $shape == stage1 ]] && config=(--config "$g3")
  python3 -m evotune bench --shape "$shape" "${config[@]}" --json >"$out/$shape.bench.json" 2>>"$out/launch_cost.log"
  echo "bench $shape exit $?"
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
tuned = {"small": "default", "mission": "default", "stage1": "given"}

def us(value):
    return f"{value:.1f}" if value else "-"

print(f"{'shape':<8} {'row':<16} {'GPU µs':>8} {'wall µs/call':>13} {'host µs/call':>13} {'graph µs/call':>14}  note")
for shape, label in tuned.items():
    try:
        rows = json.load(open(f"{out}/{shape}.bench.json"))
    except (OSError, ValueError) as exc:
        print(f"{shape:<8} missing output: {exc}")
        continue
    for row in rows:
        name = row["label"] + (" (tuned)" if row["label"] == label else "")
        note = row["error"] or row["graph_error"] or ""
        if row["label"] == label and row["host_us_per_call"]:
            note = ("meets" if row["host_us_per_call"] <= 15 else "misses") + " host <= 15 µs " + note
        print(
            f"{shape:<8} {name:<16} {us(row['p50_us']):>8} {us(row['wall_us_per_call']):>13} "
            f"{us(row['host_us_per_call']):>13} {us(row['graph_us_per_call']):>14}  {note[:70]}"
        )
PY
