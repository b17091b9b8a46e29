"""Tiled deblurring of large photos: time and peak memory for 1, 4 and 8 megapixels.

    python benchmarks/inference.py                         # NAFNetMH-w32, selected head, tile 512
    python benchmarks/inference.py --width 8 --sizes 1     # a quick run
    python benchmarks/inference.py --tile 256 --json rows.jsonl

Each size runs in its own process, so its peak RSS is its own (model, TensorFlow and the photo
included). The model is traced on one tile first; the time is then the whole photo through
`keras_mhdeblur.inference.restore(model, photo, which="selected", tile=..., overlap=...)`:
padding, tiles in batches, blending, cropping. 8 MP is a 3840x2160 (4K UHD) photo; the others keep
its 16:9 shape. Time should grow about linearly with the pixels (tiles overlap a little more on
small photos) and memory stay far below 4 GB: a tile's activations plus the float32 photo and its
blending buffers.
"""

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time

MEMORY_LIMIT_BYTES = 4 * 1024 ** 3


def _parse():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=32, help="NAFNet width (32: official)")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1, help="tiles per forward pass")
    parser.add_argument("--sizes", default="1,4,8", help="megapixels, comma separated")
    parser.add_argument("--json", help="append each row as a JSON line to this file")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    return parser.parse_args()


def photo_shape(megapixels):
    """(H, W) of a 16:9 photo of about `megapixels`; 8 MP is exactly 4K UHD (2160x3840)."""
    if megapixels == 8:
        return 2160, 3840
    height = round(math.sqrt(megapixels * 1e6 * 9 / 16) / 8) * 8
    return height, round(height * 16 / 9 / 8) * 8


def run_one(args):
    import numpy as np

    import keras_mhdeblur
    from keras_mhdeblur.inference import restore

    height, width = photo_shape(args.child)
    model = keras_mhdeblur.build_model("nafnet-w32", heads=args.heads, width=args.width)
    model.selected_output = 0
    rng = np.random.default_rng(0)
    tile = min(args.tile, height, width)
    start = time.perf_counter()
    restore(model, rng.random((tile, tile, 3), dtype=np.float32), tile=tile,
            overlap=args.overlap, batch_size=args.batch)
    trace_seconds = time.perf_counter() - start
    photo = rng.random((height, width, 3), dtype=np.float32)
    start = time.perf_counter()
    restored = restore(model, photo, which="selected", tile=args.tile, overlap=args.overlap,
                       batch_size=args.batch)
    seconds = time.perf_counter() - start
    assert restored.shape == photo.shape
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"megapixels": height * width / 1e6, "height": height, "width": width,
                      "seconds": seconds, "trace_seconds": trace_seconds, "peak_rss": peak,
                      "params": model.count_params()}))


def main():
    args = _parse()
    if args.child is not None:
        return run_one(args)
    processor = platform.processor() or platform.machine()
    print(f"NAFNetMH width {args.width}, K={args.heads} (selected head), tile {args.tile}, "
          f"overlap {args.overlap}, batch {args.batch}; {processor}, {os.cpu_count()} CPUs")
    print(f"{'photo':>12}{'MP':>7}{'seconds':>10}{'s/MP':>8}{'peak RSS':>11}  under 4 GB")
    rows = []
    for size in (float(s) for s in args.sizes.split(",")):
        argv = sys.argv[1:] + ["--child", str(size)]
        result = subprocess.run([sys.executable, __file__, *argv], capture_output=True,
                                text=True)
        if result.returncode != 0:
            print(f"{size} MP failed:\n{result.stderr[-3000:]}")
            return 1
        row = json.loads(result.stdout.strip().splitlines()[-1])
        row.update(width_channels=args.width, tile=args.tile, overlap=args.overlap)
        rows.append(row)
        print(f"{row['width']:>6}x{row['height']:<5}{row['megapixels']:7.2f}"
              f"{row['seconds']:10.1f}{row['seconds'] / row['megapixels']:8.1f}"
              f"{row['peak_rss'] / 1024 ** 3:9.2f} GB  "
              f"{'yes' if row['peak_rss'] < MEMORY_LIMIT_BYTES else 'NO'}", flush=True)
        if args.json:
            with open(args.json, "a") as file:
                file.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
