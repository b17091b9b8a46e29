"""The official training recipes' optimisers and schedules (docs/method.md, "Training recipes"),
one call away.

    model.compile(optimizer=keras_mhdeblur.official_optimizer("nafnet", total_steps=200_000))

PyTorch's AdamW decays every parameter (biases and norms too) by lr * wd, as Keras' AdamW does;
epsilon is set to PyTorch's 1e-8 (Keras defaults to 1e-7). `global_clipnorm` is the official
`clip_grad_norm_(params, 0.01)`.

The recipes use this module's `Adam` and `AdamW`: Keras' optimisers with the same variables,
config and arithmetic, whose TensorFlow step is built once per step instead of once per
variable (docs/speed.md, "The first training step: from 29 s to 7-10 s").
"""

import keras
from keras import ops

# name: optimizer class, peak lr, betas, weight decay, final lr, global clip norm,
#       fraction of steps held constant (Restormer) or warmed up (MPRNet) before the cosine.
RECIPES = {
    "nafnet": dict(optimizer="adamw", learning_rate=1e-3, betas=(0.9, 0.9), weight_decay=1e-3,
                   final_learning_rate=1e-7, clipnorm=0.01),
    "hinet": dict(optimizer="adam", learning_rate=2e-4, betas=(0.9, 0.99), weight_decay=0.0,
                  final_learning_rate=1e-7, clipnorm=0.01),
    "restormer": dict(optimizer="adamw", learning_rate=3e-4, betas=(0.9, 0.999), weight_decay=1e-4,
                      final_learning_rate=1e-6, clipnorm=0.01, constant_fraction=92 / 300),
    "mprnet": dict(optimizer="adam", learning_rate=2e-4, betas=(0.9, 0.999), weight_decay=0.0,
                   final_learning_rate=1e-6, clipnorm=None, warmup_fraction=3 / 3000),
}


def official_schedule(recipe="nafnet", total_steps=None, peak_learning_rate=None):
    """The recipe's learning rate: a float when `total_steps` is None, else a Keras schedule
    (cosine to the final lr over `total_steps`, after Restormer's constant phase or MPRNet's
    linear warm-up). `peak_learning_rate` replaces the recipe's peak, keeping the shape."""
    config = _recipe(recipe)
    peak = config["learning_rate"] if peak_learning_rate is None else float(peak_learning_rate)
    if total_steps is None:
        return peak
    total_steps = int(total_steps)
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    alpha = config["final_learning_rate"] / peak
    if "constant_fraction" in config:
        hold = int(total_steps * config["constant_fraction"])
        # A "warm-up" from peak to peak is a constant phase.
        return keras.optimizers.schedules.CosineDecay(
            peak, max(total_steps - hold, 1), alpha=alpha, warmup_target=peak, warmup_steps=hold)
    if "warmup_fraction" in config:
        warmup = max(int(total_steps * config["warmup_fraction"]), 1)
        return keras.optimizers.schedules.CosineDecay(
            0.0, max(total_steps - warmup, 1), alpha=alpha, warmup_target=peak,
            warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(peak, total_steps, alpha=alpha)


def official_optimizer(recipe="nafnet", total_steps=None, learning_rate=None):
    """The recipe's optimiser (see `RECIPES`), with its schedule when `total_steps` is given.

    Args:
        recipe: "nafnet", "hinet", "restormer" or "mprnet".
        total_steps: training iterations the schedule spans (200k for NAFNet-w32 on GoPro).
        learning_rate: overrides the schedule (a float or a Keras schedule).
    """
    config = _recipe(recipe)
    lr = learning_rate if learning_rate is not None else official_schedule(recipe, total_steps)
    beta_1, beta_2 = config["betas"]
    common = dict(learning_rate=lr, beta_1=beta_1, beta_2=beta_2, epsilon=1e-8,
                  global_clipnorm=config["clipnorm"])
    if config["optimizer"] == "adamw":
        return AdamW(weight_decay=config["weight_decay"], **common)
    return Adam(**common)


def _recipe(recipe):
    if recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}; expected one of {sorted(RECIPES)}.")
    return RECIPES[recipe]


class _OncePerStep:
    """Adam's step on TensorFlow with its per-step scalars made once, and each variable's update
    as one fused kernel.

    Keras builds the learning-rate schedule and the bias corrections again for every variable
    (AdamW's decay reads the schedule per variable too), and the update as ten elementwise
    passes: NAFNet-w32's 178 variables give an optimiser graph of 11 000 nodes, half of the
    training step's, which TensorFlow traces and Grappler optimises before the first step.
    Here the scalars are computed once per step and `ResourceApplyAdam` updates m, v and the
    variable in one pass over memory: the same formula as Keras' (its constants 1 - beta are
    formed in the variable's dtype, so the update may differ from Keras' in the last bit), the
    same variables and config, so checkpoints move freely between the two. Other backends, and
    AMSGrad or sparse gradients, take Keras' own path.
    """

    def apply(self, grads, trainable_variables=None):
        # Set past TensorFlow's attribute tracking: a cache of tensors is no checkpoint state.
        object.__setattr__(self, "_step_constants",
                           {} if keras.backend.backend() == "tensorflow" else None)
        try:
            return super().apply(grads, trainable_variables)
        finally:
            object.__setattr__(self, "_step_constants", None)

    def _cached(self, key, make):
        cache = getattr(self, "_step_constants", None)
        if cache is None:
            return make()
        if key not in cache:
            cache[key] = make()
        return cache[key]

    def _get_current_learning_rate(self):
        return self._cached("learning_rate", super()._get_current_learning_rate)

    def update_step(self, gradient, variable, learning_rate):
        # No cache means another backend, where TensorFlow may not even be installed.
        if getattr(self, "_step_constants", None) is None or self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        dtype = keras.backend.standardize_dtype(variable.dtype)
        if (isinstance(gradient, tf.IndexedSlices)
                or dtype not in ("float16", "bfloat16", "float32", "float64")):
            return super().update_step(gradient, variable, learning_rate)
        dtype = tf.as_dtype(dtype)

        def constants():
            step = ops.cast(self.iterations + 1, dtype)
            return dict(beta1_power=ops.power(ops.cast(self.beta_1, dtype), step),
                        beta2_power=ops.power(ops.cast(self.beta_2, dtype), step),
                        lr=ops.cast(learning_rate, dtype), beta1=ops.cast(self.beta_1, dtype),
                        beta2=ops.cast(self.beta_2, dtype), epsilon=ops.cast(self.epsilon, dtype))

        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]), grad=ops.cast(gradient, dtype),
            **self._cached(("adam", dtype.name), constants))


def _handle(variable):
    # Keras variables wrap the TensorFlow variable the kernel updates in place.
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class Adam(_OncePerStep, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with a smaller, faster TensorFlow step (see `_OncePerStep`)."""


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class AdamW(_OncePerStep, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with a smaller, faster TensorFlow step (see `_OncePerStep`)."""
