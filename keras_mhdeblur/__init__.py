"""keras_mhdeblur: multi-head image deblurring for Keras 3 ("Multi-Outputs Is All You Need For
Deblur", arXiv 2208.13029).

    import keras_mhdeblur
    model = keras_mhdeblur.NAFNetMH(heads=4)        # or keras_mhdeblur.from_preset("nafnet-w16-mh4")

The names below load on first use (PEP 562), so that `import keras_mhdeblur` and
`mhdeblur --help` do not start TensorFlow; using any model, loss or metric imports Keras and its
backend as usual.
"""

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it.
_PUBLIC = {
    "MultiHeadOutput": "keras_mhdeblur.heads",
    "combination_matrix": "keras_mhdeblur.heads",
    "num_outputs": "keras_mhdeblur.heads",
    "output_pairs": "keras_mhdeblur.heads",
    "MinOverHeads": "keras_mhdeblur.losses",
    "MultiHeadPSNRLoss": "keras_mhdeblur.losses",
    "MultiHeadPSNR": "keras_mhdeblur.metrics",
    "WinShare": "keras_mhdeblur.metrics",
    "NAMED_CONFIGS": "keras_mhdeblur.models",
    "HINet": "keras_mhdeblur.models",
    "HINetMH": "keras_mhdeblur.models",
    "MPRNet": "keras_mhdeblur.models",
    "MPRNetMH": "keras_mhdeblur.models",
    "MultiHeadRestorationModel": "keras_mhdeblur.models",
    "NAFNet": "keras_mhdeblur.models",
    "NAFNetMH": "keras_mhdeblur.models",
    "Restormer": "keras_mhdeblur.models",
    "RestormerMH": "keras_mhdeblur.models",
    "build_model": "keras_mhdeblur.models",
    "official_optimizer": "keras_mhdeblur.optimizers",
    "official_schedule": "keras_mhdeblur.optimizers",
    "from_preset": "keras_mhdeblur.presets",
    "list_presets": "keras_mhdeblur.presets",
    "WeightImportError": "keras_mhdeblur.convert",
    "from_official_config": "keras_mhdeblur.convert",
    "from_official_options": "keras_mhdeblur.convert",
    "load_torch_weights": "keras_mhdeblur.convert",
}
# Submodules reachable as attributes without their own import statement.
_SUBMODULES = ("heads", "layers", "losses", "metrics", "models", "inference", "evaluation",
               "presets", "training", "data", "export", "scoring", "convert")

__all__ = sorted(_PUBLIC) + ["register_serializables"]


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"keras_mhdeblur.{name}")
    else:
        raise AttributeError(f"module 'keras_mhdeblur' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC) | set(_SUBMODULES))


def register_serializables():
    """Imports every module that registers Keras-serializable classes (models, layers, losses,
    metrics, the scoring branch), so that `.keras` files of this library deserialise."""
    for module in ("models", "losses", "metrics", "scoring"):
        importlib.import_module(f"keras_mhdeblur.{module}")
