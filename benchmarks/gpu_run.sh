#!/usr/bin/env bash
# The GPU checks in one go (about 7 minutes on one H100): the GPU-only tests, the kernel
# benchmark, the extraction benchmark (ours / naive / encoder limit for RN50, ViT-B-32,
# ViT-B-16 and RN50x64 at 448 px, snippet 3; --local dense for the ViTs, with its ratio to
# snippet 3), the limit with a compiled tower for ViT-B-32,
# and the stage profile. Every step has its own time limit; logs and a
# results CSV land in $OUT as the steps finish.
#
#   OUT=benchmarks/results/gpu bash benchmarks/gpu_run.sh          # in the repository root
#   QUICK=1 OUT=/tmp/gpu bash benchmarks/gpu_run.sh                # tiny models: checks the script itself
#
# Works in the project's .venv, or with a system python3 holding torch (then wheels found
# in .whl/ are installed to /tmp/site and the repository is assembled as the cdul package).
set -u
OUT="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT"
export CDUL_BENCH_CSV="$OUT/results.csv"
. benchmarks/gpu_env.sh
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } > "$OUT/env.txt"
cat "$OUT/env.txt"

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - t0))" | tee -a "$OUT/steps.txt"
  tail -n 25 "$OUT/$name.log"
}

Q=${QUICK:-0}
if [ "$Q" = 1 ]; then
  M=cdul-tiny-vit,cdul-tiny-rn; MC=cdul-tiny-vit; N=24; NV=4; PM=cdul-tiny-vit; QK=--quick
else
  M=RN50x64,RN50,ViT-B-32,ViT-B-16; MC=ViT-B-32; N=512; NV=32; PM=ViT-B-32; QK=--quick  # the paper's model first
fi
# the view kernel's tests first: the scorer's 39 cases compile many variants and can use the whole limit
step gpu_tests 90 env TRITON_INTERPRET=0 $PY -m pytest tests/test_kernel_resample.py tests/test_extract_views.py \
  tests/test_kernel_scoring.py -q -x -p no:cacheprovider -m gpu
step kernel_bench 30 $PY -m cdul.benchmarks.kernel_bench $QK
step extract_bench 250 $PY -m cdul.benchmarks.extract_bench --models "$M" --tilings 3,dense --images "$N" \
  --naive-images "$NV"
step extract_compiled 60 $PY -m cdul.benchmarks.extract_bench --models "$MC" --tilings 3 --images "$N" \
  --naive-images 4 --compile default
step profile 40 $PY -m cdul.benchmarks.profile_extract --model "$PM" --images "$N"
