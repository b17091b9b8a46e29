"""Training through plain Keras: compile defaults, fit on TF (graph and XLA) and JAX, and the
method's point: heads split an ambiguous target."""

import keras
import numpy as np
import pytest

import keras_mhdeblur
from helpers import TINY_NAFNET_ONE_LEVEL, blurred_pairs, run_python

TINY = TINY_NAFNET_ONE_LEVEL


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_lowers_the_default_loss_on_tensorflow(jit_compile):
    keras.utils.set_random_seed(0)
    model = keras_mhdeblur.NAFNetMH(heads=2, **TINY)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), jit_compile=jit_compile)
    blurry, sharp = blurred_pairs()
    history = model.fit(blurry, sharp, batch_size=4, epochs=12, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] - 0.5
    assert set(history) >= {"psnr_best", "psnr_0", "psnr_2", "win_0", "win_2"}
    shares = [history[f"win_{k}"][-1] for k in range(3)]
    np.testing.assert_allclose(sum(shares), 1.0, atol=1e-5)


def test_fit_on_jax():
    out = run_python("""
        import keras, numpy as np, keras_mhdeblur
        assert keras.backend.backend() == "jax"
        keras.utils.set_random_seed(0)
        model = keras_mhdeblur.NAFNetMH(heads=2, width=8, enc_blocks=(1,), dec_blocks=(1,))
        model.compile(optimizer=keras.optimizers.Adam(2e-3))
        rng = np.random.default_rng(0)
        sharp = rng.uniform(0.2, 0.8, size=(8, 16, 16, 3)).astype("float32")
        blurry = (sharp + np.roll(sharp, 1, axis=2)) / 2
        losses = model.fit(blurry, sharp, batch_size=4, epochs=12, verbose=0).history["loss"]
        print(losses[0], losses[-1])
    """, backend="jax")
    first, last = map(float, out.split())
    assert last < first - 0.5


def test_official_recipe_is_one_call_away():
    optimizer = keras_mhdeblur.official_optimizer("nafnet", total_steps=1000)
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.9, 0.9, 1e-8)
    assert optimizer.weight_decay == 1e-3 and optimizer.global_clipnorm == 0.01
    schedule = keras_mhdeblur.official_schedule("nafnet", total_steps=1000)
    np.testing.assert_allclose(float(schedule(0)), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(500)), (1e-3 + 1e-7) / 2, rtol=1e-4)
    np.testing.assert_allclose(float(schedule(1000)), 1e-7, rtol=1e-4)
    restormer = keras_mhdeblur.official_schedule("restormer", total_steps=3000)
    np.testing.assert_allclose(float(restormer(900)), 3e-4, rtol=1e-6)  # constant phase
    np.testing.assert_allclose(float(restormer(3000)), 1e-6, rtol=1e-3)
    with pytest.raises(ValueError, match="recipe"):
        keras_mhdeblur.official_optimizer("unet")


def test_heads_split_an_ambiguous_target():
    """Target = input + or - 0.15 at random: one head cannot do better than the input (the mean
    answer), two heads under the winner-takes-all loss must learn one answer each."""
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    count, size, shift = 64, 16, 0.15
    inputs = rng.uniform(0.3, 0.7, size=(count, size, size, 3)).astype("float32")
    signs = np.where(rng.uniform(size=count) < 0.5, 1.0, -1.0).astype("float32")
    targets = inputs + shift * signs[:, None, None, None]

    model = keras_mhdeblur.NAFNetMH(heads=2, combine_heads=False, **TINY)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(inputs, targets, batch_size=16, epochs=40, verbose=0)

    residual = np.asarray(model.predict(inputs, verbose=0)) - inputs[:, None]  # (N, 2, H, W, 3)
    head_shift = residual.mean(axis=(0, 2, 3, 4))
    assert sorted(np.round(head_shift, 2).tolist()) == pytest.approx([-shift, shift], abs=0.03)
    errors = np.abs(residual - shift * signs[:, None, None, None, None]).mean(axis=(2, 3, 4))
    winners = errors.argmin(axis=1)
    assert len(set(winners[signs > 0])) == 1 and len(set(winners[signs < 0])) == 1
    assert winners[signs > 0][0] != winners[signs < 0][0]
    # The mean answer is off by `shift` everywhere; a head that learned its answer is well inside
    # a third of that (40 epochs leave this tiny net 0.01-0.03 away, by machine and thread order).
    assert errors.min(axis=1).max() < shift / 3
