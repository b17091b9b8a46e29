"""Where the first TensorFlow training step goes: the step's graph size, its Python trace, and
its first run (Grappler's optimisation of the graph plus one step), then a warm step.

    python benchmarks/first_step.py                      # NAFNetMH-w32 K=4, batch 1, 128x128
    python benchmarks/first_step.py --config nafnet-w64 --repeat 2
    PYTHONPATH=/path/to/an/older/checkout python benchmarks/first_step.py   # the same, before

Each repeat runs in a fresh process (a traced step is cached per process). The trace is
`get_concrete_function` of the step the model makes (`make_train_function`, as `fit` calls
it); "first run" is the first call of that traced step: Grappler, one step, and a second
trace where the first one created variables (Keras' optimiser built inside it, before
keras_mhdeblur built it first). Their sum is about what `benchmarks/train_step.py` reports as
the first step. docs/speed.md has the figures.
"""

import argparse
import json
import subprocess
import sys
import time


def _parse():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="nafnet-w32")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=1, help="fresh processes, one row each")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def measure(args):
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_mhdeblur

    keras.utils.set_random_seed(0)
    model = keras_mhdeblur.build_model(args.config, heads=args.heads)
    model.compile(optimizer=model.official_optimizer(total_steps=1000), jit_compile=False)
    images = np.random.default_rng(0).random((args.batch, args.crop, args.crop, 3),
                                             dtype=np.float32)
    model.make_train_function()
    # Keras wraps the tf.function of its step in a plain function; reach the tf.function.
    step = next(cell.cell_contents for cell in model.train_function.__closure__
                if hasattr(cell.cell_contents, "get_concrete_function"))
    batches = iter(tf.data.Dataset.from_tensors((images, images)).repeat())
    start = time.perf_counter()
    concrete = step.get_concrete_function(batches)
    trace = time.perf_counter() - start
    library = concrete.graph.as_graph_def().library.function
    nodes = max(len(function.node_def) for function in library)
    start = time.perf_counter()
    step(batches)
    first_run = time.perf_counter() - start
    start = time.perf_counter()
    step(batches)
    warm = time.perf_counter() - start
    return {"config": args.config, "nodes": nodes, "trace_s": trace, "first_run_s": first_run,
            "warm_step_s": warm}


def main():
    args = _parse()
    if args.child:
        print("ROW " + json.dumps(measure(args)), flush=True)
        return 0
    print(f"{'config':<12} {'nodes':>7} {'trace s':>8} {'first run s':>12} {'sum s':>7} "
          f"{'warm step s':>12}")
    for _ in range(args.repeat):
        child = ["--child", "--config", args.config, "--heads", str(args.heads), "--batch",
                 str(args.batch), "--crop", str(args.crop)]
        result = subprocess.run([sys.executable, __file__, *child], capture_output=True,
                                text=True)
        rows = [line for line in result.stdout.splitlines() if line.startswith("ROW ")]
        if result.returncode or not rows:
            raise SystemExit(f"the measurement failed:\n{result.stderr[-3000:]}")
        row = json.loads(rows[-1][4:])
        print(f"{row['config']:<12} {row['nodes']:>7} {row['trace_s']:>8.2f} "
              f"{row['first_run_s']:>12.2f} {row['trace_s'] + row['first_run_s']:>7.2f} "
              f"{row['warm_step_s']:>12.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
