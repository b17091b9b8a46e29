"""Winner-takes-all losses (docs/method.md, "Losses").

`MinOverHeads(base)` computes, per sample and per output, the error `base(y_true, y_pred)`, keeps
the smallest over outputs and averages over the batch. The gradient of the min reaches only the
winning output (with head combination that output is (x_i + x_j) / 2, so physical heads i and j
each get half). There is no soft-min or diversity term: that is the whole official method.

Two options of ours, off by default, weigh the outputs instead of keeping only the winner
(docs/heads.md says why and what they measure):

- annealed winner-takes-all (`temperature=T0`, `anneal_steps=N`): per sample the weights are a
  soft-min `softmax(-error / T)` over outputs, held constant in the gradient, with T falling
  linearly from T0 to 0 over the first N optimiser steps; from then on it is exactly the
  official loss. At a high T every output is trained, so no head keeps the colour cast its
  random initialisation gave it before the winners are decided.
- relaxed winner-takes-all (`relaxation=eps`): the winner gets weight 1 - eps and each of the
  other K' - 1 outputs eps / (K' - 1); the weights sum to 1.

And one that adds to any of the three:

- anchored winner-takes-all (`anchor=w`): output 0, the first physical head, is also trained on
  every sample, with weight w, as a single-head model is. The other heads still specialise under
  the assignment, and the model keeps one output that has learnt from every pair: at the same
  budget a winner-takes-all output generalises worse to unseen photos than a single head
  (docs/presets.md, "Against a single head at the same budget").

y_true: (B, H, W, C); y_pred: (B, K', H, W, C), or (B, H, W, C) for a single-output model.
"""

import math

import keras
from keras import ops

from keras_mhdeblur.layers.conv import depthwise_conv

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


# MPRNet's edge loss (docs/method.md, "Losses"): Laplacian-pyramid detail x - G(U(D(G(x)))) with a
# 5x5 Gaussian.
_GAUSSIAN_TAPS = (0.05, 0.25, 0.4, 0.25, 0.05)


def _edge_pad(x, pad):
    """Replicate ("edge") padding of H and W; ops.pad has no such mode on every backend."""
    x = ops.concatenate([x[:, :1]] * pad + [x] + [x[:, -1:]] * pad, axis=1)
    return ops.concatenate([x[:, :, :1]] * pad + [x] + [x[:, :, -1:]] * pad, axis=2)


def _gaussian_blur(x):
    taps = ops.convert_to_tensor(_GAUSSIAN_TAPS, dtype=x.dtype)
    kernel = ops.tile(ops.outer(taps, taps)[:, :, None, None], (1, 1, x.shape[-1], 1))
    return depthwise_conv(_edge_pad(x, 2), kernel, padding="valid")


def _zero_insert(x, height, width):
    """(N, h, w, C) -> (N, height, width, C) with x at the even pixels and zeros elsewhere."""
    n, h, w, c = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2], x.shape[-1]
    x = ops.reshape(ops.stack([x, ops.zeros_like(x)], axis=2), (n, 2 * h, w, c))
    x = ops.reshape(ops.stack([x, ops.zeros_like(x)], axis=3), (n, 2 * h, 2 * w, c))
    return x[:, :height, :width]


def laplacian_detail(images):
    """(N, H, W, C) -> (N, H, W, C): x - G(4 * zero_insert(G(x)[::2, ::2])), G the 5x5
    Gaussian outer([.05, .25, .4, .25, .05]) with replicate padding 2 (MPRNet's EdgeLoss)."""
    height, width = ops.shape(images)[1], ops.shape(images)[2]
    down = _gaussian_blur(images)[:, ::2, ::2]
    return images - _gaussian_blur(4.0 * _zero_insert(down, height, width))


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
def edge_error(y_true, y_pred, epsilon=1e-3):
    """MPRNet's edge loss per output: mean sqrt(e^2 + eps^2) with e = lap(pred) - lap(gt)
    (eps 1e-3, so its floor is 1e-3 when pred == gt). Returns (B, K')."""
    # lap is linear, so lap(pred) - lap(gt) = lap(pred - gt): one pyramid instead of two.
    diff = y_pred - y_true[:, None]
    shape = ops.shape(diff)
    detail = laplacian_detail(ops.reshape(diff, (-1, shape[2], shape[3], diff.shape[-1])))
    error = ops.mean(ops.sqrt(ops.square(detail) + epsilon * epsilon), axis=(1, 2, 3))
    return ops.reshape(error, (shape[0], shape[1]))


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
def mprnet_error(y_true, y_pred):
    """MPRNet's multi-head loss per output: Charbonnier + 0.05 * edge. Returns (B, K')."""
    return charbonnier_error(y_true, y_pred) + 0.05 * edge_error(y_true, y_pred)


BASE_ERRORS = {"psnr": psnr_error, "l1": l1_error, "charbonnier": charbonnier_error,
               "edge": edge_error, "mprnet": mprnet_error}


def register_base_error(name, function):
    """Makes `MinOverHeads(name)` use `function(y_true, y_pred) -> (B, K')`."""
    BASE_ERRORS[name] = function


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class MinOverHeads(keras.losses.Loss):
    """Winner-takes-all: per sample, the error of the best output; then the batch mean.

    Args:
        base: "psnr" (the official MultiHeadPSNRLoss), "l1", "charbonnier", "edge", "mprnet"
            (MPRNet's Charbonnier + 0.05 * edge), a name added with
            `register_base_error`, or a callable `(y_true, y_pred) -> (B, K')` per-output error.
        weight: multiplies the loss (the official `loss_weight`; 0.5 per stage for HINet).
        temperature: T0 of annealed winner-takes-all, in the units of `base` (dB for "psnr");
            0 (default) is the official hard minimum.
        anneal_steps: optimiser steps over which T falls linearly from T0 to 0; None keeps T0
            for ever (a plain soft-min). The model passes the step (`step_dependent`).
        relaxation: eps of relaxed winner-takes-all (0 <= eps < 1); 0 (default) is official.
        anchor: w >= 0, the weight of output 0's own error added for every sample (anchored
            winner-takes-all); 0 (default) is official.
    """

    def __init__(self, base="psnr", weight=1.0, temperature=0.0, anneal_steps=None,
                 relaxation=0.0, anchor=0.0, reduction="sum_over_batch_size", name=None,
                 **kwargs):
        if isinstance(base, str) and base not in BASE_ERRORS:
            raise ValueError(
                f"Unknown base error {base!r}; expected one of {sorted(BASE_ERRORS)} or a callable "
                "(y_true, y_pred) -> (batch, outputs).")
        if not isinstance(base, str) and not callable(base):
            raise ValueError(f"base must be a name or a callable, got {base!r}")
        if not float(temperature) >= 0:
            raise ValueError(f"temperature must be >= 0, got {temperature!r}")
        if anneal_steps is not None and (int(anneal_steps) < 1 or float(temperature) == 0):
            raise ValueError(f"anneal_steps={anneal_steps!r} needs temperature > 0 and a "
                             "positive step count")
        if not 0 <= float(relaxation) < 1:
            raise ValueError(f"relaxation must be in [0, 1), got {relaxation!r}")
        if float(temperature) > 0 and float(relaxation) > 0:
            raise ValueError("choose one of temperature (annealed) and relaxation (relaxed), "
                             "not both")
        if not float(anchor) >= 0:
            raise ValueError(f"anchor must be >= 0, got {anchor!r}")
        self.base = base
        self.weight = float(weight)
        self.temperature = float(temperature)
        self.anneal_steps = None if anneal_steps is None else int(anneal_steps)
        self.relaxation = float(relaxation)
        self.anchor = float(anchor)
        self._step = None
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

    @property
    def is_official(self):
        """True for the official hard minimum (no temperature, relaxation or anchor)."""
        return self.temperature == 0 and self.relaxation == 0 and self.anchor == 0

    @property
    def step_dependent(self):
        """True when the loss changes with the optimiser step (an annealing schedule)."""
        return self.anneal_steps is not None

    def temperature_at(self, step):
        """T at optimiser step `step` (a scalar tensor or number)."""
        if self.anneal_steps is None:
            return ops.convert_to_tensor(self.temperature, "float32")
        progress = ops.cast(step, "float32") / float(self.anneal_steps)
        return self.temperature * ops.maximum(1.0 - progress, 0.0)

    def output_weights(self, errors, step=None):
        """(B, K') weight of each output in the loss, constant in the gradient; rows sum to 1.
        `step` is the optimiser step (needed with `anneal_steps`)."""
        outputs = errors.shape[1]
        winner = ops.one_hot(ops.argmin(errors, axis=1), outputs, dtype=errors.dtype)
        if self.relaxation > 0 and outputs > 1:
            loser = self.relaxation / (outputs - 1)
            return ops.stop_gradient(winner * (1.0 - self.relaxation - loser) + loser)
        if self.temperature == 0 or outputs == 1:  # one output: it is always the winner
            return winner
        if self.step_dependent and step is None:
            raise ValueError(f"{self.name}: anneal_steps is set, so the loss needs the optimiser "
                             "step; compile it into a keras_mhdeblur model, which passes it")
        temperature = self.temperature_at(0 if step is None else step)
        # softmax(-e / T) is computed on e - min(e), so that T -> 0 stays finite and becomes the
        # one-hot winner (exactly, once T is 0).
        shifted = errors - ops.min(errors, axis=1, keepdims=True)
        soft = ops.softmax(-shifted / ops.maximum(temperature, 1e-12), axis=1)
        return ops.stop_gradient(ops.where(temperature > 0, soft, winner))

    def __call__(self, y_true, y_pred, sample_weight=None, step=None):
        """Keras' loss call, plus `step` (the optimiser step) for an annealing schedule."""
        self._step = step
        try:
            return super().__call__(y_true, y_pred, sample_weight)
        finally:
            self._step = None

    def call(self, y_true, y_pred):
        errors = self.per_output_error(y_true, y_pred)
        if self.temperature == 0 and self.relaxation == 0:
            assigned = ops.min(errors, axis=1)
        else:
            assigned = ops.sum(self.output_weights(errors, self._step) * errors, axis=1)
        if self.anchor:
            assigned = assigned + self.anchor * errors[:, 0]
        return self.weight * assigned

    def get_config(self):
        base = self.base if isinstance(self.base, str) else keras.saving.serialize_keras_object(
            self.base)
        return {**super().get_config(), "base": base, "weight": self.weight,
                "temperature": self.temperature, "anneal_steps": self.anneal_steps,
                "relaxation": self.relaxation, "anchor": self.anchor}

    @classmethod
    def from_config(cls, config):
        if isinstance(config.get("base"), dict):
            config = {**config, "base": keras.saving.deserialize_keras_object(config["base"])}
        return cls(**config)


def MultiHeadPSNRLoss(weight=1.0, **kwargs):
    """The official multi-head PSNR loss (NAFNet w = 1, HINet w = 0.5 per stage)."""
    return MinOverHeads("psnr", weight=weight, **kwargs)


def with_assignment(loss, temperature=0.0, anneal_steps=None, relaxation=0.0, anchor=0.0):
    """`loss` (a `MinOverHeads`: a backbone's `default_loss()`) with the same base error and
    weight and another winner assignment or anchor (see the module doc)."""
    if not isinstance(loss, MinOverHeads):
        raise ValueError(f"winner assignment options need a MinOverHeads loss, got {loss!r}")
    return MinOverHeads(loss.base, weight=loss.weight, temperature=temperature,
                        anneal_steps=anneal_steps, relaxation=relaxation, anchor=anchor)
