"""Training-step throughput of a multi-head model on the current Keras backend.

    python benchmarks/train_step.py --config nafnet-w32 --heads 4 --batch 8 --crop 256
    KERAS_BACKEND=jax python benchmarks/train_step.py --config nafnet-w32,nafnet-w64 \
        --precision float32,mixed_bfloat16 --override '{}' --override '{"scan_blocks": true}'
    python benchmarks/train_step.py --batch 1 --crop 128 --jit off,on      # the CPU figure

Prints images/s, the first step's time (trace + compile) and peak memory (device memory on a
GPU, peak RSS on the CPU). On TensorFlow's CPU it also prints the peak of the tensors TensorFlow
allocated (its CPU allocator's statistics), and the JSON row has the RSS the process had after
importing the framework, before any model: the peak RSS less both is the runtime's own
(graphs, kernels' caches, the allocator's slack).

Comma-separated configs, precisions and jit settings, and repeated --override, run every
combination one after another, each in its own process, so that peak memory and compile caches
are their own; compare rows of one run only.
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
    parser.add_argument("--jit", default="auto",
                        help="XLA for the TF step: auto, on, off, or several comma separated "
                             "(JAX always compiles)")
    parser.add_argument("--override", action="append",
                        help='JSON of constructor overrides, e.g. \'{"width": 8}\' for a smoke run '
                             'or \'{"scan_blocks": true}\'; repeat it to compare variants')
    parser.add_argument("--json", help="append each row as a JSON line to this file")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per variant when several run (a compile that does not "
                             "finish is reported, and the next variant runs)")
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


def _tensor_peak_bytes():
    """The peak of the bytes TensorFlow's CPU allocator handed out (tensors: weights, optimiser
    state, activations, gradients); nan elsewhere."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return float("nan")
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return float("nan")
    try:
        return tf.config.experimental.get_memory_info("CPU:0")["peak"]
    except ValueError:  # builds without the CPU allocator's statistics
        return float("nan")


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

    import_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    model = keras_mhdeblur.build_model(config, heads=args.heads,
                                       combine_heads=not args.no_combine,
                                       **json.loads(args.override[0]))
    jit = {"auto": "auto", "on": True, "off": False}[args.jit]  # checked in main()
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
        "jit": args.jit, "override": args.override[0], "batch": args.batch, "crop": args.crop,
        "params": model.count_params(), "images_per_s": args.batch * args.steps / elapsed,
        "first_step_s": first_step, "peak_memory_gib": peak / 2**30, "memory": where,
        "import_rss_gib": import_rss / 2**30, "tensor_peak_gib": _tensor_peak_bytes() / 2**30,
        "versions": f"keras {keras.__version__}", "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def _print_table(rows, header=True):
    title = (f"{'config':<12} {'precision':<15} {'backend':<10} {'jit':<4} {'img/s':>8} "
             f"{'first step s':>12} {'peak GiB':>9} {'tensors GiB':>11}  override / device")
    if header:
        print(title)
        print("-" * len(title))
    for row in rows:
        print(f"{row['config']:<12} {row['precision']:<15} {row['backend']:<10} {row['jit']:<4} "
              f"{row['images_per_s']:>8.2f} {row['first_step_s']:>12.1f} "
              f"{row['peak_memory_gib']:>9.2f} {row['tensor_peak_gib']:>11.2f}  "
              f"{row['override']} / {row['device']} "
              f"({row['memory']})")


def main():
    args = _parse()
    args.override = args.override or ["{}"]
    for override in args.override:
        json.loads(override)  # a bad one fails here, not in every child
    axes = {"--config": args.config.split(","), "--precision": args.precision.split(","),
            "--jit": args.jit.split(","), "--override": args.override}
    unknown = sorted(set(axes["--jit"]) - {"auto", "on", "off"})
    if unknown:
        raise SystemExit(f"--jit: expected auto, on or off, got {unknown}")
    if all(len(values) == 1 for values in axes.values()):
        row = run_one(axes["--config"][0], axes["--precision"][0], args)
        print("ROW " + json.dumps(row))
        _print_table([row])
        if args.json:
            with open(args.json, "a") as handle:
                handle.write(json.dumps(row) + "\n")
        return 0
    # One process per variant, so each one's peak memory and compile caches are its own.
    base = _without(sys.argv[1:], {**axes, "--timeout": None})
    rows = []
    for variant in itertools.product(*axes.values()):
        argv = base + [item for pair in zip(axes, variant) for item in pair]
        try:
            result = subprocess.run([sys.executable, __file__, *argv], capture_output=True,
                                    text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"{' '.join(variant)}: did not finish in {args.timeout:.0f} s", flush=True)
            continue
        lines = [l for l in result.stdout.splitlines() if l.startswith("ROW ")]
        if result.returncode or not lines:
            print(f"{' '.join(variant)}: failed\n{result.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(lines[-1][4:]))
        _print_table(rows[-1:], header=len(rows) == 1)  # progress, in case a later one hangs
    print()
    _print_table(rows)
    return 0


def _without(argv, flags):
    """argv without the given flags and their values (--flag value or --flag=value)."""
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item in flags:
            skip = True
        elif item.split("=", 1)[0] not in flags:
            kept.append(item)
    return kept


if __name__ == "__main__":
    sys.exit(main())
