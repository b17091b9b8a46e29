"""How sharp the real clock photo comes out: the width of its rim's edges, before and after.

    python experiments/clock_edges.py nafnet-w16-mh4 runs/my-preset --out runs/clock

scikit-image's `clock_motion.png` (400x300, grey) was taken while the camera panned: a straight,
horizontal smear, so the clock's rim, left and right, rises from the wall to the face over
tens of pixels. It has no sharp reference, so instead of PSNR this reads the smear itself: on
each row through the clock's middle, the distance over which the rim's edge climbs from 10% to
90% of the way between the wall and the face (the 10-90% rise, in pixels), left and right, the
median over the rows. A deblurred photo has shorter rises; the same rise means nothing changed.

For each model (preset names or folders, or .keras files) at each scale (`--scales 1,0.5`:
the photo resized first, so that 0.5 halves the smear; the rises are given at the scale of the
run, and at full scale beside them), it prints the rises, the colour shift of the shipped
output and its false colour (the photo is grey, so any colour in the output was made up: the
share of pixels whose channels stray more than `FALSE_COLOUR_LEVELS` 8-bit levels from their
mean, the blotches a deblurring network leaves on a grey edge), and writes OUT/clock_SCALE.png:
the input and every model's output as `mhdeblur deblur` writes it (grey), side by side at 1:1.
"""

import argparse
from pathlib import Path

import numpy as np

# Rows through the clock's middle and the columns of the wall either side of it (full scale).
ROWS = (120, 180)
LEFT_WALL, RIGHT_WALL = (40, 110), (330, 390)
FACE = (150, 250)
# A channel this many 8-bit levels from the pixel's grey is a visible tint on a grey photo.
FALSE_COLOUR_LEVELS = 4


def false_colour_share(image, levels=FALSE_COLOUR_LEVELS):
    """Share of the pixels of `image` ((H, W, 3) in [0, 1], restored from a grey photo) whose
    channels stray more than `levels` 8-bit levels from their mean."""
    image = np.clip(np.asarray(image, np.float64), 0, 1) * 255
    stray = np.abs(image - image.mean(axis=-1, keepdims=True)).max(axis=-1)
    return float(np.mean(stray > levels))


def edge_rises(grey, scale=1.0):
    """Median 10-90% rise of the rim's left and right edges over `ROWS`, in pixels at `scale`.

    grey: (H, W) float image of the clock photo resized by `scale`.
    """
    def at(columns):
        return tuple(int(round(column * scale)) for column in columns)

    left_wall, right_wall, face = at(LEFT_WALL), at(RIGHT_WALL), at(FACE)
    rises = {"left": [], "right": []}
    for row in range(*at(ROWS)):
        profile = grey[row]
        top = np.percentile(profile[face[0]:face[1]], 90)
        for side, wall, direction in (("left", left_wall, 1), ("right", right_wall, -1)):
            base = np.median(profile[wall[0]:wall[1]])
            start = wall[1] if direction > 0 else wall[0]
            # Walk from the wall towards the face until the profile crosses each level.
            walk = profile[start::direction] if direction > 0 else profile[start::-1]
            fraction = (walk - base) / max(top - base, 1e-6)
            low, high = np.argmax(fraction >= 0.1), np.argmax(fraction >= 0.9)
            if fraction.max() >= 0.9:
                rises[side].append(high - low)
    return {side: float(np.median(values)) if values else float("nan")
            for side, values in rises.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="preset names or folders, or .keras files")
    parser.add_argument("--scales", default="1,0.5", help="resize the photo by these first")
    parser.add_argument("--out", help="folder for the side-by-side sheets and clock.json")
    args = parser.parse_args()
    try:
        scales = [float(value) for value in args.scales.split(",")]
    except ValueError:
        parser.error(f"--scales: expected numbers separated by commas, got {args.scales!r}")
    if any(not 0.1 <= scale <= 1 for scale in scales):
        parser.error(f"--scales: each scale must be in [0.1, 1], got {args.scales!r}")

    from keras_mhdeblur.data.io import read_image, to_uint8, write_png
    from keras_mhdeblur.data.sources import bundled_blurry_photo_paths
    from PIL import Image

    from keras_mhdeblur.presets.measure import channel_shift, colour_cast, restore_shipped
    from keras_mhdeblur.saving import load_model
    from keras_mhdeblur.utils.files import write_json
    from keras_mhdeblur.visualize import contact_sheet

    paths = [path for path in bundled_blurry_photo_paths() if path.name == "clock_motion.png"]
    if not paths:
        raise SystemExit("scikit-image's clock_motion.png is not installed: pip install "
                         "scikit-image")
    photo = read_image(paths[0])
    models = {name: load_model(name, compile=False) for name in args.models}
    results = []
    for scale in scales:
        size = (round(photo.shape[0] * scale), round(photo.shape[1] * scale))
        blurry = photo if scale == 1 else np.asarray(Image.fromarray(to_uint8(photo)).resize(
            size[::-1], Image.Resampling.LANCZOS), np.float32) / 255.0
        outputs = []
        row = {"scale": scale, "input": edge_rises(blurry.mean(axis=-1), scale), "models": {}}
        for name, model in models.items():
            # The figures read the network's own output: `mhdeblur deblur` writes this grey
            # photo grey, which would hide the false colour (the rises read the grey anyway).
            # The sheet shows what `mhdeblur deblur` writes.
            restored = restore_shipped(model, blurry, keep_grey=False)
            outputs.append(restore_shipped(model, blurry))
            rises = edge_rises(restored.mean(axis=-1), scale)
            row["models"][name] = {
                "rise_px": rises,
                "colour_cast_levels": colour_cast(channel_shift(restored, blurry)),
                "false_colour_share": false_colour_share(restored)}
        results.append(row)
        print(f"scale {scale}: 10-90% rise of the rim, left / right, px at this scale "
              f"(at full scale); false colour (pixels > {FALSE_COLOUR_LEVELS} levels off grey)")
        for label, rises, false in [("input", row["input"], false_colour_share(blurry))] + [
                (name, figures["rise_px"], figures["false_colour_share"])
                for name, figures in row["models"].items()]:
            print(f"  {label:<40} {rises['left']:5.1f} / {rises['right']:5.1f}   "
                  f"({rises['left'] / scale:5.1f} / {rises['right'] / scale:5.1f})   "
                  f"{false:6.2%}")
        if args.out:
            labels = [Path(name).parent.parent.name + "/" + Path(name).stem
                      if name.endswith(".keras") else Path(name).name for name in models]
            sheet = contact_sheet(blurry, np.stack(outputs), labels, spread=False,
                                  columns=len(models) + 1, panel_size=max(blurry.shape[:2]))
            write_png(Path(args.out) / f"clock_{scale:g}.png", sheet)
    if args.out:
        out = Path(args.out) / "clock.json"
        write_json(out, results)
        print(f"wrote {out.parent}/clock_*.png and {out}")


if __name__ == "__main__":
    main()
