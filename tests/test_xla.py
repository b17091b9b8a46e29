"""Every backbone trains under XLA on TensorFlow (`jit_compile=True`) exactly as in graph mode:
one SGD step changes the weights identically. NAFNet runs in the default suite
(test_training.py, test_nafnet.py); these compile for 5-15 s each, so they are `slow`."""

import keras
import numpy as np
import pytest
from helpers import TINY

import keras_mhdeblur


@pytest.mark.slow
@pytest.mark.parametrize("name", ["HINetMH", "MPRNetMH", "RestormerMH"])
def test_xla_step_equals_graph_step(name):
    rng = np.random.default_rng(0)
    blurry = rng.uniform(0.2, 0.8, (2, 32, 32, 3)).astype("float32")
    sharp = np.clip(blurry + rng.normal(0, 0.05, blurry.shape), 0, 1).astype("float32")
    changes, losses = [], []
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        model = getattr(keras_mhdeblur, name)(heads=2, **TINY[name])
        model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit)
        start = model.get_weights()
        losses.append(model.train_on_batch(blurry, sharp, return_dict=True)["loss"])
        changes.append([after - before for after, before in zip(model.get_weights(), start)])
    scale = max(np.abs(change).max() for change in changes[0])
    assert scale > 1e-4
    assert abs(losses[0] - losses[1]) <= 1e-5 * abs(losses[0])
    for graph, xla in zip(*changes):
        np.testing.assert_allclose(xla, graph, atol=1e-5 * scale)
