"""One data-parallel step on two (virtual CPU) devices equals one single-device step on the same
global batch, on TensorFlow (MirroredStrategy) and JAX (keras.distribution.DataParallel)."""

import json

import pytest

from helpers import run_python

STEP = """
import json, numpy as np, keras, keras_mhdeblur
from keras_mhdeblur.distribute import data_parallel

def one_step(devices):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    sharp = rng.uniform(0.2, 0.8, size=(4, 16, 16, 3)).astype("float32")
    blurry = (sharp + np.roll(sharp, 1, axis=2)) / 2
    context = data_parallel(devices) if devices > 1 else __import__("contextlib").nullcontext()
    with context:
        model = keras_mhdeblur.NAFNetMH(heads=2, width=8, enc_blocks=(1,), dec_blocks=(1,))
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        start = [w.copy() for w in model.get_weights()]
        loss = model.fit(blurry, sharp, batch_size=4, epochs=1, shuffle=False,
                         verbose=0).history["loss"][0]
    change = [w - s for w, s in zip(model.get_weights(), start)]
    return loss, change

loss_1, change_1 = one_step(1)
loss_2, change_2 = one_step(2)
scale = max(float(np.abs(c).max()) for c in change_1)
diff = max(float(np.abs(a - b).max()) for a, b in zip(change_1, change_2))
print(json.dumps({"loss_1": loss_1, "loss_2": loss_2, "scale": scale, "diff": diff,
                  "devices": len(keras_mhdeblur.distribute.available_devices())}))
"""

TF_SETUP = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""


@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=pytest.mark.slow)])
def test_data_parallel_step_equals_single_device_step(backend):
    setup = TF_SETUP if backend == "tensorflow" else ""
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"} if backend == "jax" else {}
    out = run_python(setup + STEP, backend=backend, extra_env=env)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["devices"] == 2
    assert result["scale"] > 1e-4  # the step changed the weights
    assert abs(result["loss_1"] - result["loss_2"]) < 1e-4 * abs(result["loss_1"])
    assert result["diff"] < 1e-4 * result["scale"] + 1e-6, result
