"""Training-step throughput of a multi-head model on the current Keras backend.

    python benchmarks/train_step.py --config nafnet-w32 --heads 4 --batch 8 --crop 256
    KERAS_BACKEND=jax python benchmarks/train_step.py --config nafnet-w32,nafnet-w64 \
        --precision float32,mixed_bfloat16

Prints images/s, the first step's time (trace + compile) and peak memory (device memory on a
GPU, peak RSS on the CPU). Several configs/precisions run one after another, each in its own
process, so their peak memory is their own; compare rows of one run only.
"""

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time


def _parse():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="nafnet-w32",
                        help="named config(s), comma separated (keras_mhdeblur.NAMED_CONFIGS)")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--no-combine", action="store_true", help="K outputs instead of K(K+1)/2")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed steps after the first")
    parser.add_argument("--precision", default="float32",
                        help="float32, mixed_bfloat16, mixed_float16 (comma separated)")
    parser.add_argument("--jit", choices=["auto", "on", "off"], default="auto",
                        help="XLA for the TF step (JAX always compiles)")
    parser.add_argument("--override", default="{}",
                        help='JSON of constructor overrides, e.g. \'{"width": 8}\' for a smoke run')
    parser.add_argument("--json", help="append each row as a JSON line to this file")
    return parser.parse_args()


def _peak_memory_bytes():
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return stats["peak_bytes_in_use"], "device"
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return tf.config.experimental.get_memory_info("GPU:0")["peak"], "device"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "host RSS"


def _device_name():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    return f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


def run_one(config, precision, args):
    import keras
    import numpy as np

    import keras_mhdeblur

    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    model = keras_mhdeblur.build_model(config, heads=args.heads,
                                       combine_heads=not args.no_combine,
                                       **json.loads(args.override))
    jit = {"auto": "auto", "on": True, "off": False}[args.jit]
    optimizer = model.official_optimizer(total_steps=1000)
    model.compile(optimizer=optimizer, jit_compile=jit)
    rng = np.random.default_rng(0)
    blurry = rng.uniform(size=(args.batch, args.crop, args.crop, 3)).astype("float32")
    sharp = np.clip(blurry + rng.normal(0, 0.05, blurry.shape), 0, 1).astype("float32")

    start = time.perf_counter()
    model.train_on_batch(blurry, sharp)  # trace + compile + one step
    first_step = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.steps):
        logs = model.train_on_batch(blurry, sharp, return_dict=True)
    float(logs["loss"])  # blocks until the last step has run
    elapsed = time.perf_counter() - start
    peak, where = _peak_memory_bytes()
    return {
        "backend": keras.backend.backend(), "device": _device_name(), "config": config,
        "heads": args.heads, "outputs": model.num_outputs, "precision": precision,
        "jit": args.jit, "batch": args.batch, "crop": args.crop,
        "params": model.count_params(), "images_per_s": args.batch * args.steps / elapsed,
        "first_step_s": first_step, "peak_memory_gib": peak / 2**30, "memory": where,
        "versions": f"keras {keras.__version__}",
    }


def _print_table(rows):
    header = (f"{'config':<12} {'precision':<15} {'backend':<10} {'img/s':>8} "
              f"{'first step s':>12} {'peak GiB':>9}  device")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['config']:<12} {row['precision']:<15} {row['backend']:<10} "
              f"{row['images_per_s']:>8.2f} {row['first_step_s']:>12.1f} "
              f"{row['peak_memory_gib']:>9.2f}  {row['device']} ({row['memory']})")


def main():
    args = _parse()
    configs = args.config.split(",")
    precisions = args.precision.split(",")
    if len(configs) == 1 and len(precisions) == 1:
        row = run_one(configs[0], precisions[0], args)
        print("ROW " + json.dumps(row))
        _print_table([row])
        if args.json:
            with open(args.json, "a") as handle:
                handle.write(json.dumps(row) + "\n")
        return 0
    rows = []
    for config, precision in itertools.product(configs, precisions):
        argv = [a for a in sys.argv[1:]]
        for flag, value in (("--config", config), ("--precision", precision)):
            if flag in argv:
                argv[argv.index(flag) + 1] = value
            else:
                argv += [flag, value]
        result = subprocess.run([sys.executable, __file__, *argv], capture_output=True,
                                text=True)
        lines = [l for l in result.stdout.splitlines() if l.startswith("ROW ")]
        if result.returncode or not lines:
            print(f"{config} {precision}: failed\n{result.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(lines[-1][4:]))
    print()
    _print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
