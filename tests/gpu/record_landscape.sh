#!/usr/bin/env bash
# Record (part of) a landscape on a GPU host, resumably: every valid config of a sub-space, in
# random order, for at most SECONDS; the database goes out with the landscape so that the next
# call (another session, the same GPU kind) continues where this one stopped.
# Usage (repo root, wheels for missing packages in .whl/):
#   bash tests/gpu/record_landscape.sh OUTDIR SHAPE TAG RESTRICT SECONDS [STATE_DIR]
# STATE_DIR (default .landscapes, git-ignored, carried to the host) holds TAG.db.gz from an
# earlier call. Writes OUTDIR/TAG.json (the landscape so far) and OUTDIR/TAG.db.gz; copy both
# into STATE_DIR for the next call. Join parts with `evotune landscape merge`.
# SEARCH_ARGS (environment) adds options to `evotune search`, e.g. "--pipeline-depth 0
# --compile-workers 14 --population 32": order does not matter to a landscape, so recording
# asynchronously keeps the compilers and the GPU busy. Two shapes can record at once, one per
# GPU (CUDA_VISIBLE_DEVICES), after `source tests/gpu/host_env.sh` has installed the wheels once.
set -uo pipefail
out=${1:?output folder} shape=${2:?shape} tag=${3:?tag} restrict=${4:?restriction}
seconds=${5:?seconds} state=${6:-.landscapes}
source tests/gpu/host_env.sh || exit 1
mkdir -p /tmp/record && db=/tmp/record/$tag.db && rm -f "$db"
if [ -f "$state/$tag.db.gz" ]; then
  gunzip -c "$state/$tag.db.gz" >"$db" && echo "resuming from $state/$tag.db.gz"
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader -i "${CUDA_VISIBLE_DEVICES:-0}"
date -u
python3 -m evotune search --db "sqlite:///$db" --shape "$shape" --strategy random \
  --restrict "$restrict" --budget 1000000 --time-limit "$seconds" --json ${SEARCH_ARGS:-} \
  >"$out/$tag.search.json" 2>"$out/$tag.search.log"
echo "search exit $?"
sid=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['study_id'])" "$out/$tag.search.json") || exit 1
python3 -m evotune landscape export --db "sqlite:///$db" "$sid" "$out/$tag.json"
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.close()" "$db"
gzip -c "$db" >"$out/$tag.db.gz"
python3 - "$out/$tag.search.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for k in ("study_id", "resumed", "trials_run", "total_trials", "status_counts", "trials_per_min", "best_p50_us"):
    print(f"{k:>16}: {s.get(k)}")
PY
