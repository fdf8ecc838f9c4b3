#!/usr/bin/env bash
# GPU host end to end: the mission search, the bench against SDPA, and a recorded landscape
# of the triton sub-space. Usage (repo root, wheels for missing packages in .whl/):
#   bash tests/gpu/e2e.sh OUTDIR [LANDSCAPE_SECONDS]
set -uo pipefail
out=${1:?output folder}
landscape_s=${2:-200}
source tests/gpu/host_env.sh || exit 1
export EVOTUNE_DB="sqlite:///$out/evotune.db"
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
date -u

echo "== 1. evotune search --shape mission (default budget)"
start=$(date +%s)
python3 -m evotune search --shape mission --json >"$out/mission_search.json" 2>"$out/mission_search.log"
echo "exit $? in $(( $(date +%s) - start )) s"
python3 - "$out/mission_search.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
keys = ("study_id", "total_trials", "trials_run", "status_counts", "best_p50_us", "best_shootout_p50_us",
        "best_tflops", "default_p50_us", "speedup_over_default", "trials_per_min", "worker_busy_share", "wall_s")
for k in keys:
    print(f"{k:>22}: {s.get(k)}")
print(f"{'best_config':>22}: {json.dumps(s.get('best_config'))}")
PY
python3 -m evotune best --shape mission --json >"$out/best.json" && echo "best --json ok"
python3 -m evotune search --shape mission --json >"$out/mission_rerun.json" 2>/dev/null
python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print('rerun: resumed', s['resumed'], 'trials_run', s['trials_run'])" "$out/mission_rerun.json"

echo "== 2. evotune bench --shape mission --best"
python3 -m evotune bench --shape mission --best 2>&1 | tee "$out/bench_mission.txt"

echo "== 3. landscape: triton sub-space of mission, random order, ${landscape_s}s"
python3 -m evotune search --shape mission --strategy random --restrict "impl == 'triton'" \
  --budget 100000 --time-limit "$landscape_s" --json >"$out/landscape_search.json" 2>"$out/landscape_search.log"
sid=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['study_id'])" "$out/landscape_search.json")
python3 -m evotune landscape export "$sid" "$out/mission-triton.json"
python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print({k: s[k] for k in ('total_trials','status_counts','trials_per_min','best_p50_us')})" "$out/landscape_search.json"
