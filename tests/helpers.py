"""Shared test helpers, so each backbone's test is a few lines."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "reference"


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
