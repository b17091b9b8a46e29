"""Import of official PyTorch weights (`state_dict`: parameter name -> array).

Our layers carry the official module paths as names ("encoders.0.0.conv1", "sca.1", ...), so the
official parameter name of every Keras variable is its layer path plus the PyTorch parameter
name. Layouts are converted per layer type (docs/method.md, "Porting notes"):

    Conv2d           (O, I, kh, kw) -> Conv2D kernel (kh, kw, I, O)
    depthwise Conv2d (C, 1, kh, kw) -> DepthwiseConv2D kernel (kh, kw, C, 1)
    ConvTranspose2d  (I, O, kh, kw) -> Conv2DTranspose kernel (kh, kw, O, I)
    norms            weight, bias   -> gamma, beta
    own parameters   same name, reshaped when only singleton axes differ ((1, C, 1, 1) -> (C,))
"""

import keras
import numpy as np

from keras_mhdeblur.heads import expand_single_head

_CONV_TO_KERAS = (2, 3, 1, 0)
_DEPTHWISE_TO_KERAS = (2, 3, 0, 1)


class WeightImportError(ValueError):
    """The state_dict does not fit the model: lists missing, unexpected and mis-shaped keys."""


def _layer_parameters(layer):
    """{torch parameter name: (keras variable, torch layout -> keras layout)} of one layer's own
    variables (not its sublayers'). A layer that stacks several official modules into one
    variable lists its own: `official_parameters()` -> {name: (variable, converter, index)}."""
    layers = keras.layers
    if hasattr(layer, "official_parameters"):
        return layer.official_parameters()
    if isinstance(layer, layers.DepthwiseConv2D):
        params = {"weight": (layer.kernel, lambda w: w.transpose(_DEPTHWISE_TO_KERAS))}
    elif isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose)):
        # ConvTranspose2d stores (I, O, kh, kw) and Keras (kh, kw, O, I): the same permutation.
        params = {"weight": (layer.kernel, lambda w: w.transpose(_CONV_TO_KERAS))}
    elif isinstance(layer, layers.Dense):
        params = {"weight": (layer.kernel, lambda w: w.T)}
    elif isinstance(layer, (layers.LayerNormalization, layers.GroupNormalization)):
        params = {"weight": (layer.gamma, None), "bias": (layer.beta, None)}
        return {name: item for name, item in params.items() if item[0] is not None}
    elif isinstance(layer, layers.PReLU):
        return {"weight": (layer.alpha, None)}
    else:
        own = list(layer._trainable_variables) + list(layer._non_trainable_variables)
        return {variable.name: (variable, None) for variable in own}
    if getattr(layer, "bias", None) is not None:
        params["bias"] = (layer.bias, None)
    return params


def official_parameter_map(model):
    """{official parameter name: (keras variable, layout converter or None, index or None)} for
    `model`; an index means the parameter is slice `index` of a stacked variable."""
    mapping = {}

    def visit(layer, prefix):
        for sublayer in layer._flatten_layers(include_self=False, recursive=False):
            if getattr(sublayer, "is_official", True) is False:
                continue  # our own additions (the scoring branch) have no official weights
            path = f"{prefix}.{sublayer.name}" if prefix else sublayer.name
            for name, item in _layer_parameters(sublayer).items():
                mapping[f"{path}.{name}"] = item if len(item) == 3 else (*item, None)
            visit(sublayer, path)

    visit(model, "")
    return mapping


def _to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor; torch itself is never imported here
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _fit_shape(array, shape):
    """Reshape when only singleton axes differ ((1, C, 1, 1) -> (C,)); None if it cannot."""
    if tuple(array.shape) == tuple(shape):
        return array
    squeezed = [d for d in array.shape if d != 1]
    wanted = [d for d in shape if d != 1]
    return array.reshape(shape) if squeezed == wanted else None


def clean_state_dict(state_dict):
    """Unwraps the official checkpoint containers ({"params": ...}, {"state_dict": ...}) and
    strips the "module." prefix DataParallel/DDP adds."""
    for key in ("params", "params_ema", "state_dict", "model"):
        if isinstance(state_dict.get(key), dict):
            state_dict = state_dict[key]
            break
    return {(name[7:] if name.startswith("module.") else name): value
            for name, value in state_dict.items()}


def load_torch_weights(model, state_dict, from_single_head=False, perturbation=1e-2, seed=0):
    """Fills `model` with official PyTorch weights.

    Args:
        model: a keras_mhdeblur model built with the same architecture arguments (see
            `from_official_config`).
        state_dict: official parameter name -> numpy array or torch tensor (a checkpoint's
            {"params": ...} wrapper and "module." prefixes are accepted).
        from_single_head: the state_dict is a single-head official model and `model` has K
            heads: the image-output layers are replicated across heads, with a small random
            perturbation (relative to the weights' std) on heads 1..K-1 to break the symmetry.
            Output 0 then reproduces the single-head model exactly.

    Raises:
        WeightImportError: listing every missing, unexpected and mis-shaped key.
    """
    state_dict = clean_state_dict(dict(state_dict))
    mapping = official_parameter_map(model)
    rng = np.random.default_rng(seed)
    missing = sorted(set(mapping) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(mapping))
    mis_shaped, assignments, stacked = [], [], {}
    for name, (variable, converter, index) in mapping.items():
        if name not in state_dict:
            continue
        array = _to_numpy(state_dict[name])
        wanted = tuple(variable.shape) if index is None else tuple(variable.shape[1:])
        converted = converter(array) if converter else array
        value = _fit_shape(converted, wanted)
        if value is not None and index is not None:
            key = id(variable)
            if key not in stacked:
                stacked[key] = (variable, np.array(variable.numpy(), np.float32))
            stacked[key][1][index] = value
            continue
        if value is None and from_single_head and index is None:
            value = expand_single_head(converted, wanted, model.heads, perturbation, rng)
        if value is None:
            mis_shaped.append(f"{name}: checkpoint {tuple(array.shape)} -> {converted.shape}, "
                              f"model expects {wanted}")
            continue
        assignments.append((variable, value))
    if missing or unexpected or mis_shaped:
        lines = [f"The state_dict does not fit {type(model).__name__} "
                 f"({len(mapping)} parameters expected, {len(state_dict)} given)."]
        for title, names in (("missing", missing), ("unexpected", unexpected),
                             ("mis-shaped", mis_shaped)):
            if names:
                shown = "\n    ".join(names[:20])
                more = f"\n    ... and {len(names) - 20} more" if len(names) > 20 else ""
                lines.append(f"  {title} ({len(names)}):\n    {shown}{more}")
        image_outputs = ("ending", "conv2", "output.")  # layers that write the 3K image channels
        if any(key in n for n in mis_shaped for key in image_outputs) and not from_single_head:
            lines.append("  (a single-head checkpoint for a multi-head model? pass "
                         "from_single_head=True)")
        raise WeightImportError("\n".join(lines))
    assignments.extend(stacked.values())
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))
    return model


def load_torch_checkpoint(path):
    """Reads an official checkpoint into {name: numpy array}: a `.pth` file (needs PyTorch, the
    optional extra) or a `.npz` of official names (a "state_dict/" prefix is dropped)."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.suffix == ".npz":
        with np.load(path) as data:
            return {name.removeprefix("state_dict/"): data[name] for name in data.files
                    if not name.startswith(("input", "output/"))}
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"{path}: reading .pth files needs PyTorch: pip install 'keras_mhdeblur[torch]'. "
            "Or pass load_torch_weights a dict of numpy arrays.") from error
    checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict):
        raise WeightImportError(f"{path}: expected a state_dict (a dict), got {type(checkpoint)}")
    return {name: _to_numpy(value) for name, value in clean_state_dict(checkpoint).items()
            if hasattr(value, "shape")}
