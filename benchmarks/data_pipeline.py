"""Prints how fast the data pipelines deliver training pairs on this machine.

    python benchmarks/data_pipeline.py [--files 6] [--batches 12]   (package installed, or PYTHONPATH=.)

- files: 256x256 crops, batch 8, from 1280x720 PNG pairs (written to a temporary folder first),
  through the tf.data pipeline and the Pillow `PairedPyDataset` (1 and 2 threads);
- synthetic: 256x256 GoPro-style pairs from the built-in source (1 and 2 threads, tf.data),
  and `StreamBatches` (what `mhdeblur train --pipeline pydataset` runs) with 1 and
  --processes worker processes (default: the cores but one).

Without TensorFlow (the GPU machine) the tf.data rows are left out.
"""

import argparse
import importlib.util
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from keras_mhdeblur.data import (PairedPyDataset, StreamBatches, SyntheticBatches,  # noqa: E402
                                 SyntheticPairs, dead_leaves_image, find_pairs, synthetic_dataset,
                                 training_dataset)
from keras_mhdeblur.training import default_data_workers  # noqa: E402

BATCH, CROP = 8, 256


def write_pairs(folder, count):
    """count 1280x720 PNG pairs: dead leaves at half size, upscaled, with sensor-like noise."""
    rng = np.random.default_rng(0)
    for i in range(count):
        small = Image.fromarray(dead_leaves_image(rng, 360, 640))
        sharp = np.asarray(small.resize((1280, 720), Image.Resampling.BICUBIC)).astype(np.float32)
        for folder_name, image in (("target", sharp), ("input", sharp)):
            noisy = np.clip(image + rng.normal(0, 2.0, image.shape), 0, 255).astype(np.uint8)
            path = folder / folder_name / f"{i:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noisy).save(path)


def rate(make_batches, pairs_per_call, calls, warmup=1):
    """'W pairs/s (C per CPU-s)': wall-clock rate, and pairs per CPU-second of this process (all
    its threads), which stays meaningful when other processes share the machine."""
    for _ in range(warmup):
        make_batches()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(calls):
        make_batches()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    pairs = pairs_per_call * calls
    return f"{pairs / wall:6.1f} pairs/s ({pairs / cpu:5.1f} per CPU-s)"


def _file_rows(folder, args):
    write_pairs(folder, args.files)
    megabytes = np.mean([p.stat().st_size for p in folder.rglob("*.png")]) / 1e6
    pairs = find_pairs(folder)
    print(f"files: {len(pairs)} pairs of 1280x720 PNG, {megabytes:.1f} MB per file on average")

    iterator = iter(training_dataset(pairs, batch_size=BATCH, crop_size=CROP, seed=0))
    print(f"  tf.data training_dataset:        {rate(lambda: next(iterator), BATCH, args.batches)}")
    del iterator  # stops its background prefetching
    cached = iter(training_dataset(pairs, batch_size=BATCH, crop_size=CROP, seed=0, cache=True))
    for _ in range(len(pairs)):
        next(cached)  # fill the cache
    print(f"  tf.data, cache=True (warm):      {rate(lambda: next(cached), BATCH, args.batches)}")

    del cached
    dataset = PairedPyDataset(pairs, batch_size=BATCH, crop_size=CROP, seed=0, steps_per_epoch=10**6)
    counter = iter(range(10**6))
    print(f"  PairedPyDataset, 1 thread:       "
          f"{rate(lambda: dataset[next(counter)], BATCH, max(2, args.batches // 2))}")
    with ThreadPoolExecutor(2) as pool:  # what PyDataset(workers=2) does
        two = lambda: list(pool.map(lambda i: dataset[i], [next(counter), next(counter)]))  # noqa: E731
        print(f"  PairedPyDataset, 2 threads:      {rate(two, 2 * BATCH, max(2, args.batches // 4))}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6, help="1280x720 pairs to write")
    parser.add_argument("--batches", type=int, default=12, help="batches timed per pipeline")
    parser.add_argument("--processes", type=int, default=default_data_workers(),
                        help="worker processes of the StreamBatches row")
    args = parser.parse_args()
    with_tf = importlib.util.find_spec("tensorflow") is not None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU cores: {os.cpu_count()}, load average {load:.1f}; batch {BATCH}, crop {CROP}x{CROP}")

    with tempfile.TemporaryDirectory() as folder:
        if not with_tf:
            print("files: skipped (tf.data rows need TensorFlow)")
        else:
            _file_rows(Path(folder), args)

    stream = SyntheticPairs((CROP, CROP), seed=0)
    stream.pair(0)  # builds the built-in source's pools once
    numbers = iter(range(1, 10**6))
    print(f"synthetic {CROP}x{CROP} (built-in source, 9-15 sub-frames):")
    print(f"  SyntheticPairs.pair, 1 thread:   {rate(lambda: stream.pair(next(numbers)), 1, 40)}")
    start_index = iter(range(1000, 10**6, 64))
    print(f"  SyntheticPairs.arrays, 2 threads:"
          f"{rate(lambda: stream.arrays(64, next(start_index), workers=2), 64, 2)}")
    if with_tf:
        synthetic = iter(synthetic_dataset(stream, batch_size=BATCH, start_index=20000))
        print(f"  tf.data synthetic_dataset:       {rate(lambda: next(synthetic), BATCH, args.batches)}")
    for processes in sorted({1, args.processes}):
        batches = StreamBatches(SyntheticBatches(stream.prepare(), BATCH, 40000), processes)
        numbers = iter(range(10**6))
        print(f"  StreamBatches, {processes:2d} process(es): "
              f"{rate(lambda: batches[next(numbers)], BATCH, max(args.batches, 4 * processes))}"
              "  (CPU-s: this process only)")
        batches.close()


if __name__ == "__main__":
    main()
