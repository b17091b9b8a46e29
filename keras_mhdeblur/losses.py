"""Winner-takes-all losses (METHOD 4).

`MinOverHeads(base)` computes, per sample and per output, the error `base(y_true, y_pred)`, keeps
the smallest over outputs and averages over the batch. The gradient of the min reaches only the
winning output (with head combination that output is (x_i + x_j) / 2, so physical heads i and j
each get half). There is no soft-min or diversity term: that is the whole method.

y_true: (B, H, W, C); y_pred: (B, K', H, W, C), or (B, H, W, C) for a single-output model.
"""

import math

import keras
from keras import ops

_PSNR_SCALE = 10.0 / math.log(10.0)


def _per_output_mean(values):
    """(B, K', H, W, C) -> (B, K'): mean over pixels and channels."""
    return ops.mean(values, axis=(2, 3, 4))


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
def psnr_error(y_true, y_pred):
    """The official PSNR loss per output: (10 / ln 10) * log(MSE + 1e-8), i.e. -PSNR (dB) for
    images in [0, 1]. log is monotonic, so min over outputs of this equals the official
    log(min MSE + 1e-8). Returns (B, K')."""
    mse = _per_output_mean(ops.square(y_pred - y_true[:, None]))
    return _PSNR_SCALE * ops.log(mse + 1e-8)


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
def l1_error(y_true, y_pred):
    """Mean absolute error per output (Restormer's multi-head L1). Returns (B, K')."""
    return _per_output_mean(ops.abs(y_pred - y_true[:, None]))


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
def charbonnier_error(y_true, y_pred, epsilon=1e-3):
    """mean sqrt(d^2 + eps^2) per output (MPRNet, eps 1e-3). Returns (B, K')."""
    diff = y_pred - y_true[:, None]
    return _per_output_mean(ops.sqrt(ops.square(diff) + epsilon * epsilon))


BASE_ERRORS = {"psnr": psnr_error, "l1": l1_error, "charbonnier": charbonnier_error}


def register_base_error(name, function):
    """Makes `MinOverHeads(name)` use `function(y_true, y_pred) -> (B, K')`."""
    BASE_ERRORS[name] = function


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class MinOverHeads(keras.losses.Loss):
    """Winner-takes-all: per sample, the error of the best output; then the batch mean.

    Args:
        base: "psnr" (the official MultiHeadPSNRLoss), "l1", "charbonnier", a name added with
            `register_base_error`, or a callable `(y_true, y_pred) -> (B, K')` per-output error.
        weight: multiplies the loss (the official `loss_weight`; 0.5 per stage for HINet).
    """

    def __init__(self, base="psnr", weight=1.0, reduction="sum_over_batch_size", name=None,
                 **kwargs):
        if isinstance(base, str) and base not in BASE_ERRORS:
            raise ValueError(
                f"Unknown base error {base!r}; expected one of {sorted(BASE_ERRORS)} or a callable "
                "(y_true, y_pred) -> (batch, outputs).")
        if not isinstance(base, str) and not callable(base):
            raise ValueError(f"base must be a name or a callable, got {base!r}")
        self.base = base
        self.weight = float(weight)
        base_name = base if isinstance(base, str) else getattr(base, "__name__", "custom")
        super().__init__(name=name or f"min_over_heads_{base_name}", reduction=reduction, **kwargs)

    def per_output_error(self, y_true, y_pred):
        """(B, K') errors; a 4-D single-output prediction counts as K' = 1."""
        y_true = ops.convert_to_tensor(y_true)
        y_pred = ops.convert_to_tensor(y_pred)
        if len(y_pred.shape) == 4:
            y_pred = y_pred[:, None]
        if len(y_pred.shape) != 5 or len(y_true.shape) != 4:
            raise ValueError(
                "MinOverHeads expects y_true (batch, H, W, C) and y_pred (batch, outputs, H, W, C);"
                f" got y_true {tuple(y_true.shape)} and y_pred {tuple(y_pred.shape)}.")
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")  # the loss is computed in float32 under mixed precision
        base = BASE_ERRORS[self.base] if isinstance(self.base, str) else self.base
        return base(y_true, y_pred)

    def call(self, y_true, y_pred):
        return self.weight * ops.min(self.per_output_error(y_true, y_pred), axis=1)

    def get_config(self):
        base = self.base if isinstance(self.base, str) else keras.saving.serialize_keras_object(
            self.base)
        return {**super().get_config(), "base": base, "weight": self.weight}

    @classmethod
    def from_config(cls, config):
        if isinstance(config.get("base"), dict):
            config = {**config, "base": keras.saving.deserialize_keras_object(config["base"])}
        return cls(**config)


def MultiHeadPSNRLoss(weight=1.0, **kwargs):
    """The official multi-head PSNR loss (NAFNet w = 1, HINet w = 0.5 per stage)."""
    return MinOverHeads("psnr", weight=weight, **kwargs)
