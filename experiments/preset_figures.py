"""The figures and pictures of a preset that docs/presets.md and the README quote.

    python experiments/preset_figures.py nafnet-w16-mh4 --out runs/preset-figures
    python experiments/preset_figures.py runs/my-preset --pairs 64 --out runs/mine

Prints and writes (OUT/figures.json, OUT/*.png):
- held-out synthetic pairs (the preset's blur on photos its training never saw, 192x192, seed
  `presets.HELD_OUT_SEED`): input, shipped output, best single head, oracle, wins, colour shifts;
- the shipped output per octave of shake length (1-2 px to 16-32 px), so harm on mild blur shows;
- the same on larger held-out pairs with and without NAFNet's test-time local pooling (TLC) at
  the training crop, to show whether the whole-image statistics matter;
- the bundled real blurry photos: seconds, colour shift, and 1:1 sheets (input | output);
- `mhdeblur deblur` on a 1280x720 frame (a bundled photo resized), timed as a user runs it.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from keras_mhdeblur.commands.arguments import positive_int


def parse():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", help="preset name or folder")
    parser.add_argument("--out", required=True, help="folder for figures.json and the sheets")
    parser.add_argument("--pairs", type=positive_int, default=32,
                        help="held-out pairs (default 32)")
    parser.add_argument("--per-octave", type=positive_int, default=16,
                        help="held-out pairs per octave of shake length (default 16)")
    parser.add_argument("--large", type=positive_int, default=4,
                        help="large held-out pairs for TLC")
    parser.add_argument("--large-size", type=positive_int, default=512)
    return parser.parse_args()


def frame_720p(path):
    """A 1280x720 JPEG made from a bundled photo (only its size matters: it times deblur)."""
    from PIL import Image

    from keras_mhdeblur.data.sources import bundled_photo_paths

    source = next(p for p in bundled_photo_paths("heldout"))
    image = Image.open(source).convert("RGB").resize((1280, 960), Image.Resampling.LANCZOS)
    image.crop((0, 120, 1280, 840)).save(path, quality=92)
    return path


def main():
    args = parse()
    from keras_mhdeblur.data.io import write_png
    from keras_mhdeblur.data.sources import bundled_blurry_photo_paths
    from keras_mhdeblur.models.surgery import with_tlc
    from keras_mhdeblur.presets import from_preset, held_out_pairs, preset_metadata
    from keras_mhdeblur.presets.measure import (blur_length_table, by_blur_length, figures_table,
                                                held_out_figures, photo_figures, showcase_sheet)
    from keras_mhdeblur.utils.files import write_json

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = from_preset(args.preset)
    metadata = preset_metadata(args.preset)
    crop = metadata["training"]["recipe"]["crop"]
    results = {"preset": metadata["name"]}

    pairs = held_out_pairs(args.preset, args.pairs)
    results["held_out"] = held_out_figures(model, pairs)
    print(f"{args.pairs} held-out pairs of 192x192:\n{figures_table(results['held_out'])}")
    write_png(out / "held_out.png", showcase_sheet(model, pairs[:3], []))

    results["by_blur_length"] = by_blur_length(model, metadata["training"]["recipe"],
                                               args.per_octave)
    print(f"{args.per_octave} held-out pairs of 192x192 per octave of shake length:\n"
          f"{blur_length_table(results['by_blur_length'])}")

    large = held_out_pairs(args.preset, args.large, args.large_size)
    results["large"] = {"size": args.large_size,
                        "whole_image": held_out_figures(model, large),
                        "tlc": held_out_figures(with_tlc(model, (crop, crop)), large)}
    for name, figures in results["large"].items():
        if name != "size":
            print(f"{args.large} held-out pairs of {args.large_size}x{args.large_size}, {name}: "
                  f"input {figures['input_psnr']:.2f} -> shipped {figures['shipped_psnr']:.2f} "
                  f"(oracle {figures['oracle_psnr']:.2f}) dB")

    photos, images = photo_figures(model, bundled_blurry_photo_paths())
    results["real_photos"] = photos
    for record in photos:
        print(f"real photo {record['photo']}: {record['width']}x{record['height']}, "
              f"{record['seconds']:.2f} s, colour cast "
              f"{record['colour_cast_levels']:.2f} levels, channel shifts "
              f"{' '.join(f'{v:+.2f}' for v in record['channel_shift_levels'])}")
    if images:
        write_png(out / "real_photo.png", showcase_sheet(model, [], images))

    with tempfile.TemporaryDirectory() as scratch:
        frame = frame_720p(Path(scratch) / "frame.jpg")
        start = time.perf_counter()
        command = [sys.executable, "-m", "keras_mhdeblur", "deblur", str(frame), "--model",
                   str(args.preset), "--out", str(Path(scratch) / "out")]
        finished = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if finished.returncode != 0:
            raise SystemExit(finished.stderr)
        line = [l for l in finished.stdout.splitlines() if "frame.jpg" in l][-1]
        photo_seconds = float(line.rsplit(" in ", 1)[1].rstrip(" s"))
    results["deblur_1280x720"] = {"photo_seconds": photo_seconds,
                                  "command_seconds": round(wall, 1)}
    print(f"mhdeblur deblur on 1280x720: {photo_seconds:.1f} s for the photo, {wall:.1f} s for "
          "the whole command (start-up and model loading included)")

    write_json(out / "figures.json", results)
    print(f"wrote {out / 'figures.json'}, {out / 'held_out.png'}, {out / 'real_photo.png'}")


if __name__ == "__main__":
    main()
