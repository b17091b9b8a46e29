"""What a preset does, measured: held-out synthetic pairs and real blurry photos.

    from keras_mhdeblur.presets import from_preset, held_out_pairs
    from keras_mhdeblur.presets.measure import held_out_figures, photo_figures, figures_table

    model = from_preset("nafnet-w16-mh4")
    figures = held_out_figures(model, held_out_pairs("nafnet-w16-mh4", 32))
    print(figures_table(figures))

The figures are those a user sees: the blurry input, the output the preset ships (`mhdeblur
deblur` writes it: auto with a scoring branch, else the selected head), the best single head and
the oracle (best output per image), with 8-bit PSNR and SSIM as the official code computes them,
and how the output's per-channel means moved from the input's, in 8-bit levels, split in two:
- the brightness shift (the mean over channels): deblurring may darken a little, because blur
  averages light linearly and sRGB is concave, so a blurry sRGB image is brighter on average than
  the sharp one (the synthetic pairs show this too);
- the colour cast (the largest channel's departure from that mean): a restoration should have
  none; a head that learned a cast shows here. `mhdeblur demo` and `experiments/preset_figures.py` print these; the README
and docs/presets.md quote them.
"""

import time

import numpy as np


def restore_shipped(model, image, **options):
    """The output `mhdeblur deblur` writes for `image` (options: `inference.restore`'s)."""
    from keras_mhdeblur.inference import restore

    return restore(model, image, which="shipped", **options)


def channel_shift(output, reference):
    """Per-channel mean of `output` minus that of `reference` ((H, W, 3) in [0, 1]), in 8-bit
    levels: (3,) float64."""
    means = np.asarray(output, np.float64).reshape(-1, 3).mean(axis=0)
    return (means - np.asarray(reference, np.float64).reshape(-1, 3).mean(axis=0)) * 255


def colour_cast(shift):
    """The chromatic part of a `channel_shift`: the largest departure of a channel from the
    mean shift, in levels (0 for a pure change of brightness)."""
    return float(np.max(np.abs(shift - shift.mean())))


def held_out_figures(model, pairs, self_ensemble=1):
    """PSNR/SSIM of input, shipped output, best single head and oracle on `pairs`
    ([(name, blurry, sharp), ...]); wins per output; the shipped output's worst colour shift and
    every output's mean one. `self_ensemble`: flips and transposes averaged
    (`inference.restore`)."""
    from keras_mhdeblur.evaluation import evaluate_inputs, evaluate_model
    from keras_mhdeblur.inference import output_choice

    which = output_choice(model, "shipped")  # "all" (one output), "auto" or an index
    shifts, output_casts, target_shifts = [], [], []

    def measure_shifts(name, blurry, sharp, outputs):  # the outputs evaluate_model restored
        target_shifts.append(channel_shift(sharp, blurry))
        if model.single_output:
            shifts.append(channel_shift(outputs, blurry))
            return
        output_casts.append([colour_cast(channel_shift(output, blurry))
                             for output in outputs[:model.num_outputs]])
        shipped = outputs[-1] if which == "auto" else outputs[which]
        shifts.append(channel_shift(shipped, blurry))

    inputs = evaluate_inputs(pairs).summary()
    evaluation = evaluate_model(model, pairs, self_ensemble=self_ensemble, each=measure_shifts)
    summary = evaluation.summary()
    if model.single_output:
        shipped_psnr, shipped_ssim = summary["per_output_psnr"][0], summary["per_output_ssim"][0]
        pair_psnr = [row[0] for row in evaluation.psnr]
    elif which == "auto":
        shipped_psnr, shipped_ssim = summary["auto_psnr"], summary["auto_ssim"]
        pair_psnr = list(evaluation.auto_psnr)
    else:
        shipped_psnr = summary["per_output_psnr"][which]
        shipped_ssim = summary["per_output_ssim"][which]
        pair_psnr = [row[which] for row in evaluation.psnr]
    count = summary["num_images"]
    return {
        "pairs": count,
        "size": list(pairs[0][1].shape[:2]),
        "input_psnr": inputs["per_output_psnr"][0],
        "input_ssim": inputs["per_output_ssim"][0],
        "shipped_output": which if which in ("auto", "all") else f"selected (output {which})",
        "shipped_psnr": shipped_psnr,
        "shipped_ssim": shipped_ssim,
        "shipped_gain_db": shipped_psnr - inputs["per_output_psnr"][0],
        "shipped_psnr_per_pair": pair_psnr,  # lets a check reproduce a few pairs cheaply
        "best_single_head": summary["best_single_head"],
        "best_single_head_psnr": summary["best_single_head_psnr"],
        "oracle_psnr": summary["best_overall_psnr"],
        "per_output_psnr": summary["per_output_psnr"],
        "win_shares": [wins / count for wins in summary["wins_psnr"]],
        "outputs_winning_5_percent": int(sum(wins / count >= 0.05
                                             for wins in summary["wins_psnr"])),
        "max_colour_cast_levels": max(colour_cast(shift) for shift in shifts),
        "mean_brightness_shift_levels": float(np.mean([shift.mean() for shift in shifts])),
        "target_brightness_shift_levels": float(np.mean([shift.mean()
                                                         for shift in target_shifts])),
        # A head with a colour cast shows here (mean over the pairs, per output).
        "per_output_colour_cast_levels": (np.mean(output_casts, axis=0).tolist()
                                          if output_casts else None),
    }


# Camera-shake lengths, in pixels, of the octaves `by_blur_length` measures: from a near-sharp
# photo to the longest shake of the training recipes.
BLUR_OCTAVES = ((1, 2), (2, 4), (4, 8), (8, 16), (16, 32))


def octaves_up_to(longest):
    """The octaves (1, 2), (2, 4), ... up to `longest` pixels, or None unless `longest` is a
    power of two of at least 2."""
    if longest < 2 or longest & (longest - 1):
        return None
    return tuple((2 ** power, 2 ** (power + 1)) for power in range(longest.bit_length() - 1))


def octave_recipe(recipe, low, high):
    """`recipe` (a `TrainConfig` dict) with its shake length drawn uniformly in [low, high]
    pixels, everything else of its blur kept: the pairs of one row of `by_blur_length`."""
    blur = {**recipe.get("synthetic_blur", {}), "blur_pixels": [low, high],
            "blur_length_scale": "linear"}
    return {**recipe, "synthetic_blur": blur}


def by_blur_length(model, recipe, count, size=192, octaves=BLUR_OCTAVES, self_ensemble=1,
                   **source):
    """The shipped output against the input per octave of camera-shake length.

    Each octave's pairs are the recipe's blur (its noise, JPEG, highlights, label) with the
    path length drawn uniformly in that octave, on the held-out photos, from the same seed: the
    same regions and noise, only the length differs. So a model that helps long shake and harms
    mild shake shows it, whatever share of each the recipe trained on. `source=` and
    `source_options=` (of `held_out_pairs_for_recipe`) take other sharp images instead;
    `self_ensemble` averages flips and transposes (`inference.restore`).

    Returns:
        [{"blur_pixels": [low, high], "input_psnr", "shipped_psnr", "oracle_psnr",
          "shipped_gain_db"}, ...], one per octave.
    """
    from keras_mhdeblur.presets import held_out_pairs_for_recipe

    rows = []
    for low, high in octaves:
        figures = held_out_figures(model, held_out_pairs_for_recipe(
            octave_recipe(recipe, low, high), count, size, **source), self_ensemble)
        rows.append({"blur_pixels": [low, high], "input_psnr": figures["input_psnr"],
                     "shipped_psnr": figures["shipped_psnr"],
                     "oracle_psnr": figures["oracle_psnr"],
                     "shipped_gain_db": figures["shipped_gain_db"]})
    return rows


def blur_length_table(rows):
    """`by_blur_length`'s rows as a small text table."""
    lines = [f"{'shake (px)':<12}{'input':>8}{'shipped':>9}{'gain':>8}{'oracle':>8}"]
    for row in rows:
        low, high = row["blur_pixels"]
        lines.append(f"{f'{low}-{high}':<12}{row['input_psnr']:8.2f}{row['shipped_psnr']:9.2f}"
                     f"{row['shipped_gain_db']:+8.2f}{row['oracle_psnr']:8.2f}")
    return "\n".join(lines)


def figures_table(figures):
    """The held-out figures as a small text table (PSNR, SSIM, gain over the input)."""
    base = figures["input_psnr"]
    rows = [("input (blurry)", base, figures["input_ssim"]),
            (f"shipped output: {figures['shipped_output']}", figures["shipped_psnr"],
             figures["shipped_ssim"]),
            (f"best single head (output {figures['best_single_head']}, on these pairs)",
             figures["best_single_head_psnr"], None),
            ("oracle (best output per image)", figures["oracle_psnr"], None)]
    lines = [f"{'':<52}{'PSNR':>8}{'SSIM':>8}{'vs input':>10}"]
    for label, psnr, ssim in rows:
        ssim_text = f"{ssim:8.4f}" if ssim is not None else f"{'':8}"
        lines.append(f"{label:<52}{psnr:8.2f}{ssim_text}{psnr - base:+10.2f}")
    lines.append(f"{figures['outputs_winning_5_percent']} outputs win at least 5% of the pairs")
    lines.append(f"shipped output, 8-bit levels: largest colour cast "
                 f"{figures['max_colour_cast_levels']:.2f}; brightness "
                 f"{figures['mean_brightness_shift_levels']:+.2f} (the sharp images: "
                 f"{figures['target_brightness_shift_levels']:+.2f})")
    if figures.get("per_output_colour_cast_levels"):
        lines.append("mean colour cast per output (levels): " + " ".join(
            f"{cast:.2f}" for cast in figures["per_output_colour_cast_levels"]))
    return "\n".join(lines)


def photo_figures(model, paths, tile=None, overlap=32):
    """Deblurs each photo (the shipped output) and records its size, seconds and mean shifts.

    Returns:
        ([{photo, width, height, seconds, channel_shift_levels, colour_cast_levels}, ...],
         [(blurry, restored), ...])
    """
    from keras_mhdeblur.data.io import read_image

    records, images = [], []
    for path in paths:
        blurry = read_image(path)
        start = time.perf_counter()
        restored = restore_shipped(model, blurry, tile=tile, overlap=overlap)
        seconds = time.perf_counter() - start
        records.append({"photo": str(getattr(path, "name", path)), "width": blurry.shape[1],
                        "height": blurry.shape[0], "seconds": round(seconds, 2),
                        "channel_shift_levels": channel_shift(restored, blurry).tolist(),
                        "colour_cast_levels": colour_cast(channel_shift(restored, blurry))})
        images.append((blurry, restored))
    return records, images


def showcase_sheet(model, pairs, photo_images, crop=192):
    """Side-by-side panels at 1:1 (never shrunk): for each held-out pair input | shipped output |
    sharp, then each real photo input | shipped output (a centred `crop`-high band of it when
    taller) | any more (label, image) panels given as a third item of its `photo_images`
    entry."""
    from keras_mhdeblur.visualize import contact_sheet

    label = "preset (auto)" if model.output_scorer is not None else "preset"
    rows = []
    for name, blurry, sharp in pairs:
        restored = restore_shipped(model, blurry)
        rows.append(contact_sheet(blurry, restored, [label], spread=False,
                                  extra=[("sharp (held out)", sharp)], columns=3,
                                  panel_size=max(blurry.shape[:2])))
    for blurry, restored, *more in photo_images:
        extra = more[0] if more else ()
        rows.append(contact_sheet(blurry, restored, [label + ", real photo"], spread=False,
                                  extra=extra, columns=2 + len(extra),
                                  panel_size=max(blurry.shape[:2])))
    width = max(row.shape[1] for row in rows)
    gap = np.full((6, width, 3), 255, np.uint8)
    padded = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255)
              for row in rows]
    return np.concatenate([part for row in padded for part in (row, gap)][:-1])
