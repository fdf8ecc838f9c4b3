#!/usr/bin/env bash
# Tune named shapes briefly on every GPU of the host, then bench each stored best against
# torch SDPA (issue 3's table). Shapes already tuned in DB are benched without a search when
# given with a leading '=' (e.g. =llama-d128).
# Usage (repo root, wheels for missing packages in .whl/): bash tests/gpu/tune_and_bench.sh OUTDIR DB BUDGET SECONDS SHAPE...
# Writes OUTDIR/searches.jsonl (one search summary a line), OUTDIR/bench.txt, OUTDIR/tune.log.
set -uo pipefail
out=${1:?output folder} db=${2:?database} budget=${3:?trials} seconds=${4:?seconds}
shift 4
source tests/gpu/host_env.sh || exit 1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for shape in "$@"; do
  if [[ $shape == =* ]]; then
    shape=${shape#=}
  else
    python3 -m evotune search --db "$db" --shape "$shape" --budget "$budget" \
      --time-limit "$seconds" --gpus all --json 2>>"$out/tune.log" |
      python3 -c "import json, sys; print(json.dumps(json.load(sys.stdin)))" >>"$out/searches.jsonl"
    echo "search $shape exit ${PIPESTATUS[0]}" | tee -a "$out/tune.log"
  fi
  python3 -m evotune bench --db "$db" --shape "$shape" --best 2>>"$out/tune.log" | tee -a "$out/bench.txt"
done
