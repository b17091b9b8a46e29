"""NAFNet / MHNAFNet: the common backbone checks, parity with the official code, TLC, the
official parameter counts, saving a trained model, and the scanned block stack."""

import keras
import numpy as np
import pytest
from helpers import (TINY_NAFNET, assert_keras_round_trip, blurred_pairs, fixture_parity_error,
                     load_fixture, random_images, run_backbone_test)

import keras_mhdeblur
from keras_mhdeblur.models import NAFBlockStack


# JAX runs in a fresh process (40-80 s here), so it is in the slow set (pytest -m slow).
@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=pytest.mark.slow)])
def test_backbone(backend, tmp_path):
    run_backbone_test(keras_mhdeblur.NAFNetMH, keras_mhdeblur.NAFNet, TINY_NAFNET, tmp_path,
                      backend=backend)


@pytest.mark.parametrize("name", ["nafnet_single_w8", "nafnet_mh_w8_k4", "nafnet_mh_w8_k4_comb",
                                  "nafnet_mh_tlc_w8"])
def test_reproduces_official_fixture(name):
    errors, _, _ = fixture_parity_error(name)
    assert max(errors.values()) <= 1e-4, errors


def test_tlc_matters_on_the_tlc_fixture():
    """Without TLC the TLC fixture is not matched: the local pooling is really exercised."""
    metadata, state_dict, inputs, expected = load_fixture("nafnet_mh_tlc_w8")
    kwargs = dict(metadata["constructor_kwargs"])
    kwargs.pop("train_size")
    model = keras_mhdeblur.from_official_config("MHNAFNet", **kwargs)
    keras_mhdeblur.load_torch_weights(model, state_dict)
    assert np.abs(np.asarray(model(inputs)) - expected["heads"]).max() > 1e-3


def test_exact_sizes_and_tiny_images():
    """Sizes that are multiples of the padding (no pad) and smaller than it."""
    model = keras_mhdeblur.NAFNetMH(heads=3, combine_heads=True, **TINY_NAFNET)
    for size in [(16, 16), (17, 23), (5, 3)]:
        assert np.asarray(model(random_images((2, *size, 3)))).shape == (2, 6, *size, 3)


def test_blocks_start_as_identity():
    model = keras_mhdeblur.NAFNetMH(heads=4, combine_heads=False, **TINY_NAFNET)
    stacks = [layer for layer in model._flatten_layers() if isinstance(layer, NAFBlockStack)]
    assert stacks and all(not np.any(np.asarray(s.stacked["beta"]))
                          and not np.any(np.asarray(s.stacked["gamma"])) for s in stacks)


def test_a_deepened_network_computes_what_it_grew_from():
    from keras_mhdeblur.models.surgery import deepened

    keras.utils.set_random_seed(3)
    model = keras_mhdeblur.NAFNetMH(heads=2, width=8, enc_blocks=(1, 1), middle_blocks=1,
                                    dec_blocks=(1, 1))
    # Trained-looking blocks (non-zero beta and gamma), so that copying them matters.
    rng = np.random.default_rng(0)
    for weight in model.weights:
        weight.assign(np.asarray(weight) + 0.1 * rng.standard_normal(weight.shape))
    grown = deepened(model, enc_blocks=(1, 3), middle_blocks=2, dec_blocks=[2, 1])
    assert (grown.enc_blocks, grown.middle_blocks, grown.dec_blocks) == ((1, 3), 2, (2, 1))
    assert grown.count_params() > model.count_params()
    images = random_images((2, 24, 24, 3))
    np.testing.assert_allclose(np.asarray(grown(images)), np.asarray(model(images)), atol=1e-5)
    # The grown level keeps its trained block first; training the new ones changes the output.
    level = {layer.name: layer for layer in grown._flatten_layers()
             if isinstance(layer, NAFBlockStack)}["encoders.1"]
    trained = {layer.name: layer for layer in model._flatten_layers()
               if isinstance(layer, NAFBlockStack)}["encoders.1"]
    np.testing.assert_array_equal(np.asarray(level.stacked["conv1_kernel"])[:1],
                                  np.asarray(trained.stacked["conv1_kernel"]))
    level.stacked["gamma"].assign(np.full(level.stacked["gamma"].shape, 0.5))
    assert np.abs(np.asarray(grown(images)) - np.asarray(model(images))).max() > 1e-3
    with pytest.raises(ValueError, match=r"enc_blocks=\[1\] \(it has \(1, 1\): as many levels"):
        deepened(model, enc_blocks=[1])
    with pytest.raises(ValueError, match=r"middle_blocks=0 \(it has 1"):
        deepened(model, middle_blocks=0)
    with pytest.raises(ValueError, match="width .*counts no blocks"):
        deepened(model, width=16)
    # A level without blocks keeps an empty stack, so it may gain some too.
    shallow = keras_mhdeblur.NAFNetMH(heads=2, width=8, enc_blocks=(0, 1), dec_blocks=(1, 1))
    np.testing.assert_allclose(np.asarray(deepened(shallow, enc_blocks=(2, 1))(images)),
                               np.asarray(shallow(images)), atol=1e-5)


def test_parameter_counts_of_the_official_configs():
    assert keras_mhdeblur.NAFNet().count_params() == 17_111_907
    assert keras_mhdeblur.NAFNetMH(heads=4).count_params() == 17_114_508
    assert keras_mhdeblur.build_model("nafnet-w64", heads=1).count_params() == 67_888_835
    assert keras_mhdeblur.build_model("nafnet-w64", heads=4).count_params() == 67_894_028


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="heads"):
        keras_mhdeblur.NAFNetMH(heads=0, **TINY_NAFNET)
    with pytest.raises(ValueError, match="SimpleGate"):
        keras_mhdeblur.NAFNetMH(heads=2, width=3, enc_blocks=(1,), dec_blocks=(1,), dw_expand=1)
    with pytest.raises(ValueError, match="width"):
        keras_mhdeblur.NAFNetMH(heads=2, width=0)
    with pytest.raises(ValueError, match="Unknown config"):
        keras_mhdeblur.build_model("nafnet-w128")


def test_keras_round_trip_keeps_tlc(tmp_path):
    model = keras_mhdeblur.NAFNetMH(heads=3, combine_heads=True, tlc_train_size=(16, 16),
                                    selected_output=4, **TINY_NAFNET)
    loaded = assert_keras_round_trip(model, random_images((1, 40, 48, 3)), tmp_path)
    assert (loaded.heads, loaded.combine_heads, loaded.tlc_train_size, loaded.selected_output) == (
        3, True, (16, 16), 4)


def test_trained_model_round_trip_resumes_optimizer(tmp_path):
    model = keras_mhdeblur.NAFNetMH(heads=2, **TINY_NAFNET)
    model.compile(loss=keras_mhdeblur.MinOverHeads("l1"))
    x = random_images((4, 16, 16, 3))
    model.fit(x, x, batch_size=2, epochs=1, verbose=0)
    loaded = assert_keras_round_trip(model, x, tmp_path)
    assert int(loaded.optimizer.iterations) == 2
    assert loaded.restoration_loss.base == "l1"
    loaded.fit(x, x, batch_size=2, epochs=1, verbose=0)
    assert int(loaded.optimizer.iterations) == 4


def test_scanned_blocks_equal_unrolled_blocks():
    """scan_blocks only changes how the graph is built: same weights, same outputs (with the
    blocks moved off identity so that they compute something)."""
    metadata, state_dict, inputs, expected = load_fixture("nafnet_mh_w8_k4")
    kwargs = dict(metadata["constructor_kwargs"])
    unrolled = keras_mhdeblur.from_official_config("MHNAFNet", **kwargs)
    keras_mhdeblur.load_torch_weights(unrolled, state_dict)
    scanned = keras_mhdeblur.NAFNetMH.from_config({**unrolled.get_config(), "scan_blocks": True})
    assert scanned.scan_blocks and scanned.encoders[3].count == 2
    scanned.set_weights(unrolled.get_weights())
    np.testing.assert_allclose(np.asarray(unrolled(inputs)), np.asarray(scanned(inputs)),
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(unrolled(inputs)), expected["heads"], atol=1e-4)


def test_scanned_blocks_train_like_unrolled_blocks_under_xla():
    """Gradients flow through the block loop: one SGD step of the scanned model compiled with
    XLA (`jit_compile=True`, which needs a bounded loop) changes the weights as one step of the
    unrolled model does."""
    blurry, sharp = blurred_pairs(count=2)
    changes = []
    for scan, jit in ((False, False), (True, True)):
        keras.utils.set_random_seed(0)
        model = keras_mhdeblur.NAFNetMH(heads=2, width=8, enc_blocks=(1, 3), middle_blocks=1,
                                        dec_blocks=(1, 1), scan_blocks=scan)
        offsets = np.random.default_rng(1)  # blocks off identity, so each has a gradient
        for variable in model.weights:
            if variable.path.split("/")[-1] in ("beta", "gamma"):
                variable.assign(offsets.normal(0, 0.5, variable.shape).astype("float32"))
        model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit)
        start = model.get_weights()
        model.train_on_batch(blurry, sharp)
        changes.append([after - before for after, before in zip(model.get_weights(), start)])
    scale = max(np.abs(change).max() for change in changes[0])
    assert scale > 1e-4
    for unrolled, scanned in zip(*changes):
        np.testing.assert_allclose(scanned, unrolled, atol=1e-4 * scale)


def test_a_stack_of_blocks_is_traced_once_in_a_tensorflow_graph(monkeypatch):
    """In a graph, a stack's blocks share one traced function (NAFNet-w32's 28 deep blocks
    are traced and differentiated once); values and gradients are the eager ones."""
    import tensorflow as tf

    from keras_mhdeblur.models import nafnet

    keras.utils.set_random_seed(0)
    model = keras_mhdeblur.NAFNetMH(heads=2, width=8, enc_blocks=(1, 3), middle_blocks=2,
                                    dec_blocks=(1, 1))
    rng = np.random.default_rng(0)
    for variable in model.trainable_variables:  # beta = gamma = 0 would make every block the identity
        variable.assign(0.1 * rng.standard_normal(variable.shape).astype("float32"))
    images = tf.constant(rng.random((2, 24, 24, 3), dtype=np.float32))

    def loss_and_gradients():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(images, training=True)))
        return loss, tape.gradient(loss, model.trainable_variables)

    eager_loss, eager_gradients = loss_and_gradients()
    calls = []
    block = nafnet.naf_block
    monkeypatch.setattr(nafnet, "naf_block", lambda *args: (calls.append(1), block(*args))[1])
    graph_loss, graph_gradients = tf.function(loss_and_gradients)()
    assert len(calls) == 1 + 1 + 1 + 1 + 1  # five stacks, each traced once (8 blocks)
    np.testing.assert_allclose(graph_loss.numpy(), eager_loss.numpy(), rtol=1e-5)
    for graph_gradient, eager_gradient in zip(graph_gradients, eager_gradients):
        scale = np.abs(eager_gradient.numpy()).max()
        np.testing.assert_allclose(graph_gradient.numpy(), eager_gradient.numpy(),
                                   atol=1e-5 * scale)


def test_pad_mode_reflects_when_asked_and_pads_officially_by_default():
    """A side that is not a multiple of 16 is zero-padded as the official code does, or, with
    pad_mode="reflect" (the presets), padded by reflection: exactly the official network on
    the reflected image, cropped back."""
    keras.utils.set_random_seed(0)
    official = keras_mhdeblur.NAFNetMH(heads=2, **TINY_NAFNET)
    assert official.pad_mode == "constant" and official.get_config()["pad_mode"] is None
    reflecting = keras_mhdeblur.NAFNetMH.from_config(
        {**official.get_config(), "pad_mode": "reflect"})
    reflecting.set_weights(official.get_weights())
    assert reflecting.get_config()["pad_mode"] == "reflect"
    assert official.pad_multiple == 4  # two levels: 18 x 26 pads to 20 x 28
    image = random_images((1, 18, 26, 3))
    reflected = np.pad(image, ((0, 0), (0, 2), (0, 2), (0, 0)), mode="reflect")
    restored = keras.ops.convert_to_numpy(reflecting(image))
    np.testing.assert_allclose(
        restored, keras.ops.convert_to_numpy(official(reflected))[:, :, :18, :26], atol=1e-5)
    assert np.abs(restored - keras.ops.convert_to_numpy(official(image))).max() > 1e-3
    assert reflecting.set_pad_mode(None).pad_mode == "constant"
    from keras_mhdeblur.commands.arguments import PAD_MODE_CHOICES
    from keras_mhdeblur.models.base import PAD_MODES

    assert set(PAD_MODE_CHOICES) == set(PAD_MODES)  # the CLI offers what a model takes
    with pytest.raises(ValueError, match="pad_mode must be one of constant, reflect, or None "
                                         "for NAFNetMH's official 'constant'; got 'wrap'"):
        keras_mhdeblur.NAFNetMH(heads=2, pad_mode="wrap", **TINY_NAFNET)
