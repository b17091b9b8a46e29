"""Model surgery: the same network rebuilt with another construction, its weights copied.

For arguments that change how a model computes but not which weights it has: TLC local pooling
for inference (`with_tlc`), unscanned blocks for export (`rebuilt(model, scan_blocks=False)`).
"""


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
