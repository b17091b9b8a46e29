"""The official metric code (docs/method.md, "Metrics") against hand-computed values."""

import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from keras_mhdeblur.evaluation import (MultiHeadEvaluation, evaluate_inputs, format_summary,
                                       psnr_uint8, ssim3d_uint8, to_uint8)


def _image(seed, shape=(12, 14, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def test_to_uint8_clamps_and_rounds_like_tensor2img():
    values = np.array([-0.2, 0.0, 0.5 / 255, 1.49 / 255, 1.51 / 255, 0.999, 1.0, 1.7])
    np.testing.assert_array_equal(to_uint8(values), [0, 0, 0, 1, 2, 255, 255, 255])


def test_psnr_of_a_known_mse():
    reference = np.full((4, 5, 3), 100, np.uint8)
    image = reference.copy()
    image[0, 0, 0] += 60  # one value off by 60: MSE = 3600 / 60 = 60
    np.testing.assert_allclose(psnr_uint8(image, reference), 20 * math.log10(255 / math.sqrt(60)))
    assert psnr_uint8(reference + 10, reference) == pytest.approx(20 * math.log10(25.5))
    assert psnr_uint8(reference, reference) == math.inf


def _ssim3d_brute_force(x, y):
    """The 11x11x11 Gaussian window applied directly (not separably) on the edge-padded volume."""
    offsets = np.arange(11) - 5.0
    g = np.exp(-offsets ** 2 / (2 * 1.5 ** 2))
    g /= g.sum()
    kernel = g[:, None, None] * g[None, :, None] * g[None, None, :]

    def filtered(volume):
        windows = sliding_window_view(np.pad(volume, 5, mode="edge"), (11, 11, 11))
        return np.einsum("hwcijk,ijk->hwc", windows, kernel)

    x, y = x.astype(np.float64), y.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = filtered(x), filtered(y)
    vx, vy, cxy = filtered(x * x) - mx ** 2, filtered(y * y) - my ** 2, filtered(x * y) - mx * my
    ssim_map = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return ssim_map.mean()


def test_ssim3d_identical_is_one_different_is_below_one_and_symmetric():
    a, b = _image(0), _image(1)
    assert ssim3d_uint8(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim3d_uint8(a, b) < 0.5
    assert ssim3d_uint8(a, b) == pytest.approx(ssim3d_uint8(b, a), abs=1e-12)
    slightly = np.clip(a.astype(int) + 3, 0, 255).astype(np.uint8)
    assert ssim3d_uint8(a, b) < ssim3d_uint8(a, slightly) < 1.0


def test_ssim3d_matches_the_direct_3d_window():
    a = _image(2)
    b = np.clip(a.astype(int) + np.random.default_rng(3).integers(-40, 41, a.shape), 0, 255)
    b = b.astype(np.uint8)
    assert ssim3d_uint8(a, b) == pytest.approx(_ssim3d_brute_force(a, b), abs=1e-10)


def test_best_worst_and_single_head_on_a_crafted_example():
    # Three outputs, two images; reference 100 everywhere. An output off by d everywhere has
    # PSNR 20 log10(255 / d).
    reference = np.full((8, 8, 3), 100 / 255, np.float32)

    def outputs(*offsets):
        return np.stack([reference + d / 255 for d in offsets])

    def psnr(d):
        return 20 * math.log10(255 / d)

    evaluation = MultiHeadEvaluation(compute_ssim=False)
    evaluation.add(outputs(1, 2, 4), reference, "a")  # output 0 wins image a
    evaluation.add(outputs(8, 2, 16), reference, "b")  # output 1 wins image b
    summary = evaluation.summary()
    assert summary["num_images"] == 2 and summary["num_outputs"] == 3
    per_output = [(psnr(1) + psnr(8)) / 2, psnr(2), (psnr(4) + psnr(16)) / 2]
    np.testing.assert_allclose(summary["per_output_psnr"], per_output)
    assert summary["best_overall_psnr"] == pytest.approx((psnr(1) + psnr(2)) / 2)
    assert summary["worst_psnr"] == pytest.approx((psnr(4) + psnr(16)) / 2)
    # Output 0 averages 39.1 dB, output 1 a steady 42.1 dB: the best single head is 1, although
    # output 0 holds the single best image.
    assert summary["best_single_head"] == 1
    assert summary["best_single_head_psnr"] == pytest.approx(psnr(2))
    assert summary["wins_psnr"] == [1, 1, 0]
    assert "per_output_ssim" not in summary


def test_best_overall_ssim_picks_its_own_head():
    reference = np.random.default_rng(4).random((16, 16, 3)).astype(np.float32)
    noisy = np.clip(reference + np.random.default_rng(5).normal(0, 0.05, reference.shape), 0, 1)
    evaluation = MultiHeadEvaluation()
    evaluation.add(np.stack([reference, noisy]), reference)
    summary = evaluation.summary()
    assert summary["per_output_ssim"][0] == pytest.approx(1.0)
    assert summary["best_overall_ssim"] == pytest.approx(1.0)
    assert summary["worst_ssim"] == pytest.approx(summary["per_output_ssim"][1])


def test_inputs_and_table():
    reference = np.full((6, 6, 3), 0.5, np.float32)
    pairs = [("x", reference + 2 / 255, reference)]
    summary = evaluate_inputs(pairs).summary()
    assert summary["per_output_psnr"][0] == pytest.approx(20 * math.log10(255 / 2))
    table = format_summary(summary, "inputs")
    assert table.splitlines()[0] == "inputs" and "(1 image;" in table


def test_single_image_single_output_and_errors():
    evaluation = MultiHeadEvaluation(compute_ssim=False)
    with pytest.raises(ValueError, match="No images"):
        evaluation.summary()
    with pytest.raises(ValueError, match="differ in size"):
        evaluation.add(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)), "odd")
