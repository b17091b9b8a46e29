"""Evaluation exactly as the official code computes it (docs/method.md, "Metrics").

Outputs are clamped to [0, 1], scaled to 255 and rounded to 8 bits; PSNR is over all pixels and
the three channels; SSIM is NAFNet's "ssim3d": the SSIM map under an 11x11x11 Gaussian
(sigma 1.5) over the (H, W, C) volume with replicate padding, averaged. It is not the per-channel
MATLAB/skimage SSIM: numbers are comparable with the official repos, not with papers that used
MATLAB.

Reading results: per output (the mean over images of each output), best overall (per image the
best output, then the mean: an oracle), worst (per image the worst), and best single head (the one
output index with the best mean; choose it on a validation split, then report it on test).
"""

import math

import numpy as np

from keras_mhdeblur.data.io import to_uint8  # clamp, x255, round: the official tensor2img


def psnr(image, reference, peak=1.0):
    """PSNR (dB) of two arrays of the same shape, in float64: 20 log10(peak / RMSE); inf if
    equal. `peak` is the largest value: 1.0 for images in [0, 1], 255.0 for 8-bit levels."""
    mse = np.mean((np.asarray(image, np.float64) - np.asarray(reference, np.float64)) ** 2)
    return math.inf if mse == 0 else 20.0 * math.log10(peak / math.sqrt(mse))


def psnr_uint8(image, reference):
    """PSNR (dB) of two uint8 images (any shape), float64, 20 log10(255 / RMSE); inf if equal."""
    return psnr(image, reference, peak=255.0)


def _gaussian_1d(size=11, sigma=1.5):
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    weights = np.exp(-(offsets ** 2) / (2 * sigma * sigma))
    return weights / weights.sum()


def _gaussian_filter_3d(volume, weights):
    """Separable 'same' Gaussian filter over every axis of (H, W, C), replicate padding."""
    radius = len(weights) // 2
    for axis in range(volume.ndim):
        pad = [(0, 0)] * volume.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(volume, pad, mode="edge")
        length = volume.shape[axis]
        filtered = np.zeros_like(volume)
        for offset, weight in enumerate(weights):
            filtered += weight * np.take(padded, np.arange(offset, offset + length), axis=axis)
        volume = filtered
    return volume


def ssim3d_uint8(image, reference):
    """NAFNet's 3-D SSIM of two uint8 (H, W, 3) images."""
    if image.shape != reference.shape or image.ndim != 3:
        raise ValueError(f"ssim3d needs two (H, W, C) images of one shape, got {image.shape} and "
                         f"{reference.shape}")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = image.astype(np.float64), reference.astype(np.float64)
    weights = _gaussian_1d()
    mu_x, mu_y = _gaussian_filter_3d(x, weights), _gaussian_filter_3d(y, weights)
    sigma_x = _gaussian_filter_3d(x * x, weights) - mu_x ** 2
    sigma_y = _gaussian_filter_3d(y * y, weights) - mu_y ** 2
    sigma_xy = _gaussian_filter_3d(x * y, weights) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / (
        (mu_x ** 2 + mu_y ** 2 + c1) * (sigma_x + sigma_y + c2))
    return float(ssim_map.mean())


class MultiHeadEvaluation:
    """Accumulates per-image, per-output PSNR/SSIM and reads them as the paper does.

        evaluation = MultiHeadEvaluation(compute_ssim=True)
        for name, outputs, sharp in ...:        # outputs (K', H, W, 3) or (H, W, 3) in [0, 1]
            evaluation.add(outputs, sharp, name)
        evaluation.summary()                    # dict, keys as in `summary`
    """

    def __init__(self, compute_ssim=True):
        self.compute_ssim = compute_ssim
        self.names, self.psnr, self.ssim = [], [], []
        self.auto_psnr, self.auto_ssim = [], []

    def add_auto(self, output, reference):
        """Scores the image's "auto" output (keras_mhdeblur.scoring), a row of its own."""
        reference, restored = to_uint8(reference), to_uint8(output)
        self.auto_psnr.append(psnr_uint8(restored, reference))
        if self.compute_ssim:
            self.auto_ssim.append(ssim3d_uint8(restored, reference))

    def add(self, outputs, reference, name=None):
        outputs = np.asarray(outputs)
        if outputs.ndim == 3:
            outputs = outputs[None]
        reference = to_uint8(reference)
        if outputs.shape[1:] != reference.shape:
            raise ValueError(f"{name or 'image'}: outputs {outputs.shape[1:]} and reference "
                             f"{reference.shape} differ in size")
        restored = [to_uint8(output) for output in outputs]
        self.psnr.append([psnr_uint8(image, reference) for image in restored])
        if self.compute_ssim:
            self.ssim.append([ssim3d_uint8(image, reference) for image in restored])
        self.names.append(name)
        return self.psnr[-1], (self.ssim[-1] if self.compute_ssim else None)

    def summary(self):
        """per_output_psnr / per_output_ssim: mean over images of each output; best_overall_*:
        mean of the per-image max (an oracle); worst_psnr: mean of the per-image min;
        best_single_head: the output with the best mean PSNR, and its PSNR."""
        if not self.psnr:
            raise ValueError("No images were evaluated")
        psnr = np.array(self.psnr)
        per_output = psnr.mean(axis=0)
        result = {
            "num_images": len(self.psnr),
            "num_outputs": int(psnr.shape[1]),
            "per_output_psnr": per_output.tolist(),
            "best_overall_psnr": float(psnr.max(axis=1).mean()),
            "worst_psnr": float(psnr.min(axis=1).mean()),
            "best_single_head": int(per_output.argmax()),
            "best_single_head_psnr": float(per_output.max()),
            "wins_psnr": np.bincount(psnr.argmax(axis=1), minlength=psnr.shape[1]).tolist(),
        }
        if self.auto_psnr:
            result["auto_psnr"] = float(np.mean(self.auto_psnr))
            if self.compute_ssim:
                result["auto_ssim"] = float(np.mean(self.auto_ssim))
        if self.compute_ssim:
            ssim = np.array(self.ssim)
            result.update(per_output_ssim=ssim.mean(axis=0).tolist(),
                          best_overall_ssim=float(ssim.max(axis=1).mean()),
                          worst_ssim=float(ssim.min(axis=1).mean()))
        return result


def evaluate_model(model, pairs, *, tile=None, overlap=32, self_ensemble=1, compute_ssim=True,
                   total=None, progress=False, each=None):
    """Runs `model` over (name, blurry, sharp) pairs and scores every output officially.

    Args:
        model: a keras_mhdeblur model (all K' outputs are scored; a single-head model has one;
            a model with a scoring branch also gets its "auto" output scored, `auto_psnr`).
        pairs: iterable of (name, blurry, sharp) with float (H, W, 3) images in [0, 1], e.g.
            `keras_mhdeblur.data.iter_evaluation_pairs(find_pairs(root))`.
        tile, overlap: tiled inference for large images (see `inference.restore`); None for
            whole images.
        self_ensemble: 1, 2, 4 or 8 flips and transposes averaged (`inference.restore`).
        compute_ssim: also compute the (slow) 3-D SSIM.
        total: number of pairs, for the progress bar (default `len(pairs)` when it has one).
        progress: show the running mean of the best-overall PSNR (the summary's
            `best_overall_psnr` once done): a bar on a terminal, a line every 10 s in a log.
        each: called as `each(name, blurry, sharp, outputs)` for every pair, with the outputs
            `restore` gave (the auto output last for a scoring branch), so that a caller can
            measure more without running the model again.

    Returns:
        the filled `MultiHeadEvaluation`; `.summary()` reads it.
    """
    from keras_mhdeblur.inference import restore
    from keras_mhdeblur.utils.progress import RunningMean

    if total is None and hasattr(pairs, "__len__"):
        total = len(pairs)
    bar = RunningMean(total, "best_psnr", label="evaluated") if progress else None
    evaluation = MultiHeadEvaluation(compute_ssim)
    with_auto = model.output_scorer is not None
    for name, blurry, sharp in pairs:
        # The network's outputs as they are, grey pairs too: the official protocol scores those.
        outputs = restore(model, blurry, which="all+auto" if with_auto else "all", tile=tile,
                          overlap=overlap, self_ensemble=self_ensemble, keep_grey=False)
        if each is not None:
            each(name, blurry, sharp, outputs)
        if with_auto:
            evaluation.add_auto(outputs[-1], sharp)
            outputs = outputs[:-1]
        psnr, _ = evaluation.add(outputs, sharp, name)
        if bar is not None:
            bar.add(max(psnr))
    return evaluation


def select_best_head(model, pairs, *, tile=None, overlap=32, self_ensemble=1, total=None,
                     progress=False):
    """Chooses the best single head: the output with the best mean PSNR over validation `pairs`
    (docs/method.md, "Metrics"), and stores it as `model.selected_output` (save the model to keep
    it).

    Args: as `evaluate_model` (SSIM is not computed: the choice is by PSNR).

    Returns:
        the evaluation summary; `summary["best_single_head"]` is the chosen index.
    """
    if model.single_output or model.num_outputs == 1:
        raise ValueError(f"{model.name} has a single output; there is no head to select")
    summary = evaluate_model(model, pairs, tile=tile, overlap=overlap,
                             self_ensemble=self_ensemble, compute_ssim=False, total=total,
                             progress=progress).summary()
    model.selected_output = summary["best_single_head"]
    return summary


def evaluate_inputs(pairs, compute_ssim=True):
    """Scores the blurry inputs themselves against the sharp images: the number every restored
    output has to beat. pairs: iterable of (name, blurry, sharp). Returns `MultiHeadEvaluation`."""
    evaluation = MultiHeadEvaluation(compute_ssim)
    for name, blurry, sharp in pairs:
        evaluation.add(blurry, sharp, name)
    return evaluation


def format_summary(summary, title=None):
    """A plain-text table of a `MultiHeadEvaluation.summary()`: one row per output (PSNR, SSIM,
    share of images it wins), then best overall, worst and best single head."""
    has_ssim = "per_output_ssim" in summary
    count = summary["num_images"]
    lines = [title] if title else []
    lines.append(f"{'output':<24}{'PSNR (dB)':>10}{'SSIM':>9}{'wins':>8}")
    ssims = summary.get("per_output_ssim", [None] * summary["num_outputs"])
    for index, (psnr, ssim) in enumerate(zip(summary["per_output_psnr"], ssims)):
        wins = summary["wins_psnr"][index] / count
        ssim_text = f"{ssim:9.4f}" if ssim is not None else f"{'-':>9}"
        lines.append(f"{index:<24}{psnr:10.3f}{ssim_text}{wins:8.1%}")
    if summary["num_outputs"] > 1:
        best_ssim = f"{summary['best_overall_ssim']:9.4f}" if has_ssim else f"{'-':>9}"
        worst_ssim = f"{summary['worst_ssim']:9.4f}" if has_ssim else f"{'-':>9}"
        head = summary["best_single_head"]
        head_ssim = f"{summary['per_output_ssim'][head]:9.4f}" if has_ssim else f"{'-':>9}"
        lines += [f"{'best overall (oracle)':<24}{summary['best_overall_psnr']:10.3f}{best_ssim}",
                  f"{'worst':<24}{summary['worst_psnr']:10.3f}{worst_ssim}",
                  f"{f'best single head ({head})':<24}{summary['best_single_head_psnr']:10.3f}"
                  f"{head_ssim}"]
    if "auto_psnr" in summary:
        auto_ssim = f"{summary['auto_ssim']:9.4f}" if "auto_ssim" in summary else f"{'-':>9}"
        lines.append(f"{'auto (scoring branch)':<24}{summary['auto_psnr']:10.3f}{auto_ssim}")
    lines.append(f"({count} image{'s' if count != 1 else ''}; 8-bit PSNR and 3-D SSIM as the "
                 "official code computes them)")
    return "\n".join(lines)
