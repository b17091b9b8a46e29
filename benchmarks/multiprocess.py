"""Train-step time on 1 process against N processes on this machine, and the traffic per step.

    python benchmarks/multiprocess.py                       # TF and JAX, 1 vs 2 processes
    python benchmarks/multiprocess.py --backends jax --processes 1,2,4 --width 32

Every configuration trains the same model on the same global batch (each of N processes gets
batch/N), 127.0.0.1 only, alternating configurations over --repeats rounds. Printed per row:
median step time after the warm-up steps, images per second, and the gradient bytes each
process sends per step in a ring all-reduce, 2 (N-1)/N x parameters x 4 bytes (float32), which
is what both engines' all-reduce moves (TF's ring / NCCL, gloo's ring on CPUs).
On one 2-core machine N processes share the same cores, so this measures the overhead of the
machinery, not a speed-up; see docs/distributed.md for the expected scaling across GPUs and hosts.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from keras_mhdeblur.distribute import local_workers

WORKER = r"""
import json, sys, time
import numpy as np
settings = json.loads(sys.argv[1])
process_id, count = settings["process_id"], len(settings["workers"])
import keras
import keras_mhdeblur
from keras_mhdeblur import distribute

cluster = (distribute.Cluster.resolve(workers=settings["workers"], process_id=process_id)
           if count > 1 else distribute.Cluster())
distribute.connect(cluster)
import tensorflow as tf

batch, crop = settings["batch"], settings["crop"]
local = batch // count
rng = np.random.default_rng(process_id)
sharp = rng.uniform(0, 1, size=(local, crop, crop, 3)).astype("float32")
blurry = (sharp + np.roll(sharp, 3, axis=2)) / 2
keras.utils.set_random_seed(0)
context = distribute.data_parallel(cluster=cluster) if count > 1 else __import__("contextlib").nullcontext()
with context:  # fit too: on JAX the distribution is read when fit runs
    model = keras_mhdeblur.NAFNetMH(heads=4, width=settings["width"], enc_blocks=(1, 1, 1, 2),
                                    middle_blocks=2, dec_blocks=(1, 1, 1, 1))
    model.compile(optimizer=model.official_optimizer(1000), jit_compile=False)
    batches = tf.data.Dataset.from_tensors((blurry, sharp)).repeat()
    data = distribute.distributed_batches(batches, local, cluster) if count > 1 else batches

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            self.times = []
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()
        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    clock = Clock()
    model.fit(data, steps_per_epoch=settings["warmup"] + settings["steps"], epochs=1, verbose=0,
              callbacks=[clock])
if process_id == 0:
    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    print("RESULT " + json.dumps({"times": clock.times[settings["warmup"]:], "params": params}))
"""


def measure(backend, count, args):
    workers = local_workers(count)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    handles = []
    for process_id in range(count):
        settings = {"process_id": process_id, "workers": workers, "batch": args.batch,
                    "crop": args.crop, "width": args.width, "warmup": args.warmup,
                    "steps": args.steps}
        handles.append(subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(settings)],
                                        env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True))
    outputs = [handle.communicate(timeout=args.timeout)[0] for handle in handles]
    for handle, output in zip(handles, outputs):
        if handle.returncode != 0:
            raise SystemExit(f"{backend}, {count} processes failed:\n{output[-3000:]}")
    line = next(line for line in outputs[0].splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--processes", default="1,2", help="comma list of process counts")
    parser.add_argument("--batch", type=int, default=4, help="global batch")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds")
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    rows = {}
    for _ in range(args.repeats):
        for backend in args.backends.split(","):
            for count in counts:
                started = time.perf_counter()
                result = measure(backend, count, args)
                rows.setdefault((backend, count), []).append(
                    (statistics.median(result["times"]), result["params"],
                     time.perf_counter() - started))
    print(f"NAFNetMH K=4 width {args.width}, blocks [1,1,1,2]/2/[1,1,1,1], global batch "
          f"{args.batch}, crop {args.crop}, {os.cpu_count()} CPU cores, {args.repeats} "
          "alternating rounds")
    print(f"{'backend':<11} {'processes':>9} {'step s':>8} {'img/s':>7} {'sent MB/step':>13} "
          f"{'launch s':>9}")
    for (backend, count), results in rows.items():
        step = statistics.median(r[0] for r in results)
        params = results[0][1]
        sent = 2 * (count - 1) / count * params * 4 / 1e6
        launch = statistics.median(r[2] for r in results)
        print(f"{backend:<11} {count:>9} {step:>8.3f} {args.batch / step:>7.2f} {sent:>13.2f} "
              f"{launch:>9.1f}")


if __name__ == "__main__":
    main()
