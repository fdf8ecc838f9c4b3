#!/usr/bin/env bash
# Issue 8 benchmark on a host with several GPUs: trials/min of `evotune search --gpus all`
# against one GPU, with a cold Triton cache (compilation included) and with a warm one (the
# same configs already compiled, so the GPUs are what limits). Usage (repo root, wheels for
# missing packages in .whl/):
#   bash tests/gpu/scale.sh OUTDIR [SHAPE...]
# SEARCH_ARGS (environment) adds options to every `evotune search`, e.g. "--pipeline-depth 0"
# or "--strategy random" (its configs do not depend on the measurements, so the warm runs
# meet exactly the configs the cold runs compiled); TAG prefixes the file names. Without
# SEARCH_ARGS each run takes the defaults: synchronous on one GPU, asynchronous on several.
set -uo pipefail
out=${1:?output folder}
shift
shapes=("${@:-mission}")
source tests/gpu/host_env.sh || exit 1
nvidia-smi --query-gpu=index,name,driver_version,clocks.sm --format=csv,noheader
date -u

run() {  # label shape gpus cache-dir budget
  local label=${TAG:-}$1 shape=$2 gpus=$3 cache=$4 budget=$5
  TRITON_CACHE_DIR=$cache EVOTUNE_DB="sqlite:////tmp/$label.db" \
    python3 -m evotune search --shape "$shape" --gpus "$gpus" --budget "$budget" --fresh --json \
    ${SEARCH_ARGS:-} >"$out/$label.json" 2>"$out/$label.log" || echo "$label: exit $?"
}

for shape in "${shapes[@]}"; do
  budget=200
  # Cold: each run compiles into a cache of its own.
  cache=/tmp/tc-${TAG:-}$shape
  run "$shape-cold-1" "$shape" 0 "$cache-cold-1" $budget
  run "$shape-cold-all" "$shape" all "$cache-cold-all" $budget
  # Warm: the cold runs' caches again (same seed, so mostly the same configs).
  run "$shape-warm-1" "$shape" 0 "$cache-cold-1" $budget
  run "$shape-warm-all" "$shape" all "$cache-cold-all" $budget
done

python3 - "$out" "${TAG:-}" "${shapes[@]}" <<'PY'
import json, sys
out, tag, shapes = sys.argv[1], sys.argv[2], sys.argv[3:]
print(f"{'shape':<12}{'cache':<6}{'1 GPU /min':>12}{'all /min':>10}{'ratio':>7}{'busy 1':>8}{'busy all':>9}{'best 1 us':>11}{'best all us':>12}{'trials':>8}{'wall s':>12}")
for shape in shapes:
    for cache in ("cold", "warm"):
        try:
            one = json.load(open(f"{out}/{tag}{shape}-{cache}-1.json"))
            every = json.load(open(f"{out}/{tag}{shape}-{cache}-all.json"))
        except (OSError, ValueError) as exc:
            print(f"{shape:<12}{cache:<6} missing: {exc}")
            continue
        ratio = every["trials_per_min"] / one["trials_per_min"]
        print(f"{shape:<12}{cache:<6}{one['trials_per_min']:>12.0f}{every['trials_per_min']:>10.0f}{ratio:>7.2f}"
              f"{one['worker_busy_share']:>8.2f}{every['worker_busy_share']:>9.2f}"
              f"{one['best_p50_us']:>11.2f}{every['best_p50_us']:>12.2f}"
              f"{one['trials_run']:>4}/{every['trials_run']:<3}{one['wall_s']:>6.1f}/{every['wall_s']:<5.1f}")
PY
