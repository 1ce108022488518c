#!/usr/bin/env bash
# Where the GPU pipeline loses time (about 3 minutes): the bottleneck benchmark
# (loader alone, encoder alone and under the loader's load, ours; eager and CUDA graph) for
# ViT-B-32 under py-spy (every thread and decoding process sampled, idle included) and for RN50.
#
#   OUT=benchmarks/results/gpu bash benchmarks/gpu_bottleneck.sh
set -u
OUT="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT"
export CDUL_BENCH_CSV="$OUT/results.csv"
. benchmarks/gpu_env.sh
N=${IMAGES:-2048}
SPY=$(command -v py-spy || ls /tmp/site/bin/py-spy 2>/dev/null)
run() {  # run NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo "== $name"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "$name rc=$? seconds=$((SECONDS - t0))" | tee -a "$OUT/steps.txt"
  tail -n 12 "$OUT/$name.log"
}
M1=${MODEL1:-ViT-B-32}
if [ -n "$SPY" ] && "$SPY" --version >/dev/null 2>&1; then
  run "bottleneck-$M1" 150 "$SPY" record --nonblocking --rate 100 --threads --idle --subprocesses --format raw \
    -o "$OUT/pyspy-$M1.txt" -- $PY -m cdul.benchmarks.bottleneck --model "$M1" --images "$N"
  if [ -s "$OUT/pyspy-$M1.txt" ]; then
    $PY -m cdul.benchmarks.pyspy_summary "$OUT/pyspy-$M1.txt" > "$OUT/pyspy-$M1-summary.txt" 2>&1
    gzip -f "$OUT/pyspy-$M1.txt"
  else
    run "bottleneck-$M1-plain" 120 $PY -m cdul.benchmarks.bottleneck --model "$M1" --images "$N"
  fi
else
  run "bottleneck-$M1" 120 $PY -m cdul.benchmarks.bottleneck --model "$M1" --images "$N"
fi
run bottleneck-RN50 100 $PY -m cdul.benchmarks.bottleneck --model RN50 --images "$N"
