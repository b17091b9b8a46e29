"""The official training recipes' optimisers and schedules (docs/method.md, "Training recipes"),
one call away.

    model.compile(optimizer=keras_mhdeblur.official_optimizer("nafnet", total_steps=200_000))

PyTorch's AdamW decays every parameter (biases and norms too) by lr * wd, as Keras' AdamW does;
epsilon is set to PyTorch's 1e-8 (Keras defaults to 1e-7). `global_clipnorm` is the official
`clip_grad_norm_(params, 0.01)`.
"""

import keras

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
        return keras.optimizers.AdamW(weight_decay=config["weight_decay"], **common)
    return keras.optimizers.Adam(**common)


def _recipe(recipe):
    if recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}; expected one of {sorted(RECIPES)}.")
    return RECIPES[recipe]
