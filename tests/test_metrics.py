import numpy as np

from keras_mhdeblur.metrics import MultiHeadPSNR, WinShare


def test_psnr_per_output_and_best_overall():
    rng = np.random.default_rng(1)
    y_true = rng.uniform(0.2, 0.8, size=(4, 8, 8, 3)).astype("float32")
    offsets = np.array([[0.1, 0.01, 0.2], [0.01, 0.1, 0.2], [0.2, 0.1, 0.01], [0.1, 0.2, 0.01]],
                       "float32")
    y_pred = y_true[:, None] + offsets[:, :, None, None, None]
    metric = MultiHeadPSNR(3)
    metric.update_state(y_true, y_pred)
    result = {k: float(v) for k, v in metric.result().items()}
    psnr = -10 * np.log10(offsets ** 2)
    for k in range(3):
        np.testing.assert_allclose(result[f"psnr_{k}"], psnr[:, k].mean(), rtol=1e-4)
    np.testing.assert_allclose(result["psnr_best"], 40.0, rtol=1e-4)

    wins = WinShare(3)
    wins.update_state(y_true, y_pred)
    shares = {k: float(v) for k, v in wins.result().items()}
    assert shares == {"win_0": 0.25, "win_1": 0.25, "win_2": 0.5}


def test_win_share_counts_per_sample():
    y_true = np.zeros((2, 4, 4, 3), "float32")
    y_pred = np.stack([np.full((4, 4, 3), 0.1), np.full((4, 4, 3), 0.3)])[None].repeat(2, 0)
    y_pred[1] = y_pred[1, ::-1]
    metric = WinShare(2)
    metric.update_state(y_true, y_pred.astype("float32"))
    assert {k: float(v) for k, v in metric.result().items()} == {"win_0": 0.5, "win_1": 0.5}


def test_single_output_psnr_and_clamping():
    y_true = np.full((1, 4, 4, 3), 1.0, "float32")
    y_pred = np.full((1, 4, 4, 3), 1.5, "float32")  # clamped to 1 -> perfect
    metric = MultiHeadPSNR(1)
    metric.update_state(y_true, y_pred)
    assert float(metric.result()["psnr"]) >= 99.0
