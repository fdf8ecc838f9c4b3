#!/usr/bin/env bash
# GEMM on a GPU host: the GPU tests of the matmul plug-in, a short search of each named shape,
# then the published best configs against torch.matmul (cuBLAS), same process, same timer.
# Usage (repo root, wheels for missing packages in .whl/):
#   bash tests/gpu/matmul_bench.sh OUTDIR [SHAPE...]      (default: square decode kv-proj odd)
# Env: MATMUL_BUDGET (trials a shape, default 30), MATMUL_SECONDS (search time limit a shape,
# default 40), MATMUL_PYTEST=0 skips the tests. About 5-6 minutes on one H200.
# Writes OUTDIR/pytest.log, OUTDIR/search_SHAPE.{json,log}, OUTDIR/best_SHAPE.json,
# OUTDIR/matmul.db (every trial), OUTDIR/bench_SHAPE.json, OUTDIR/table.txt; prints the table last.
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

echo "== 3. evotune bench --best: the default and the published best against cuBLAS (the search's timer)"
for shape in "${shapes[@]}"; do
  python3 -m evotune bench --kernel matmul --shape "$shape" --best --json >"$out/bench_$shape.json" 2>>"$out/search_$shape.log"
done
python3 - "$out" "${shapes[@]}" <<'PY' | tee "$out/table.txt"
import json, sys
out, shapes = sys.argv[1], sys.argv[2:]
print(f"{'shape':14} {'row':8} {'p50 us':>9} {'TFLOPS':>7} {'vs cuBLAS':>9} {'max err':>9}  note")
for shape in shapes:
    try:
        rows = json.load(open(f"{out}/bench_{shape}.json"))
    except (OSError, ValueError) as exc:
        print(f"{shape:14} no bench output ({exc})")
        continue
    for r in rows:
        p50 = f"{r['p50_us']:9.1f}" if r["p50_us"] else f"{'-':>9}"
        tf = f"{r['tflops']:7.1f}" if r["tflops"] else f"{'-':>7}"
        vs = f"{r['ratio_to_best_baseline']:.3f}x" if r["ratio_to_best_baseline"] else "-"
        err = f"{r['max_error']:.2e}" if r["max_error"] is not None else "-"
        print(f"{shape:14} {r['label']:8} {p50} {tf} {vs:>9} {err:>9}  {r['error'] or ''}")
PY
echo "total $(( $(date +%s) - start )) s"
