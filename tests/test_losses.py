import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mhdeblur.losses import MinOverHeads, MultiHeadPSNRLoss


def _batch(outputs=4, seed=0):
    rng = np.random.default_rng(seed)
    y_true = rng.uniform(size=(3, 6, 5, 3)).astype("float32")
    # output k of sample n has noise level levels[n, k]: the winner is known
    levels = rng.uniform(0.05, 0.5, size=(3, outputs)).astype("float32")
    noise = rng.normal(size=(3, outputs, 6, 5, 3)).astype("float32")
    y_pred = y_true[:, None] + levels[:, :, None, None, None] * noise
    return y_true, y_pred


def test_psnr_loss_is_official_formula_on_the_best_output():
    y_true, y_pred = _batch()
    mse = ((y_pred - y_true[:, None]) ** 2).mean(axis=(2, 3, 4))
    expected = (10 / math.log(10)) * np.log(mse.min(axis=1) + 1e-8).mean()
    loss = float(MultiHeadPSNRLoss()(y_true, y_pred))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(float(MultiHeadPSNRLoss(weight=0.5)(y_true, y_pred)),
                               0.5 * expected, rtol=1e-5)


@pytest.mark.parametrize("base", ["l1", "charbonnier"])
def test_other_bases_take_min_per_sample(base):
    y_true, y_pred = _batch()
    diff = y_pred - y_true[:, None]
    per_output = (np.abs(diff) if base == "l1" else np.sqrt(diff ** 2 + 1e-6)).mean(axis=(2, 3, 4))
    np.testing.assert_allclose(float(MinOverHeads(base)(y_true, y_pred)),
                               per_output.min(axis=1).mean(), rtol=1e-5)


def test_single_output_prediction_is_plain_loss():
    y_true, y_pred = _batch(outputs=1)
    np.testing.assert_allclose(float(MinOverHeads("l1")(y_true, y_pred[:, 0])),
                               float(MinOverHeads("l1")(y_true, y_pred)), rtol=1e-6)


def test_gradient_reaches_only_the_winner_and_matches_finite_differences():
    y_true, y_pred = _batch()
    loss_fn = MinOverHeads("psnr")
    variable = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        loss = loss_fn(y_true, variable)
    gradient = tape.gradient(loss, variable).numpy()
    mse = ((y_pred - y_true[:, None]) ** 2).mean(axis=(2, 3, 4))
    winners = mse.argmin(axis=1)
    for n in range(3):
        for k in range(4):
            norm = np.abs(gradient[n, k]).sum()
            assert (norm > 0) == (k == winners[n]), (n, k, norm)
    # central finite differences on a few entries of each winner (float64 reference)
    def loss64(pred):
        mse = ((pred - y_true[:, None].astype(np.float64)) ** 2).mean(axis=(2, 3, 4))
        return (10 / math.log(10)) * np.log(mse.min(axis=1) + 1e-8).mean()

    base = y_pred.astype(np.float64)
    for n in range(3):
        index = (n, winners[n], 2, 3, 1)
        step = 1e-4
        plus, minus = base.copy(), base.copy()
        plus[index] += step
        minus[index] -= step
        numeric = (loss64(plus) - loss64(minus)) / (2 * step)
        np.testing.assert_allclose(gradient[index], numeric, rtol=2e-2)


def test_unknown_base_and_bad_shapes_raise():
    with pytest.raises(ValueError, match="Unknown base"):
        MinOverHeads("nope")
    with pytest.raises(ValueError, match="y_pred"):
        MinOverHeads()(np.zeros((2, 4, 4, 3)), np.zeros((2, 4, 3)))


def test_loss_serializes():
    loss = MinOverHeads("l1", weight=0.5)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, MinOverHeads) and restored.base == "l1" and restored.weight == 0.5
