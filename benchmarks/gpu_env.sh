# Sourced by benchmarks/gpu_session.sh and tools/train_on_gpu.sh: the JAX backend, and Keras from
# the carried wheels (.whl) where Python has none (the GPU machine, which has no network).
# Run from the repository root.
# Every compile logged with its time (stderr): where a first step's minutes went.
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 JAX_LOG_COMPILES=1
if ! python3 -c "import keras" 2> /dev/null && compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
if [ -d /tmp/site ]; then
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
