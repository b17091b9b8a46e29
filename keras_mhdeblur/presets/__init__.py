"""Presets: trained models that load offline by name, keras-hub style.

    model = keras_mhdeblur.from_preset("NAME")             # a preset shipped in the package
    model = keras_mhdeblur.NAFNetMH.from_preset("my/preset/folder")
    keras_mhdeblur.list_presets()                          # [metadata dict, ...]

A preset is a folder of these files:

    config.json         the model's Keras config (class, constructor arguments, selected output)
    model.weights.h5    its weights (no optimiser state)
    metadata.json       name, backbone and arguments, heads, combination, training recipe and
                        data, steps, file size, measured figures
    reference.npz       a small fixed input and the model's outputs on it, written with the
                        preset, so that any installation can check that it reproduces them
                        (`check_preset`)

Shipped presets are folders below this package (package data), so nothing is downloaded. A
user's own preset folder loads the same way. `save_preset` writes one atomically;
`mhdeblur make-preset` packs a training run's best checkpoint.
"""

import json
from pathlib import Path

import numpy as np

PRESET_DIR = Path(__file__).resolve().parent
CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE = "config.json", "model.weights.h5", "metadata.json"
PRESET_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE)
REFERENCE_FILE = "reference.npz"
REFERENCE_SIZE = 32


class PresetError(ValueError):
    """A preset that cannot be found or loaded; the message names the preset or the file."""


# What `mhdeblur deblur` uses without --model (when it is shipped).
DEFAULT_PRESET = "nafnet-w16-mh4"


def default_preset():
    """The name of the default preset, or None when this installation ships none."""
    shipped = shipped_presets()
    if DEFAULT_PRESET in shipped:
        return DEFAULT_PRESET
    return next(iter(shipped), None)


def shipped_presets():
    """{name: folder} of the presets shipped in the package."""
    return {path.name: path for path in sorted(PRESET_DIR.iterdir())
            if path.is_dir() and (path / CONFIG_FILE).exists()}


def is_preset_folder(path):
    """True when `path` is a folder holding a preset's config and weights."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG_FILE).exists() and (path / WEIGHTS_FILE).exists()


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PresetError(f"{path}: missing (a preset folder holds "
                          f"{', '.join(PRESET_FILES)})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PresetError(f"{path}: damaged, not valid JSON ({error})") from None


def resolve_preset(name_or_path):
    """The folder of a shipped preset's name, or of a preset folder; `PresetError` otherwise,
    listing the shipped names."""
    shipped = shipped_presets()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    path = Path(name_or_path)
    if path.is_dir():
        if not is_preset_folder(path):
            raise PresetError(f"{path}: not a preset folder (expected {CONFIG_FILE} and "
                              f"{WEIGHTS_FILE} in it)")
        return path
    available = ", ".join(shipped) or "none are shipped in this version"
    raise PresetError(f"{name_or_path}: no such preset (shipped presets: {available}) and no "
                      "such preset folder")


def list_presets():
    """Metadata of every shipped preset (see the module doc), sorted by name."""
    return [_read_json(folder / METADATA_FILE) for folder in shipped_presets().values()]


def preset_metadata(name_or_path):
    """The metadata of one preset."""
    return _read_json(resolve_preset(name_or_path) / METADATA_FILE)


def from_preset(name_or_path, cls=None):
    """Builds the preset's model and loads its weights; no network is used.

    Args:
        name_or_path: a shipped preset's name, or a preset folder.
        cls: when given (e.g. `NAFNetMH.from_preset`), the preset's model must be of this
            class or a subclass.
    """
    import keras

    import keras_mhdeblur
    from keras_mhdeblur.models.base import MultiHeadRestorationModel

    keras_mhdeblur.register_serializables()

    folder = resolve_preset(name_or_path)
    config = _read_json(folder / CONFIG_FILE)
    try:
        model = keras.saving.deserialize_keras_object(config)
    except Exception as error:
        raise PresetError(f"{folder / CONFIG_FILE}: does not describe a model this version can "
                          f"build ({type(error).__name__}: {error})") from None
    if not isinstance(model, MultiHeadRestorationModel):
        raise PresetError(f"{folder / CONFIG_FILE}: describes a {type(model).__name__}, not a "
                          "keras_mhdeblur model")
    if cls is not None and not isinstance(model, cls):
        raise PresetError(f"{name_or_path}: holds a {type(model).__name__}, not a "
                          f"{cls.__name__}; use keras_mhdeblur.from_preset or "
                          f"{type(model).__name__}.from_preset")
    try:
        model.load_weights(folder / WEIGHTS_FILE)
    except Exception as error:
        raise PresetError(f"{folder / WEIGHTS_FILE}: damaged or from another model "
                          f"({type(error).__name__}: {error})") from None
    return model


def reference_input():
    """The fixed (1, REFERENCE_SIZE, REFERENCE_SIZE, 3) float32 input of `reference.npz`."""
    return np.random.default_rng(0).random((1, REFERENCE_SIZE, REFERENCE_SIZE, 3), np.float32)


def _reference_outputs(model, image):
    """Every output on `image` (1, H, W, 3), and the auto output last for a scoring branch."""
    from keras_mhdeblur.inference import restore

    which = "all+auto" if getattr(model, "output_scorer", None) is not None else "all"
    return restore(model, image[0], which=which)


def check_preset(name_or_path, atol=1e-4):
    """Loads a preset and runs it on its `reference.npz` input. Returns the largest absolute
    difference from the stored outputs; raises `PresetError` when it exceeds `atol`, naming
    the file."""
    folder = resolve_preset(name_or_path)
    path = folder / REFERENCE_FILE
    try:
        with np.load(path) as stored:
            image, expected = stored["input"], stored["outputs"]
    except FileNotFoundError:
        raise PresetError(f"{path}: missing (written by save_preset / make-preset)") from None
    except Exception as error:
        raise PresetError(f"{path}: damaged ({type(error).__name__}: {error})") from None
    outputs = _reference_outputs(from_preset(folder), image)
    if outputs.shape != expected.shape:
        raise PresetError(f"{path}: outputs have shape {expected.shape}, the model gives "
                          f"{outputs.shape}")
    difference = float(np.max(np.abs(outputs - expected)))
    if difference > atol:
        raise PresetError(f"{folder}: outputs differ from {path} by up to {difference:.2e} "
                          f"(tolerance {atol:.0e})")
    return difference


def save_preset(model, out_dir, metadata, overwrite=False, weights_dtype="float32"):
    """Writes `model` (config and weights, no optimiser state) and `metadata` as a preset folder,
    atomically (`utils.files.write_folder_atomically`). Refuses to replace an existing folder unless
    `overwrite`. Returns the folder.

    `weights_dtype="float16"` stores the weights in half the bytes (`saving.save_weights`); the
    reference outputs are then those of the weights as stored."""
    import keras

    from keras_mhdeblur.saving import save_weights
    from keras_mhdeblur.utils.files import write_folder_atomically

    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise PresetError(f"{out_dir}: already exists; pass --overwrite to replace it")

    def write(folder):
        config = keras.saving.serialize_keras_object(model)
        config.pop("compile_config", None)  # a preset carries no training state
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        save_weights(model, folder / WEIGHTS_FILE, weights_dtype)
        size = sum((folder / name).stat().st_size for name in (CONFIG_FILE, WEIGHTS_FILE))
        record = {**metadata, "parameters": int(model.count_params()), "file_bytes": size,
                  "weights_dtype": weights_dtype}
        (folder / METADATA_FILE).write_text(json.dumps(record, indent=2))
        image = reference_input()
        stored = model if weights_dtype == "float32" else from_preset(folder)
        np.savez(folder / REFERENCE_FILE, input=image, outputs=_reference_outputs(stored, image))

    return write_folder_atomically(out_dir, write)


# Seed of the held-out pairs a preset is measured on (the training streams use seeds near 42).
HELD_OUT_SEED = 2026


def held_out_pairs(name_or_path, count, size=192, seed=HELD_OUT_SEED):
    """Synthetic pairs for measuring a preset on sharp photos its training never saw: the
    preset's own blur recipe (`held_out_pairs_for_recipe` with its metadata's recipe).

    Returns:
        [(name, blurry, sharp), ...] with float32 (size, size, 3) images in [0, 1].
    """
    recipe = preset_metadata(name_or_path).get("training", {}).get("recipe", {})
    return held_out_pairs_for_recipe(recipe, count, size, seed)


def held_out_pairs_for_recipe(recipe, count, size=192, seed=HELD_OUT_SEED,
                              source="builtin:heldout", source_options=None):
    """A training recipe's synthetic blur (its `synthetic_blur` settings and label, a
    `TrainConfig` dict) applied to the built-in held-out photos (`source="builtin:heldout"`,
    `data.sources.HELD_OUT_PHOTOS`; dead leaves alone without scikit-image).

    `source` and `source_options` (as `SyntheticPairs` takes them) measure the same blur on
    other sharp images, e.g. the training photos, to tell generalisation from fitting."""
    from keras_mhdeblur.data import SyntheticPairs

    stream = SyntheticPairs(size, seed=seed, source=source, source_options=source_options,
                            label=recipe.get("synthetic_label", "middle"),
                            **recipe.get("synthetic_blur", {}))
    blurry, sharp = stream.arrays(count)
    return [(f"heldout{index:03d}", b, s) for index, (b, s) in enumerate(zip(blurry, sharp))]
