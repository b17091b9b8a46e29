"""Where a TensorFlow train step spends its time: op types and model parts, from the profiler.

    python benchmarks/profile_step.py --config mprnet --batch 1 --crop 128
    python benchmarks/profile_step.py --config nafnet-w64 --by part --top 15

Builds the model as `train_step.py` does, runs --warmup steps, then --steps steps under
`tf.profiler.experimental` and reads the trace it writes (the XSpace protobuf that TensorFlow
ships). Every executed kernel is summed by op type (Conv2D, Conv2DBackpropFilter, Mul, ...)
or, with `--by part`, by the top-level layer the op belongs to (the first component of its
name scope, with gradients put back to the layer they differentiate). Times are kernel time
summed over threads, per step; the wall-clock step is printed too, so the share the executor
and the data movement take is visible. Compare rows of one run only.
"""

import argparse
import collections
import json
import re
import tempfile
import time
from pathlib import Path


def _parse():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="nafnet-w32", help="named config")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2, help="untraced steps first")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps")
    parser.add_argument("--by", choices=("type", "part"), default="type")
    parser.add_argument("--top", type=int, default=25, help="rows printed")
    parser.add_argument("--override", default="{}", help="JSON of model arguments")
    return parser.parse_args()


def kernel_events(logdir):
    """[(op name, op type, microseconds)] of every kernel in the profile under `logdir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = sorted(Path(logdir).rglob("*.xplane.pb"))
    if not paths:
        raise FileNotFoundError(f"{logdir}: the profiler wrote no *.xplane.pb")
    space = xplane_pb2.XSpace()
    space.ParseFromString(paths[-1].read_bytes())
    events = []
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                # Kernels are named "scope/op:Type" (oneDNN's types start with "_Mkl");
                # executor events ("ExecutorState::Process") and function calls are not.
                match = re.fullmatch(r"([^:]+):([A-Za-z_][A-Za-z0-9_]*)", name)
                if match:
                    events.append((match.group(1), match.group(2), event.duration_ps / 1e6))
    return events


def model_part(op_name, model_name):
    """The top-level layer an op belongs to: "gradient_tape/mpr_net_mh_1/stage1_encoder/..."
    and "mpr_net_mh_1/stage1_encoder/..." both give "stage1_encoder" for the model
    "mpr_net_mh" (TensorFlow numbers the model's scope once traced)."""
    parts = [p for p in op_name.split("/") if p and p != "gradient_tape"]
    if len(parts) >= 2 and parts[0].startswith(model_name):
        parts = parts[1:]
    return parts[0] if len(parts) > 1 else "(step)"


def main():
    args = _parse()
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_mhdeblur

    if keras.backend.backend() != "tensorflow":
        raise SystemExit("profile_step.py reads TensorFlow's profiler; run it with "
                         "KERAS_BACKEND=tensorflow")
    keras.utils.set_random_seed(0)
    model = keras_mhdeblur.build_model(args.config, heads=args.heads, **json.loads(args.override))
    model.compile(optimizer=model.official_optimizer(total_steps=1000), jit_compile=False)
    rng = np.random.default_rng(0)
    blurry = rng.uniform(size=(args.batch, args.crop, args.crop, 3)).astype("float32")
    sharp = np.clip(blurry + rng.normal(0, 0.05, blurry.shape), 0, 1).astype("float32")
    for _ in range(args.warmup):
        model.train_on_batch(blurry, sharp)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        for _ in range(args.steps):
            logs = model.train_on_batch(blurry, sharp, return_dict=True)
        float(logs["loss"])
        wall = (time.perf_counter() - start) / args.steps
        tf.profiler.experimental.stop()
        events = kernel_events(logdir)

    totals, counts = collections.Counter(), collections.Counter()
    for name, op_type, micros in events:
        key = op_type if args.by == "type" else model_part(name, model.name)
        totals[key] += micros / args.steps
        counts[key] += 1 / args.steps
    kernel_ms = sum(totals.values()) / 1e3
    print(f"{args.config}, K={args.heads}, batch {args.batch}, {args.crop}x{args.crop}: "
          f"{wall * 1e3:.0f} ms per step (wall), {kernel_ms:.0f} ms of kernels summed over "
          f"threads, {sum(counts.values()):.0f} kernels per step")
    label = "op type" if args.by == "type" else "model part"
    print(f"{label:<34} {'ms/step':>9} {'share':>7} {'kernels':>8} {'us/kernel':>10}")
    for key, micros in totals.most_common(args.top):
        print(f"{key:<34} {micros / 1e3:>9.1f} {micros / 1e3 / kernel_ms:>7.1%} "
              f"{counts[key]:>8.0f} {micros / counts[key]:>10.0f}")


if __name__ == "__main__":
    main()
