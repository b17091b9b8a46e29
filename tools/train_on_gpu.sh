#!/usr/bin/env bash
# Trains a preset recipe on the lent GPU machine in one device call (DEVELOPERS.md, "GPU"), then
# packs its best checkpoint as a preset into $OUT/preset, with the run's log, state and metrics.
#
#   bash tools/train_on_gpu.sh RECIPE NAME SECONDS
#
# JAX backend (that machine has no TensorFlow), so batches come from `--pipeline pydataset`
# worker processes. SECONDS caps the training (Ctrl-C at the limit: the last checkpoint stays);
# the recipe's steps should fit inside it, since the learning rate follows them. Wheels: see
# benchmarks/gpu_session.sh (carry ".whl").
# SMOKE=1 trains a width-8 model for 20 steps on 32x32 crops (a dry run on the CPU).
#
# One device call, benchmark first and training in the time left, with what comes back packed
# into few files (at most 8 come back, 16 MiB each; width-32 weights are 9 MB in float16):
#   s=$(date +%s); QUICK=1 bash benchmarks/gpu_session.sh; t=$((450-$(date +%s)+s));
#   bash tools/train_on_gpu.sh presets/nafnet-w32-mh4-gpu.yaml nafnet-w32-mh4 $t; cd $OUT &&
#   (tar cf - preset | split -b 15m - preset.tar.) && tar czf logs.tgz $(ls | grep -v '^preset\|^table')
#   && rm -rf $(ls | grep -v 'preset.tar\|logs.tgz\|table.md')
# (carry .whl and .official, timeout_s 600); here: cat preset.tar.* | tar x.
set -u
if [ $# -ne 3 ]; then
  echo "usage: bash tools/train_on_gpu.sh RECIPE NAME SECONDS" >&2
  exit 2
fi
recipe=$1 name=$2 seconds=$3
OUT=${OUT:-/tmp/gpu_train}
mkdir -p "$OUT"
# XLA's autotuner made the first step take minutes on the lent GPU (docs/speed.md, "On a GPU").
export XLA_FLAGS=${XLA_FLAGS---xla_gpu_autotune_level=0}
source benchmarks/gpu_env.sh

smoke=()
measure=32
if [ "${SMOKE:-0}" = 1 ]; then
  smoke=(--width 8 --steps 20 --batch 2 --crop 32 --val-synthetic 4 --val-every 10
         --checkpoint-every 10 --data-workers 2)
  measure=4
fi
run=${RUN_ROOT:-/tmp/runs}/$name
start=$(date +%s)
# One thread each: the data workers are already one process per core.
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
timeout --signal=INT --kill-after=20 "$seconds" python3 -m keras_mhdeblur train \
  --config "$recipe" --out "$run" --pipeline pydataset "${smoke[@]}" > "$OUT/train.log" 2>&1
status=$?
echo "training: exit $status after $(( $(date +%s) - start )) s (124/130: stopped at the limit)"
grep -E "parameters|validation|best|stopped|finished|error" "$OUT/train.log" | tail -n 15
cp "$run/state.json" "$run/config.json" "$OUT/" 2>/dev/null
cp "$run/logs/metrics.csv" "$OUT/" 2>/dev/null
# The best checkpoint on validation, or, when the time limit came before the first validation,
# the newest checkpoint.
which=()
if [ ! -f "$run/best.keras" ]; then
  newest=$(ls "$run"/checkpoints/step-*.keras 2> /dev/null | tail -n 1)
  [ -n "$newest" ] || { echo "no checkpoint to pack"; exit 1; }
  which=(--model "$newest")
fi
# float16 weights, as the shipped presets have: a width-32 preset takes 9 MB of the package's
# 25 instead of 18 (docs/presets.md, "Weights in float16").
timeout 100 python3 -m keras_mhdeblur make-preset "$run" "$OUT/preset" --name "$name" \
  --measure "$measure" --weights-dtype float16 "${which[@]}" \
  --description "trained on one GPU with $recipe" > "$OUT/make_preset.log" 2>&1 \
  || { echo "make-preset failed:"; tail -n 5 "$OUT/make_preset.log"; exit 1; }
tail -n 12 "$OUT/make_preset.log"
ls -l "$OUT/preset"
