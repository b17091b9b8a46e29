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


# ---- winner assignment options (annealed, relaxed) -------------------------------------------
def _errors(y_true, y_pred):
    return MinOverHeads("psnr").per_output_error(y_true, y_pred)


def _assert_gradient_weighs_each_error(loss_fn, weights, y_true, y_pred):
    """The loss's gradient is the batch mean of sum_k weights[n, k] * grad e_nk, the weights
    held constant. Returns the gradient."""
    variable = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        loss = loss_fn(y_true, variable)
    gradient = tape.gradient(loss, variable).numpy()
    with tf.GradientTape() as tape:
        errors = _errors(y_true, variable)
    per_output = tape.jacobian(errors, variable).numpy()  # (B, K, B, K, H, W, C)
    expected = np.einsum("bk,bkncxyz->ncxyz", weights / len(y_true), per_output)
    np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-7)
    return gradient


def test_annealed_loss_at_temperature_zero_equals_hard_winner_takes_all():
    y_true, y_pred = _batch()
    hard = float(MinOverHeads("psnr")(y_true, y_pred))
    annealed = MinOverHeads("psnr", temperature=3.0, anneal_steps=100)
    # T falls linearly: 3 at step 0, 1.5 at 50, 0 from step 100 on
    np.testing.assert_allclose(float(annealed.temperature_at(50)), 1.5, rtol=1e-6)
    for step in (100, 250):
        np.testing.assert_allclose(float(annealed(y_true, y_pred, step=step)), hard, rtol=1e-6)
    # a vanishing temperature is the hard minimum too (no overflow on the way)
    tiny = MinOverHeads("psnr", temperature=1e-6)
    np.testing.assert_allclose(float(tiny(y_true, y_pred)), hard, rtol=1e-5)


def test_annealed_loss_of_a_single_output_is_its_error_without_a_softmax_warning():
    import warnings

    y_true, y_pred = _batch(outputs=1)
    annealed = MinOverHeads("psnr", temperature=2.0, anneal_steps=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras warns of a softmax over an axis of size 1
        loss = float(annealed(y_true, y_pred, step=10))
    np.testing.assert_allclose(loss, float(MinOverHeads("psnr")(y_true, y_pred)), rtol=1e-6)


def test_annealed_weights_are_the_soft_min_and_stop_in_the_gradient():
    y_true, y_pred = _batch()
    errors = keras.ops.convert_to_numpy(_errors(y_true, y_pred))
    temperature = 2.0
    soft = np.exp(-errors / temperature)
    soft /= soft.sum(axis=1, keepdims=True)
    loss_fn = MinOverHeads("psnr", temperature=temperature)
    np.testing.assert_allclose(float(loss_fn(y_true, y_pred)), (soft * errors).sum(1).mean(),
                               rtol=1e-5)
    # the gradient is that of sum_k q_k e_k with q held constant: every output gets q_k of it
    gradient = _assert_gradient_weighs_each_error(loss_fn, soft, y_true, y_pred)
    assert (np.abs(gradient).sum(axis=(2, 3, 4)) > 0).all()  # every output is trained


def test_relaxed_weights_sum_to_one_with_eps_shared_by_the_losers():
    y_true, y_pred = _batch(outputs=5)
    loss_fn = MinOverHeads("psnr", relaxation=0.2)
    errors = _errors(y_true, y_pred)
    weights = keras.ops.convert_to_numpy(loss_fn.output_weights(errors))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    winners = keras.ops.convert_to_numpy(errors).argmin(axis=1)
    for n, winner in enumerate(winners):
        np.testing.assert_allclose(weights[n, winner], 0.8, rtol=1e-6)
        np.testing.assert_allclose(np.delete(weights[n], winner), 0.05, rtol=1e-6)
    errors = keras.ops.convert_to_numpy(errors)
    np.testing.assert_allclose(float(loss_fn(y_true, y_pred)), (weights * errors).sum(1).mean(),
                               rtol=1e-5)
    _assert_gradient_weighs_each_error(loss_fn, weights, y_true, y_pred)


def test_assignment_options_validate_and_serialize():
    with pytest.raises(ValueError, match="not both"):
        MinOverHeads(temperature=1.0, relaxation=0.1)
    with pytest.raises(ValueError, match="relaxation"):
        MinOverHeads(relaxation=1.0)
    with pytest.raises(ValueError, match="anneal_steps"):
        MinOverHeads(anneal_steps=10)
    with pytest.raises(ValueError, match="optimiser step"):
        y_true, y_pred = _batch()
        MinOverHeads(temperature=1.0, anneal_steps=10)(y_true, y_pred)
    loss = MinOverHeads("l1", weight=0.5, temperature=2.0, anneal_steps=300)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert (restored.temperature, restored.anneal_steps, restored.relaxation) == (2.0, 300, 0.0)
    assert restored.step_dependent and not restored.is_official
    assert MinOverHeads().is_official and not MinOverHeads().step_dependent


@pytest.mark.parametrize("assignment", [{}, {"relaxation": 0.2}, {"temperature": 2.0}])
def test_an_anchor_trains_output_0_on_every_sample_on_top_of_the_assignment(assignment):
    y_true, y_pred = _batch(outputs=5)
    errors = _errors(y_true, y_pred)
    assert (keras.ops.convert_to_numpy(errors).argmin(axis=1) != 0).any()  # 0 loses somewhere
    assigned = MinOverHeads("psnr", weight=0.5, **assignment)
    anchored = MinOverHeads("psnr", weight=0.5, anchor=0.7, **assignment)
    if assigned.is_official:
        weights = keras.ops.convert_to_numpy(keras.ops.one_hot(keras.ops.argmin(errors, 1), 5))
    else:
        weights = keras.ops.convert_to_numpy(assigned.output_weights(errors))
    weights[:, 0] += 0.7
    output_0 = keras.ops.convert_to_numpy(errors)[:, 0]
    np.testing.assert_allclose(float(anchored(y_true, y_pred)),
                               float(assigned(y_true, y_pred)) + 0.5 * 0.7 * output_0.mean(),
                               rtol=1e-5)
    gradient = _assert_gradient_weighs_each_error(anchored, 0.5 * weights, y_true, y_pred)
    assert (np.abs(gradient[:, 0]).sum(axis=(1, 2, 3)) > 0).all()  # output 0 learns from all
    assert not anchored.is_official
    restored = keras.losses.deserialize(keras.losses.serialize(anchored))
    assert restored.anchor == 0.7 and restored.weight == 0.5
    with pytest.raises(ValueError, match="anchor must be >= 0"):
        MinOverHeads(anchor=-1.0)


@pytest.mark.parametrize("base, weight", [("psnr", 0.5), ("l1", 1.0), ("mprnet", 1.0)])
def test_with_assignment_keeps_each_backbones_base_and_weight(base, weight):
    from keras_mhdeblur.losses import with_assignment

    official = MinOverHeads(base, weight=weight)
    relaxed = with_assignment(official, relaxation=0.3)
    assert (relaxed.base, relaxed.weight, relaxed.relaxation) == (base, weight, 0.3)
    y_true, y_pred = _batch()
    errors = keras.ops.convert_to_numpy(official.per_output_error(y_true, y_pred))
    winner = errors.min(axis=1)
    losers = (errors.sum(axis=1) - winner) / (errors.shape[1] - 1)
    np.testing.assert_allclose(float(relaxed(y_true, y_pred)),
                               weight * (0.7 * winner + 0.3 * losers).mean(), rtol=1e-5)
