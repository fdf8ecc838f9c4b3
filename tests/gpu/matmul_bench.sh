#!/usr/bin/env bash
# GEMM on a GPU host: the GPU tests of the matmul plug-in, a short search of each named shape,
# then the published best configs against torch.matmul (cuBLAS), same process, same timer.
# Usage (repo root, wheels for missing packages in .whl/):
#   bash tests/gpu/matmul_bench.sh OUTDIR [SHAPE...]      (default: square decode kv-proj odd)
# Env: MATMUL_BUDGET (trials a shape, default 30), MATMUL_SECONDS (search time limit a shape,
# default 40), MATMUL_PYTEST=0 skips the tests. About 5-6 minutes on one H200.
# Writes OUTDIR/pytest.log, OUTDIR/search_SHAPE.{json,log}, OUTDIR/best_SHAPE.json,
# OUTDIR/matmul.db (every trial), OUTDIR/table.{txt,json}; prints the table last.
set -uo pipefail
out=${1:?output folder}
shift
shapes=("$@")
[ ${#shapes[@]} -gt 0 ] || shapes=(square decode kv-proj odd)
budget=${MATMUL_BUDGET:-30} seconds=${MATMUL_SECONDS:-40}
mkdir -p "$out"
source tests/gpu/host_env.sh || exit 1
export EVOTUNE_DB="sqlite:///$out/matmul.db"
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
date -u
start=$(date +%s)

if [ "${MATMUL_PYTEST:-1}" != 0 ]; then
  echo "== 1. GPU tests (compiled ahead in parallel first)"
  python3 tests/gpu/matmul_bench.py warm 2>&1 | tee "$out/warm.log" | tail -5
  python3 -m pytest -m gpu tests/kernels/test_matmul.py -q -p no:cacheprovider >"$out/pytest.log" 2>&1
  echo "pytest exit $? ($(tail -1 "$out/pytest.log")) after $(( $(date +%s) - start )) s"
  grep -E "^(FAILED|ERROR)" "$out/pytest.log" | head -20
fi

echo "== 2. search: ${shapes[*]} (budget $budget, time limit $seconds s each)"
for shape in "${shapes[@]}"; do
  t0=$(date +%s)
  python3 -m evotune search --kernel matmul --shape "$shape" --budget "$budget" \
    --time-limit "$seconds" --json >"$out/search_$shape.json" 2>"$out/search_$shape.log"
  rc=$?
  python3 - "$out/search_$shape.json" "$shape" "$rc" "$(( $(date +%s) - t0 ))" <<'PY'
import json, sys
path, shape, rc, wall = sys.argv[1:]
try:
    s = json.load(open(path))
except Exception as exc:
    print(f"{shape}: search exit {rc}, no summary ({exc})")
    raise SystemExit(0)
print(f"{shape}: exit {rc} in {wall} s, trials {s.get('trials_run')}, {s.get('status_counts')}, "
      f"best p50 {s.get('best_p50_us')} us, {s.get('speedup_over_default')}x over default")
PY
  python3 -m evotune best --kernel matmul --shape "$shape" --json >"$out/best_$shape.json" 2>>"$out/search_$shape.log"
done

echo "== 3. best configs against cuBLAS (time_cuda: L2 flushed, CUDA events, median)"
python3 tests/gpu/matmul_bench.py table "$out" "${shapes[@]}" 2>"$out/table.log" || tail -20 "$out/table.log"
echo "total $(( $(date +%s) - start )) s"
