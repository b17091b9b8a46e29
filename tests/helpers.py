"""Shared test helpers: tiny configurations of every backbone, random images, the official
reference fixtures, `.keras` round trips, fresh interpreters for other backends, and
`run_backbone_test`, the checks every backbone passes (so each backbone's test file holds what
is specific to it)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "reference"

# Tiny constructor arguments of each backbone (head options apart), for fast tests. HINet's,
# Restormer's and MPRNet's are the architectures of their official fixtures (so their parameter
# counts are checked against PyTorch's); NAFNet's fixtures have 4 levels, these 1 or 2.
TINY_NAFNET = dict(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1))
TINY_NAFNET_ONE_LEVEL = dict(width=8, enc_blocks=(1,), middle_blocks=1, dec_blocks=(1,))
TINY_HINET = dict(width=8, depth=3, hin_position_left=1, hin_position_right=2)
TINY_RESTORMER = dict(width=8, enc_blocks=(1, 1, 1), middle_blocks=1, dec_blocks=(1, 1, 1),
                      refinement_blocks=1, attention_heads=(1, 2, 4, 8))
TINY_MPRNET = dict(width=8, unet_growth=8, orsnet_growth=8, orb_blocks=1)
# Multi-head class name -> its tiny arguments.
TINY = {"NAFNetMH": TINY_NAFNET, "HINetMH": TINY_HINET, "RestormerMH": TINY_RESTORMER,
        "MPRNetMH": TINY_MPRNET}


def load_fixture(name):
    """(metadata dict, {official name: array} state_dict, input, {output name: array})."""
    metadata = json.loads((FIXTURES / f"{name}.json").read_text())
    with np.load(FIXTURES / f"{name}.npz") as data:
        arrays = {key: data[key] for key in data.files}
    state_dict = {k[len("state_dict/"):]: v for k, v in arrays.items()
                  if k.startswith("state_dict/")}
    outputs = {k[len("output/"):]: v for k, v in arrays.items() if k.startswith("output/")}
    return metadata, state_dict, arrays["input"], outputs


def fixture_parity_error(name):
    """Builds the fixture's model from its official config, imports its weights and returns
    ({output name: max abs error}, model, metadata)."""
    import keras_mhdeblur

    metadata, state_dict, inputs, expected = load_fixture(name)
    model = keras_mhdeblur.from_official_config(metadata["official_class"],
                                                **metadata["constructor_kwargs"])
    assert model.count_params() == metadata["num_parameters"]
    keras_mhdeblur.load_torch_weights(model, state_dict)
    outputs = model(inputs)
    if isinstance(outputs, dict):
        named = outputs
    elif isinstance(outputs, (list, tuple)):
        named = dict(zip(model.stage_names, outputs))
    else:
        named = {next(iter(expected)): outputs}
    errors = {key: float(np.max(np.abs(keras.ops.convert_to_numpy(named[key]) - value)))
              for key, value in expected.items()}
    return errors, model, metadata


def assert_keras_round_trip(model, inputs, tmp_path):
    """Saves to .keras, loads, and checks identical outputs and config."""
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    expected = keras.tree.map_structure(keras.ops.convert_to_numpy, model(inputs))
    actual = keras.tree.map_structure(keras.ops.convert_to_numpy, loaded(inputs))
    keras.tree.map_structure(np.testing.assert_array_equal, actual, expected)
    return loaded


def run_python(code, backend="tensorflow", timeout=600, extra_env=None):
    """Runs `code` in a fresh interpreter with KERAS_BACKEND=backend (the backend is fixed at
    import time, so other backends need their own process). Returns stdout; fails the test
    with stderr on a non-zero exit."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.update(extra_env or {})
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise AssertionError(
            f"subprocess ({backend}) failed with {result.returncode}:\n{result.stdout}\n"
            f"{result.stderr[-6000:]}")
    return result.stdout


def short_fit_losses(code, backend):
    """Runs `code`, which must leave `losses` (a short fit's per-epoch losses), on `backend`:
    in this process when it is this process's backend, else in a fresh one (`run_python`).
    Returns (first loss, last loss)."""
    if backend == keras.backend.backend():
        namespace = {}
        exec(textwrap.dedent(code), namespace)
        losses = namespace["losses"]
        return float(losses[0]), float(losses[-1])
    output = run_python(code + '\nprint("LOSSES", losses[0], losses[-1])\n', backend=backend)
    line = next(line for line in output.splitlines() if line.startswith("LOSSES"))
    first, last = line.split()[1:]
    return float(first), float(last)


def random_images(shape, seed=0):
    """Uniform [0, 1) float32 images of `shape` (NHWC), reproducible by `seed`."""
    return np.random.default_rng(seed).uniform(0, 1, shape).astype("float32")


def blurred_pairs(count=8, size=16, seed=0):
    """(blurry, sharp) float32 batches of (count, size, size, 3): sharp uniform in [0.2, 0.8],
    blurry its average with itself shifted one pixel right (a 2-tap horizontal blur)."""
    rng = np.random.default_rng(seed)
    sharp = rng.uniform(0.2, 0.8, size=(count, size, size, 3)).astype("float32")
    blurry = (sharp + np.roll(sharp, 1, axis=2)) / 2
    return blurry, sharp


def _stage_list(outputs):
    """A model's outputs as a list of numpy arrays (one per stage)."""
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    elif not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [keras.ops.convert_to_numpy(output) for output in outputs]


def run_backbone_test(multi_head_class, single_head_class, init_kwargs, tmp_path,
                      backend=None, fixture=None):
    """The checks every backbone passes (as keras-hub's `run_backbone_test`):

    - K = 4 with combination: one (B, 10, H, W, 3) output per stage (a list in `stage_names`
      order for several stages) on an odd size, not a multiple of the padding; the heads
      differ at initialisation; the parameter count is the official fixture's (`fixture`, a
      name in ../shared/fixtures/reference whose architecture `init_kwargs` must be);
    - K = 2 without combination, `output_format="dict"`: keyed by stage name (several stages)
      on an image smaller than the padding, `final_output` is the final stage; a `.keras`
      save/load gives the same class, config and identical outputs;
    - the single-head class, from `build_model` of its named config with the tiny arguments
      (`width` included): (B, H, W, 3) per stage on a size that needs no padding;
    - input checks: a clear error for non-(B, H, W, 3) input;
    - every trainable weight has a gradient (no layer is left out of the graph; checked on
      TensorFlow, where a disconnected one gets None); 8 epochs of `fit` with the default loss
      and optimiser lower the loss (by 0.5 dB for PSNR losses, 10% for errors).

    `backend`: run all of it on that Keras backend; one that is not this process's runs in a
    fresh interpreter (`run_python`).
    """
    if backend is not None and backend != keras.backend.backend():
        run_python(f"""
            import pathlib, sys, tempfile
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            import keras_mhdeblur
            from helpers import run_backbone_test
            with tempfile.TemporaryDirectory() as folder:
                run_backbone_test(keras_mhdeblur.{multi_head_class.__name__},
                                  keras_mhdeblur.{single_head_class.__name__},
                                  {init_kwargs!r}, pathlib.Path(folder), fixture={fixture!r})
            """, backend=backend)
        return
    import keras_mhdeblur

    stages = len(multi_head_class.stage_names)
    odd = random_images((2, 37, 51, 3))
    model = multi_head_class(heads=4, combine_heads=True, **init_kwargs)
    if fixture is not None:
        metadata = json.loads((FIXTURES / f"{fixture}.json").read_text())
        assert model.count_params() == metadata["num_parameters"], fixture
    outputs = model(odd)
    assert isinstance(outputs, list) == (stages > 1)
    outputs = _stage_list(outputs)
    assert [output.shape for output in outputs] == [(2, 10, 37, 51, 3)] * stages
    final = outputs[multi_head_class.stage_names.index(multi_head_class.final_stage)]
    assert np.abs(final[:, 0] - final[:, 1]).max() > 1e-3  # random init breaks the symmetry
    # The scoring branch's hook: the same outputs, and the final stage's last features at the
    # input's size, which a branch reading them turns into an auto output.
    same, features = model.outputs_and_features(odd)
    np.testing.assert_allclose(model.final_output(_stage_list(same)), final, atol=1e-6)
    features = keras.ops.convert_to_numpy(features)
    assert features.shape[:3] == (2, 37, 51) and features.shape[3] >= 8, features.shape
    from keras_mhdeblur.inference import restore
    from keras_mhdeblur.scoring import with_output_scorer

    scored = with_output_scorer(model, width=4, inputs="features")
    assert scored.output_scorer.feature_stem.kernel.shape[2] == features.shape[3]
    auto = restore(scored, odd[0], which="all+auto")
    assert auto.shape == (11, 37, 51, 3)
    np.testing.assert_allclose(auto[:10], final[0], atol=1e-5)
    for bad in (np.zeros((16, 16, 3), "float32"), np.zeros((1, 16, 16, 4), "float32")):
        with pytest.raises(ValueError, match=r"\(batch, height, width, 3\)"):
            model(bad)

    as_dict = multi_head_class(heads=2, combine_heads=False, output_format="dict",
                               selected_output=1, **init_kwargs)
    small = random_images((1, 3, 5, 3), seed=1)
    outputs = as_dict(small)
    if stages > 1:  # (single-stage models return their one tensor in either format)
        assert isinstance(outputs, dict)
        assert sorted(outputs) == sorted(multi_head_class.stage_names)
    assert tuple(as_dict.final_output(outputs).shape) == (1, 2, 3, 5, 3)
    assert_keras_round_trip(as_dict, odd[:1], tmp_path)

    # The single-head model, from the class's named config with the tiny arguments.
    name = next(name for name, (_, named_class, _) in keras_mhdeblur.NAMED_CONFIGS.items()
                if named_class is single_head_class)
    single = keras_mhdeblur.build_model(name, heads=1, **init_kwargs)
    assert type(single) is single_head_class and single.width == init_kwargs["width"]
    size = single.pad_multiple
    outputs = _stage_list(single(random_images((1, 2 * size, 3 * size, 3), seed=2)))
    assert [output.shape for output in outputs] == [(1, 2 * size, 3 * size, 3)] * stages

    keras.utils.set_random_seed(0)
    model = multi_head_class(heads=2, **init_kwargs)
    x = random_images((2, 16, 16, 3))
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = model.compute_loss(y=0.5 * x + 0.25, y_pred=model(x, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        disconnected = [variable.path for variable, gradient in zip(
            model.trainable_variables, gradients) if gradient is None]
        assert not disconnected, disconnected
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    losses = model.fit(x, 0.5 * x + 0.25, batch_size=2, epochs=8, verbose=0).history["loss"]
    if model.restoration_loss.base == "psnr":  # -PSNR in dB
        assert losses[-1] < losses[0] - 0.5, losses
    else:  # an error (L1, Charbonnier, ...)
        assert losses[-1] < 0.9 * losses[0], losses
