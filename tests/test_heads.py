import numpy as np
import pytest

from keras_mhdeblur.heads import (MultiHeadOutput, combination_matrix, num_outputs, output_pairs,
                                  physical_head_outputs)


def test_output_order_is_the_official_one():
    assert output_pairs(4, True) == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (3, 0),
                                     (3, 1), (3, 2), (3, 3)]
    assert physical_head_outputs(4, True) == [0, 2, 5, 9]
    assert num_outputs(4, True) == 10 and num_outputs(4, False) == 4
    assert num_outputs(1, True) == 1
    for i in range(4):
        for j in range(i + 1):
            assert output_pairs(4, True)[i * (i + 1) // 2 + j] == (i, j)


def test_combination_matrix_rows_average_two_heads():
    matrix = combination_matrix(3, True)
    np.testing.assert_array_equal(matrix.sum(axis=1), np.ones(6))
    np.testing.assert_array_equal(matrix[1], [0.5, 0.5, 0.0])
    np.testing.assert_array_equal(matrix[2], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(combination_matrix(3, False), np.eye(3))


@pytest.mark.parametrize("combine", [True, False])
def test_multi_head_output_values(combine):
    rng = np.random.default_rng(0)
    heads = 3
    residual = rng.normal(size=(2, 5, 7, 3 * heads)).astype("float32")
    image = rng.uniform(size=(2, 5, 7, 3)).astype("float32")
    out = np.asarray(MultiHeadOutput(heads, combine)(residual, image))
    assert out.shape == (2, num_outputs(heads, combine), 5, 7, 3)
    # head k is channels 3k..3k+2 (head-major, as the official view(B, K, 3, H, W))
    physical = [residual[..., 3 * k:3 * k + 3] for k in range(heads)]
    for index, (i, j) in enumerate(output_pairs(heads, combine)):
        expected = (physical[i] + physical[j]) / 2 + image
        np.testing.assert_allclose(out[:, index], expected, atol=1e-6)


def test_heads_must_be_positive():
    with pytest.raises(ValueError, match="heads"):
        MultiHeadOutput(0)
