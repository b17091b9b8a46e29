"""`mhdeblur make-synthetic`: write a GoPro-style synthetic set as a normal flat dataset."""

import os
import time
from pathlib import Path

from keras_mhdeblur.commands import CommandError, reports_errors
from keras_mhdeblur.commands.arguments import blur_changes, image_size, positive_int


def register(subparsers):
    parser = subparsers.add_parser(
        "make-synthetic",
        help="write GoPro-style synthetic blurry/sharp pairs (no download needed)",
        description="Blur sharp images along random camera-shake paths (sub-frames averaged in "
        "linear light) and write OUT_DIR/input/*.png (blurry) and OUT_DIR/target/*.png (sharp) "
        "with the same names, a flat dataset any loader here reads.")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="destination folder (empty or new)")
    parser.add_argument("--count", type=positive_int, required=True, help="number of pairs")
    parser.add_argument("--size", type=image_size, default=(256, 256), metavar="HxW",
                        help="HxW of each pair (default 256x256)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed; the same seed writes the same set (default 1)")
    parser.add_argument("--label", choices=("middle", "random"), default="middle",
                        help="sharp label: the middle sub-frame (GoPro, default) or a random one")
    parser.add_argument("--blur", action="append", default=[], metavar="KEY=VALUE",
                        help="a blur setting (data.BlurSettings; repeat for several), e.g. "
                        "blur_pixels=[1,32], steady_share=0.5, noise_sigma=[0,0.01], "
                        "jpeg_quality=[75,95]; the recipes' synthetic-blur keys")
    parser.add_argument("--source", metavar="DIR", default=None,
                        help="folder of sharp images (default: built-in dead leaves + bundled "
                        "photos)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT_DIR")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="threads (default: all CPUs)")
    parser.set_defaults(func=make_synthetic_command)


@reports_errors("make-synthetic")
def make_synthetic_command(args):
    from keras_mhdeblur.data import write_synthetic_set

    if args.source is not None and not Path(args.source).is_dir():
        raise CommandError(f"--source {args.source}: not a folder of sharp images")
    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise CommandError(f"OUT_DIR {args.out_dir}: exists and is not a folder")
    blur = blur_changes(args.blur)
    start = time.perf_counter()
    pairs = write_synthetic_set(args.out_dir, args.count, args.size, args.seed, args.source,
                                overwrite=args.overwrite, workers=args.workers, label=args.label,
                                **blur)
    height, width = args.size
    print(f"wrote {len(pairs)} pairs of {height}x{width} (seed {args.seed}, label {args.label}) to "
          f"{os.path.join(args.out_dir, 'input')} and {os.path.join(args.out_dir, 'target')} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
