"""Training-time multi-head metrics, so that `fit` shows what the heads are doing.

- `MultiHeadPSNR`: mean PSNR of every output (`psnr_0`, `psnr_1`, ...) and the best-overall PSNR
  (`psnr_best`: per image the best output, an oracle) in one pass.
- `WinShare`: the share of samples each output wins (`win_0`, ...); an output stuck at 0 is a
  dead head, one near 1 a collapse.

Predictions are clamped to [0, 1] like the evaluation, but not rounded to 8 bits: that happens in
the official evaluation (`keras_mhdeblur.evaluation`), not in the training loop.
"""

import keras
from keras import ops


def _per_output_mse(y_true, y_pred):
    """(B, H, W, C), (B, K', H, W, C) or (B, H, W, C) -> (B, K') float32 MSE of clamped outputs."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    if len(y_pred.shape) == 4:
        y_pred = y_pred[:, None]
    y_pred = ops.clip(y_pred, 0.0, 1.0)
    return ops.mean(ops.square(y_pred - y_true[:, None]), axis=(2, 3, 4))


def _psnr(mse):
    return -10.0 * ops.log(ops.maximum(mse, 1e-10)) / ops.log(10.0)


def _weighted_sum(values, sample_weight):
    """Sum over the batch axis of (B, ...) values, weighted, and the total weight."""
    if sample_weight is None:
        return ops.sum(values, axis=0), ops.cast(ops.shape(values)[0], "float32")
    weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1,) + (1,) * (len(values.shape) - 1))
    return ops.sum(values * weight, axis=0), ops.sum(weight)


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class MultiHeadPSNR(keras.metrics.Metric):
    """Per-output mean PSNR and best-overall PSNR (dB), images in [0, 1].

    Result: {"psnr_best": scalar, "psnr_0": ..., "psnr_{K'-1}": ...}; with one output just
    {"psnr": scalar}.
    """

    def __init__(self, outputs, name="psnr", **kwargs):
        super().__init__(name=name, **kwargs)
        self.outputs = int(outputs)
        self.psnr_sums = self.add_variable((self.outputs,), initializer="zeros", name="psnr_sums")
        self.best_sum = self.add_variable((), initializer="zeros", name="best_sum")
        self.count = self.add_variable((), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        psnr = _psnr(_per_output_mse(y_true, y_pred))
        psnr_sums, count = _weighted_sum(psnr, sample_weight)
        best_sum, _ = _weighted_sum(ops.max(psnr, axis=1), sample_weight)
        self.psnr_sums.assign_add(psnr_sums)
        self.best_sum.assign_add(best_sum)
        self.count.assign_add(count)

    def result(self):
        count = ops.maximum(self.count, 1e-12)
        if self.outputs == 1:
            return {self.name: self.best_sum / count}
        results = {f"{self.name}_best": self.best_sum / count}
        for index in range(self.outputs):
            results[f"{self.name}_{index}"] = self.psnr_sums[index] / count
        return results

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self):
        return {**super().get_config(), "outputs": self.outputs}


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class WinShare(keras.metrics.Metric):
    """Share of samples on which each output has the lowest error. Result {"win_0": ..., ...}."""

    def __init__(self, outputs, name="win", **kwargs):
        super().__init__(name=name, **kwargs)
        self.outputs = int(outputs)
        self.wins = self.add_variable((self.outputs,), initializer="zeros", name="wins")
        self.count = self.add_variable((), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        mse = _per_output_mse(y_true, y_pred)
        winners = ops.one_hot(ops.argmin(mse, axis=1), self.outputs, dtype="float32")
        wins, count = _weighted_sum(winners, sample_weight)
        self.wins.assign_add(wins)
        self.count.assign_add(count)

    def result(self):
        count = ops.maximum(self.count, 1e-12)
        return {f"{self.name}_{index}": self.wins[index] / count for index in range(self.outputs)}

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self):
        return {**super().get_config(), "outputs": self.outputs}
