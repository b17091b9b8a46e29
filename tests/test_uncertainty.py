"""Scores of the spread map as an uncertainty map: rank correlation and sparsification error."""

import numpy as np

from keras_mhdeblur.uncertainty import ause, spearman, sparsification_curve, spread_error_report


def test_spearman_on_monotonic_reversed_and_tied_data():
    x = np.arange(10.0)
    assert spearman(x, x ** 3) == 1.0
    np.testing.assert_allclose(spearman(x, -x), -1.0)
    # ties share ranks: scipy.stats.spearmanr gives 0.9486833 for this pair
    np.testing.assert_allclose(spearman([1, 2, 2, 3], [1, 2, 3, 4]), 0.9486833, rtol=1e-6)


def test_perfect_map_has_zero_ause_and_a_reversed_map_a_large_one():
    error = np.random.default_rng(0).uniform(size=1000)
    perfect, curve, oracle = ause(error, error)
    assert perfect == 0.0 and np.allclose(curve, oracle)
    np.testing.assert_allclose(oracle[0], 1.0)
    assert np.all(np.diff(oracle) <= 1e-12)  # the worst go first
    reversed_map, _, _ = ause(-error, error)
    assert reversed_map > 0.5


def test_sparsification_curve_removes_the_first_pixels_of_the_order():
    error = np.array([4.0, 3.0, 2.0, 1.0])
    curve = sparsification_curve(error, np.arange(4), fractions=np.array([0.0, 0.5, 0.75]))
    np.testing.assert_allclose(curve, [2.5, 1.5, 1.0])


def test_report_of_outputs_that_disagree_where_the_result_is_wrong():
    rng = np.random.default_rng(0)
    sharp = rng.uniform(size=(32, 32, 3)).astype("float32")
    wrong = np.zeros((32, 32, 1), np.float32)
    wrong[8:16, 8:24] = 1.0
    shipped = np.clip(sharp + 0.3 * wrong, 0, 1)
    outputs = np.stack([sharp + 0.3 * wrong * sign for sign in (1, -1, 0.5)])
    report = spread_error_report(outputs, shipped, sharp)
    assert report["spearman"] > 0.5
    assert report["ause"] < 0.2 * report["ause_random"]
