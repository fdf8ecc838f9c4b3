#!/usr/bin/env bash
# `evotune search --ray local` on the GPUs of this host (issue 8): one Ray actor per GPU.
# Ray is not installed on the lent GPU hosts and its wheel is larger than a device call can
# carry: first run `bash tests/gpu/pack_ray.sh` here (writes .whl/ray-slim.tar.xz and the
# wheels Ray needs), then carry .whl.
# Usage (repo root): bash tests/gpu/ray_gpu.sh OUTDIR [SHAPE] [BUDGET]
# Writes OUTDIR/ray-search.json (the search summary) and OUTDIR/ray-search.log.
set -uo pipefail
out=${1:?output folder} shape=${2:-mission} budget=${3:-60}
source tests/gpu/host_env.sh || exit 1
nvidia-smi -L
python3 -c "import ray; print('ray', ray.__version__)" || exit 1
python3 -m evotune search --db sqlite:////tmp/ray.db --shape "$shape" --ray local \
  --budget "$budget" --fresh --json >"$out/ray-search.json" 2>"$out/ray-search.log"
echo "search exit $?"
python3 - "$out/ray-search.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for k in ("study_id", "trials_run", "status_counts", "trials_per_min", "best_p50_us", "best_config"):
    print(f"{k:>16}: {s.get(k)}")
PY
