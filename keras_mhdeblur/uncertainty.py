"""Does the heads' disagreement say where the result is wrong? Scores for the spread map.

The contact sheet's "spread across heads" (`inference.spread_map`: per pixel, the standard
deviation across outputs) is offered as an uncertainty map. Two standard checks of such a map
against the per-pixel error of the image a user ships:

- rank correlation (Spearman) between spread and error over the pixels of an image;
- sparsification error, as used for optical-flow and depth uncertainty (Ilg et al. 2018):
  remove the pixels the map is most uncertain about, 0%, 5%, ... of them, and follow the mean
  error of the rest; the oracle removes the truly worst pixels first. The area between the two
  curves (AUSE) is 0 for a perfect map; a map no better than chance gives the area between the
  random-order curve (flat) and the oracle.

    report = spread_error_report(outputs, shipped, sharp)    # per image
"""

import numpy as np

FRACTIONS = np.linspace(0.0, 0.95, 20)


def _area(values, fractions=FRACTIONS):
    """Trapezoidal area under a curve sampled at `fractions` (numpy 1.x has no trapezoid)."""
    values = np.asarray(values, np.float64)
    return float(((values[1:] + values[:-1]) / 2 * np.diff(fractions)).sum())


def _ranks(values):
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.arange(len(values))
    # ties share their mean rank
    unique, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    if len(unique) < len(values):
        sums = np.bincount(inverse, weights=ranks)
        ranks = (sums / counts)[inverse]
    return ranks


def spearman(a, b):
    """Spearman's rank correlation of two flat arrays (ties get mean ranks)."""
    a, b = _ranks(np.ravel(a)), _ranks(np.ravel(b))
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def sparsification_curve(error, order, fractions=FRACTIONS):
    """Mean error of the pixels left after removing the first `fraction` of `order`."""
    error = np.ravel(error)[order]
    total = len(error)
    suffix = np.cumsum(error[::-1])[::-1]  # suffix[i] = sum of error[i:]
    curve = []
    for fraction in fractions:
        start = min(int(round(fraction * total)), total - 1)
        curve.append(suffix[start] / (total - start))
    return np.array(curve)


def ause(uncertainty, error, fractions=FRACTIONS):
    """(AUSE, curve of the map, oracle curve), curves normalised by the mean error, so images of
    different difficulty weigh the same."""
    uncertainty, error = np.ravel(uncertainty), np.ravel(error)
    scale = max(float(error.mean()), 1e-12)
    by_map = sparsification_curve(error, np.argsort(-uncertainty, kind="stable"), fractions)
    oracle = sparsification_curve(error, np.argsort(-error, kind="stable"), fractions)
    by_map, oracle = by_map / scale, oracle / scale
    return _area(by_map - oracle, fractions), by_map, oracle


def spread_error_report(outputs, shipped, sharp):
    """Scores the spread of `outputs` (K', H, W, 3) as a map of the error of `shipped`
    (H, W, 3) against `sharp` (H, W, 3). Returns {"spearman", "ause", "ause_random"}: the
    random-order AUSE of the same image is the reference a useful map must beat."""
    from keras_mhdeblur.inference import spread_map

    spread = spread_map(outputs)
    error = np.abs(np.clip(shipped, 0, 1) - sharp).mean(axis=-1)
    value, _, oracle = ause(spread, error)
    flat = np.ones(len(FRACTIONS))  # random removal leaves the mean error unchanged
    return {"spearman": spearman(spread, error), "ause": value,
            "ause_random": _area(flat - oracle)}
