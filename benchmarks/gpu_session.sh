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
# then the device tool: command "bash benchmarks/gpu_session.sh", carry [".whl"],
# timeout_s 570 (the variants below stop by 540 s in all).
#
# SMOKE=1 runs the same steps with a width-8 model on 32x32 crops (a dry run on the CPU).
set -u
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
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
variant() {  # seconds, config, precision, overrides (JSON body)
  timeout "$1" python3 benchmarks/train_step.py "${shape[@]}" --config "$2" --precision "$3" \
    --override "{${small}$4}" --json "$OUT/rows.jsonl" 2>>"$OUT/errors.txt" \
    | grep "^nafnet" | tee -a "$OUT/log.txt"
  local status=${PIPESTATUS[0]}
  if [ "$status" = 124 ]; then
    echo "$2 $3 {$4}: did not finish in $1 s" | tee -a "$OUT/log.txt"
  elif [ "$status" != 0 ]; then
    echo "$2 $3 {$4}: failed (exit $status, see errors.txt)" | tee -a "$OUT/log.txt"
  fi
}
echo "variant rows (config precision backend jit img/s first-step-s peak-GiB override):"
variant 150 nafnet-w32 float32 '"scan_blocks": false'
variant 150 nafnet-w32 mixed_bfloat16 '"scan_blocks": false'
variant 100 nafnet-w32 mixed_bfloat16 '"scan_blocks": true'
variant 140 nafnet-w64 mixed_bfloat16 '"scan_blocks": false'
echo "rows: $OUT/rows.jsonl"
