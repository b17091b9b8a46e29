"""`mhdeblur make-synthetic`: write a GoPro-style synthetic set as a normal flat dataset."""

import os
import sys
import time

from keras_mhdeblur.commands.arguments import image_size, positive_int
from keras_mhdeblur.data.io import DataError


def register(subparsers):
    """Adds `make-synthetic` to the `mhdeblur` command."""
    parser = subparsers.add_parser(
        "make-synthetic",
        help="write GoPro-style synthetic blurry/sharp pairs (no download needed)",
        description="Blur sharp images along random camera-shake paths (sub-frames averaged in "
        "linear light) and write OUT_DIR/input/*.png (blurry) and OUT_DIR/target/*.png (sharp) "
        "with the same names, a flat dataset any loader here reads.",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="destination folder (empty or new)")
    parser.add_argument("--count", type=positive_int, required=True, help="number of pairs")
    parser.add_argument("--size", type=image_size, default=(256, 256),
                        help="HxW of each pair (default 256x256)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed; the same seed writes the same set (default 1)")
    parser.add_argument("--label", choices=("middle", "random"), default="middle",
                        help="sharp label: the middle sub-frame (GoPro, default) or a random one")
    parser.add_argument("--source", metavar="DIR", default=None,
                        help="folder of sharp images (default: built-in dead leaves + bundled photos)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT_DIR")
    parser.add_argument("--workers", type=positive_int, default=None, help="threads (default: all CPUs)")
    parser.set_defaults(func=make_synthetic)


def make_synthetic(args):
    """Runs `make-synthetic`; returns the exit code (0 ok, 1 bad data or destination)."""
    from keras_mhdeblur.data.synthetic import write_synthetic_set

    start = time.perf_counter()
    try:
        pairs = write_synthetic_set(args.out_dir, args.count, args.size, args.seed, args.source,
                                    overwrite=args.overwrite, workers=args.workers, label=args.label)
    except DataError as error:
        print(f"mhdeblur make-synthetic: error: {error}", file=sys.stderr)
        return 1
    height, width = args.size
    print(f"wrote {len(pairs)} pairs of {height}x{width} (seed {args.seed}, label {args.label}) to "
          f"{os.path.join(args.out_dir, 'input')} and {os.path.join(args.out_dir, 'target')} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
