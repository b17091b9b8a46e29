"""Model surgery: the same network rebuilt with another construction, its weights copied.

For arguments that change how a model computes but not which weights it has: TLC local pooling
for inference (`with_tlc`), unscanned blocks for export (`rebuilt(model, scan_blocks=False)`).
And one that adds weights but keeps what the network computes: more NAFBlocks per level that
start as the identity (`deepened`), so that a trained network can grow deeper and train on.
"""

import numpy as np
from keras import ops

# The constructor arguments that count blocks per level, and the ones that may grow.
BLOCK_COUNTS = ("enc_blocks", "middle_blocks", "dec_blocks")


def rebuilt(model, **changes):
    """The same network built again with some constructor arguments changed (ones that do not
    change the weights, like `tlc_train_size` or `scan_blocks`), with the weights copied."""
    config = model.get_config()
    unknown = sorted(set(changes) - set(config))
    if unknown:
        raise ValueError(f"{type(model).__name__} has no argument(s) {unknown}")
    converted = type(model).from_config({**config, **changes})
    converted.set_weights(model.get_weights())
    return converted


def with_tlc(model, train_size):
    """The same network with TLC local pooling (docs/method.md, "TLC") for a `train_size` (h, w)
    crop, sharing no state with `model` (weights are copied). Only backbones with a global pool
    (NAFNet) take `tlc_train_size`."""
    if "tlc_train_size" not in model.get_config():
        raise ValueError(f"{type(model).__name__} has no global pooling, so TLC does not apply")
    return rebuilt(model, tlc_train_size=tuple(int(s) for s in train_size))


def is_deeper(counts, than):
    """True when block counts `counts` (an int or a sequence, one per level) have as many levels
    as `than` and at least as many blocks in each."""
    counts = [int(counts)] if isinstance(counts, (int, float)) else [int(n) for n in counts]
    than = [int(than)] if isinstance(than, (int, float)) else [int(n) for n in than]
    return len(counts) == len(than) and all(n >= m for n, m in zip(counts, than))


def deepened(model, **counts):
    """The same network with more blocks per level (`enc_blocks`, `middle_blocks`,
    `dec_blocks`), computing exactly what `model` computes: each level keeps its trained blocks
    first, and the blocks added after them start as the identity. Only NAFBlock stacks may grow,
    because a NAFBlock adds its branches through zero-initialised scales (beta, gamma), so a new
    one passes its input through until training moves those scales.
    Why: docs/presets.md, "A deeper network grown from the preset, tried and not shipped"."""
    from keras_mhdeblur.models.nafnet import NAFBlockStack

    config = model.get_config()
    problems = []
    for name, value in counts.items():
        if name not in BLOCK_COUNTS or name not in config:
            problems.append(f"{name} (it counts no blocks of {type(model).__name__}; "
                            f"{type(model).__name__} grows {', '.join(BLOCK_COUNTS)} only "
                            "where it has them)")
        elif not is_deeper(value, config[name]):
            problems.append(f"{name}={list(value) if not isinstance(value, int) else value} "
                            f"(it has {config[name]}: as many levels, and no fewer blocks in "
                            "any, are needed)")
    if problems:
        raise ValueError(f"cannot deepen {type(model).__name__}: {'; '.join(problems)}")
    grown = type(model).from_config({**config, **counts})  # built: weights exist
    stacked = {id(weight) for layer in grown._flatten_layers() if isinstance(layer, NAFBlockStack)
               for weight in layer.weights}
    if len(grown.weights) != len(model.weights):  # (a level without blocks keeps an empty stack)
        raise ValueError(f"cannot deepen {type(model).__name__}: the deeper network has "
                         f"{len(grown.weights)} weight tensors, {len(model.weights)} expected")
    for target, source in zip(grown.weights, model.weights):
        value = ops.convert_to_numpy(source)
        if tuple(target.shape) != value.shape:
            if id(target) not in stacked or tuple(target.shape[1:]) != value.shape[1:]:
                raise ValueError(f"cannot deepen {type(model).__name__}: weight {source.path} "
                                 f"has shape {value.shape}, the deeper network "
                                 f"{tuple(target.shape)}")
            # The trained blocks first; the rest keep their fresh (identity) initialisation.
            value = np.concatenate([value, ops.convert_to_numpy(target)[len(value):]])
        target.assign(value)
    return grown
