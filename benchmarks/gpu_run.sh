#!/usr/bin/env bash
# The GPU checks in one go, within a time budget (BUDGET seconds, 470 by default: under 8
# minutes, so the whole script fits one 10-minute command with the machine's start-up).
# Steps run in order of importance, each under its own limit and never past the budget (a
# step the budget cannot hold is listed as skipped): the GPU-only tests of the encoder, the
# view kernel, dense mode and --decode gpu; the extraction benchmark (ours / naive / tower
# limit for RN50x64 at 448 px, RN50, ViT-B-32 and ViT-B-16, snippet 3, and --local dense
# with its ratio to snippet 3; towers eager, from a CUDA graph, with cuDNN's timed
# algorithms and with half-precision weights, each with its FLOP rate and share of the fp16
# peak); cdul-train against a bare loop; dense mode's last block fused against written-out
# attention; ViT-B-32's tower in every mode, compiled ones included; JPEG decoding on the
# CPU and with nvjpeg (alone, and in ours with --decode gpu); the device timeline of
# ViT-B-16 dense; the bottleneck breakdown and the timelines of ViT-B-32 and RN50 last.
# Logs and a results CSV land in $OUT as the steps
# finish. Further checks, one at a time: tests/test_kernel_scoring.py -m gpu, kernel_bench,
# profile_extract, gpu_bottleneck.sh (the breakdown under py-spy).
#
#   OUT=benchmarks/results/gpu bash benchmarks/gpu_run.sh          # in the repository root
#   QUICK=1 OUT=/tmp/gpu bash benchmarks/gpu_run.sh                # tiny models: checks the script itself
#
# Works in the project's .venv, or with a system python3 holding torch (benchmarks/gpu_env.sh).
set -u
OUT="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT"
export CDUL_BENCH_CSV="$OUT/results.csv"
. benchmarks/gpu_env.sh
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } > "$OUT/env.txt"
cat "$OUT/env.txt"
END=$((SECONDS + ${BUDGET:-470}))

step() {  # step NAME SECONDS COMMAND...: at most SECONDS, and never past the budget
  local name=$1 limit=$2; shift 2
  local left=$((END - SECONDS))
  if [ "$left" -lt 15 ]; then
    echo "$name skipped (budget: ${left}s left)" | tee -a "$OUT/steps.txt"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - t0))" | tee -a "$OUT/steps.txt"
  tail -n 25 "$OUT/$name.log"
}

Q=${QUICK:-0}
if [ "$Q" = 1 ]; then
  M=cdul-tiny-vit,cdul-tiny-rn; N=24; NV=4; PM=cdul-tiny-vit; TM=cdul-tiny-vit; DM=cdul-tiny-vit; SEC=0
  TB="--quick --images 256"; DA="--quick"
else
  M=RN50x64,RN50,ViT-B-32,ViT-B-16; N=512; NV=32; PM=ViT-B-32; TM=ViT-B-32,RN50; DM=ViT-B-16; SEC=4  # the paper's model first
  TB="--images 2048"; DA="--batch 32"
fi
# the encoder's graph tests and the view kernel's first: the scorer's 39 cases compile many
# variants and can use the whole limit (its GPU tests: tests/test_kernel_scoring.py -m gpu)
step gpu_tests 60 env TRITON_INTERPRET=0 $PY -m pytest tests/test_encoder.py tests/test_kernel_resample.py \
  tests/test_extract_views.py tests/test_dense.py tests/test_gpu_decode.py -q -p no:cacheprovider -m gpu
# ours on at least $SEC s of encoder work at the limit; limits eager, CUDA graph, CUDA graph
# with cuDNN's timed algorithms (ResNets) and with half-precision weights (each with its FLOP
# rate and share of the fp16 peak)
step extract_bench 240 $PY -m cdul.benchmarks.extract_bench --models "$M" --tilings 3,dense --images "$N" \
  --naive-images "$NV" --seconds "$SEC" --modes none,cuda-graph,cudnn-benchmark,half-weights
# cdul-train's loop against a bare PyTorch loop (same model, images, batch, optimiser): the ratio
step train_bench 60 $PY -m cdul.benchmarks.train_bench $TB
# dense mode's last block: one fused attention per term against the weights written out
step dense_attn 20 $PY -m cdul.benchmarks.dense_attn_bench $DA
# the tower in every mode (compiled, compiled with CUDA graphs) for one model; ours runs the
# fastest; its tower-best row is what options.AUTO_COMPILE should say for this card
step extract_compiled 100 $PY -m cdul.benchmarks.extract_bench --models "$PM" --tilings 3 --images "$N" \
  --naive-images 4 --seconds "$SEC"
# JPEG decoding: the CPU workers' rate, and nvjpeg's rate and distance to PIL's pixels
step decode_bench 20 $PY -m cdul.benchmarks.decode_bench --images 512
# ours with --decode gpu (nvjpeg in the pipeline) beside ours, one model, snippet 3
step extract_decode_gpu 45 $PY -m cdul.benchmarks.extract_bench --models "$PM" --tilings 3 --images "$N" \
  --naive-images 4 --seconds 0 --modes cuda-graph --decode pil,gpu
# where the device's time goes in dense mode
step timeline_dense 45 $PY -m cdul.benchmarks.timeline --models "$DM" --local dense --images $((N * 8)) --settings now
# the breakdown: loader alone, encoder alone and under the loader's load, ours, per mode
step bottleneck 60 $PY -m cdul.benchmarks.bottleneck --model "$PM" --images $((N * 4))
# where the device's time goes in ours, and where it waits; the pipeline now and as it was
step timeline 90 $PY -m cdul.benchmarks.timeline --models "$TM" --images $((N * 4)) --settings now,before
