"""Mixed precision trains like float32: norms, outputs and the loss stay in float32."""

import keras
import numpy as np
import pytest
from helpers import TINY_NAFNET_ONE_LEVEL, blurred_pairs

import keras_mhdeblur


@pytest.fixture
def policy():
    def set_policy(name):
        keras.config.set_dtype_policy(name)

    yield set_policy
    keras.config.set_dtype_policy("float32")


def _train(epochs=15):
    keras.utils.set_random_seed(0)
    blurry, sharp = blurred_pairs()
    model = keras_mhdeblur.NAFNetMH(heads=2, **TINY_NAFNET_ONE_LEVEL)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    history = model.fit(blurry, sharp, batch_size=4, epochs=epochs, verbose=0).history
    return model, history["loss"], model.predict(blurry, verbose=0)


@pytest.mark.parametrize("name", ["mixed_bfloat16",
                                  pytest.param("mixed_float16", marks=pytest.mark.slow)])
def test_mixed_precision_reaches_the_float32_loss(policy, name):
    policy("float32")
    _, reference, _ = _train()
    policy(name)
    model, losses, outputs = _train()
    assert model.intro.compute_dtype == name.split("_")[1]
    assert outputs.dtype == np.float32  # the multi-head output layer is float32
    if name == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    # The loss is -PSNR in dB: mixed precision ends within 0.5 dB of float32.
    assert losses[-1] < losses[0] - 0.5
    assert abs(losses[-1] - reference[-1]) < 0.5, (losses[-1], reference[-1])
