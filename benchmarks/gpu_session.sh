#!/usr/bin/env bash
# The GPU figures of benchmarks/train_step.py in one device call (../shared/docs/GPU.md): JAX
# backend, NAFNetMH K=4 combined, batch 8, 256x256 crops, in order of importance, each variant
# in its own process with its own time limit, rows written to $OUT as they finish.
#
# Once per checkout, here (the GPU machine has no network):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl keras==3.15.1 namex==0.1.0 optree==0.20.0
# and, for the side-by-side rows, a copy of the official step (not tracked, never committed):
#   echo /.official/ >> .git/info/exclude; cp -r ../shared/bench/official-torch .official
# then the device tool: command "bash benchmarks/gpu_session.sh", carry [".whl", ".official"],
# timeout_s 600 for QUICK=1 alone (it stops by 300 s: the official eager step and our width-32
# rows without the autotuner, leaving time for training in the same call); the full set stops by
# 840 s, more than one call: run it in two (QUICK=1, then the rest) or trim it.
#
# SMOKE=1 runs the same steps with a width-8 model on 32x32 crops (a dry run on the CPU).
set -u
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
source benchmarks/gpu_env.sh
(nvidia-smi -L || echo "no nvidia-smi") > "$OUT/card.txt" 2>&1
python3 -c "import jax, keras; print('jax', jax.__version__, 'keras', keras.__version__, \
jax.devices())" > "$OUT/versions.txt" 2>&1
cat "$OUT/card.txt" "$OUT/versions.txt"

shape=(--batch 8 --crop 256 --steps 20)
small=""
if [ "${SMOKE:-0}" = 1 ]; then
  shape=(--batch 2 --crop 32 --steps 2)
  small='"width": 8, '
fi
# Each compile is logged with its time (errors.txt; gpu_env.sh), so a variant cut by its limit still says
# where the time went: on 2026-12-04 no first step finished within 100-160 s, with XLA's
# autotuner warning about its timer (docs/speed.md, "On a GPU").
variant() {  # seconds, config, precision, overrides (JSON body), XLA_FLAGS (optional)
  XLA_FLAGS="${5:-${XLA_FLAGS:-}}" timeout "$1" python3 benchmarks/train_step.py "${shape[@]}" --config "$2" --precision "$3" \
    --override "{${small}$4}" --json "$OUT/rows.jsonl" 2>>"$OUT/errors.txt" \
    | grep "^nafnet" | tee -a "$OUT/log.txt"
  local status=${PIPESTATUS[0]}
  if [ "$status" = 124 ]; then
    echo "$2 $3 {$4}: did not finish in $1 s" | tee -a "$OUT/log.txt"
  elif [ "$status" != 0 ]; then
    echo "$2 $3 {$4}: failed (exit $status, see errors.txt)" | tee -a "$OUT/log.txt"
  fi
}
official() {  # seconds, config (a: width 32, b: width 64), variants
  [ -f .official/bench_torch.py ] || { echo "no .official/bench_torch.py: official rows skipped"; return; }
  local smoke_env=()
  [ "${SMOKE:-0}" = 1 ] && smoke_env=(BENCH_SMOKE=1)
  env "${smoke_env[@]}" timeout "$1" python3 .official/bench_torch.py --config "$2" \
    --variants "$3" --out "$OUT/official.jsonl" > "$OUT/official.log" 2>&1
  [ $? = 124 ] && echo "official $2 $3: did not finish in $1 s" | tee -a "$OUT/log.txt"
}
echo "variant rows (config precision backend jit img/s first-step-s peak-GiB override):"
# Without XLA's autotuner first (its compile was the slow part last time), then with it.
no_autotune=--xla_gpu_autotune_level=0
official 60 a eager_fp32
variant 120 nafnet-w32 mixed_bfloat16 '"scan_blocks": false' "$no_autotune"
variant 120 nafnet-w32 float32 '"scan_blocks": false' "$no_autotune"
if [ "${QUICK:-0}" != 1 ]; then
  variant 150 nafnet-w32 mixed_bfloat16 '"scan_blocks": false'
  official 120 a compile_fp32
  variant 100 nafnet-w32 mixed_bfloat16 '"scan_blocks": true' "$no_autotune"
  official 50 b eager_fp32
  variant 120 nafnet-w64 mixed_bfloat16 '"scan_blocks": false' "$no_autotune"
fi
python3 benchmarks/gpu_table.py "$OUT/rows.jsonl" "$OUT/official.jsonl" | tee "$OUT/table.md"
