"""Where the label sits in the smear: what a perfectly sharp restoration scores at the wrong place.

    python experiments/label_position.py                    # the shipped preset's recipe
    python experiments/label_position.py PRESET --pairs 16 --out runs/label-position.json

GoPro's label is the middle sub-frame. A blurry image shows the camera's path as a smear, but
not which way the camera went nor how fast at each moment, so the middle sub-frame's place in
the smear is not always plain to see. A restoration that is perfectly sharp but puts the image
at the centre of the smear (the mean pose of the sub-frames) is off from the label by the
distance between the two, and PSNR punishes a shift of a pixel at an edge heavily.

For every octave of shake length (`presets.measure.BLUR_OCTAVES`) and each camera motion of
`data.synthetic` (the random shake and the steady motion, `BlurSettings.steady_share` 0 and 1),
this prints, on the held-out photos under the preset's blur recipe (seed
`presets.HELD_OUT_SEED`, 192x192): the blurry input's PSNR, the PSNR of the sharp image at the
mean pose (`data.sharp_at_pose`) and the mean distance of that pose from the label's. It reads
no model: it measures the data. A model that beats the mean-pose figure has learnt to find
where in the smear the label sits (or hedges between places, as an average of heads does);
docs/presets.md, "Where the label sits in the smear", reads the figures.
"""

import argparse
from pathlib import Path

import numpy as np

MOTIONS = {"shake": 0.0, "steady": 1.0}


def octave_figures(recipe, low, high, steady_share, count, size, seed):
    """Mean input PSNR, mean-pose PSNR and mean pose offset (px) over `count` held-out pairs."""
    from keras_mhdeblur.data import SyntheticPairs, sharp_at_pose
    from keras_mhdeblur.data.io import to_uint8
    from keras_mhdeblur.evaluation import psnr_uint8
    from keras_mhdeblur.presets.measure import octave_recipe

    blur = {**octave_recipe(recipe, low, high)["synthetic_blur"], "steady_share": steady_share}
    stream = SyntheticPairs(size, seed=seed, source="builtin:heldout",
                            label=recipe.get("synthetic_label", "middle"), **blur)
    rows = []
    for index in range(count):
        pair = stream.pair(index)
        region = stream.source_region(index)
        mean_shift, mean_angle = pair.shifts.mean(axis=0), float(pair.angles.mean())
        # The label rendered the same way (no boosted highlights), so that only the pose differs.
        label = sharp_at_pose(region, (size, size), (0.0, 0.0), 0.0)
        centred = sharp_at_pose(region, (size, size), mean_shift, mean_angle)
        rows.append((psnr_uint8(to_uint8(pair.blurry), to_uint8(pair.sharp)),
                     psnr_uint8(to_uint8(centred), to_uint8(label)),
                     float(np.hypot(*mean_shift))))
    return [float(value) for value in np.mean(rows, axis=0)]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", nargs="?", default=None,
                        help="preset name or folder whose blur recipe to use (default: the "
                             "default preset)")
    parser.add_argument("--pairs", type=int, default=16, help="held-out pairs per octave")
    parser.add_argument("--size", type=int, default=192, help="pair size in pixels")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.pairs < 1 or args.size < 16:
        parser.error(f"--pairs must be >= 1 and --size >= 16, got {args.pairs} and {args.size}")

    from keras_mhdeblur.presets import HELD_OUT_SEED, default_preset, preset_metadata
    from keras_mhdeblur.presets.measure import BLUR_OCTAVES

    preset = args.preset or default_preset()
    recipe = preset_metadata(preset)["training"]["recipe"]
    results = {"preset": str(preset), "pairs": args.pairs, "size": args.size, "octaves": []}
    print(f"{args.pairs} held-out pairs per octave, {args.size}x{args.size}, {preset}'s blur "
          "recipe; PSNR in dB, offset of the mean pose from the label's in pixels\n")
    print("| shake | motion | input | sharp at the mean pose | gain | offset |")
    print("| --- | --- | --- | --- | --- | --- |")
    for low, high in BLUR_OCTAVES:
        for motion, share in MOTIONS.items():
            blurry, centred, offset = octave_figures(recipe, low, high, share, args.pairs,
                                                     args.size, HELD_OUT_SEED)
            results["octaves"].append({"blur_pixels": [low, high], "motion": motion,
                                       "input_psnr": blurry, "mean_pose_psnr": centred,
                                       "mean_pose_offset_px": offset})
            print(f"| {low}-{high} px | {motion} | {blurry:.2f} | {centred:.2f} | "
                  f"{centred - blurry:+.2f} | {offset:.2f} |", flush=True)
    if args.out:
        from keras_mhdeblur.utils.files import write_json

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(args.out), results)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
