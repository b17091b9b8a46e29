"""Peak memory (RSS) and time of one forward pass of named models at a given image size.

    python benchmarks/forward_memory.py --model hinet --model mprnet --size 720x1280

Each model runs in its own subprocess so that its peak RSS (`ru_maxrss`) is its own. Prints the
peak RSS after construction and after the forward passes (GiB), the first call's time and the
fastest of the following calls (seconds). Backend: KERAS_BACKEND (TensorFlow by default);
the forward pass is an eager `model(image)` call on a (batch, H, W, 3) random image.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _peak_rss_gib():
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def measure(model_name, height, width, heads, batch, repeats):
    """Runs in the child process; returns the figures as a dict."""
    import keras
    import numpy as np

    import keras_mhdeblur

    start = time.perf_counter()
    model = keras_mhdeblur.build_model(model_name, heads=heads)
    build_seconds = time.perf_counter() - start
    build_rss = _peak_rss_gib()
    image = np.random.default_rng(0).uniform(size=(batch, height, width, 3)).astype("float32")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = model(image)
        keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)  # wait for the result
        times.append(time.perf_counter() - start)
        del outputs
    return {"model": model_name, "backend": keras.backend.backend(), "heads": heads,
            "size": f"{batch}x{height}x{width}", "parameters": int(model.count_params()),
            "build_s": round(build_seconds, 1), "rss_after_build_gib": round(build_rss, 2),
            "peak_rss_gib": round(_peak_rss_gib(), 2), "first_call_s": round(times[0], 1),
            "best_later_call_s": round(min(times[1:]), 1) if len(times) > 1 else None}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True,
                        help="a named config (hinet, mprnet, restormer, nafnet-w32, ...); "
                             "repeat for several")
    parser.add_argument("--size", default="720x1280", help="HxW (default 720x1280, GoPro)")
    parser.add_argument("--heads", type=int, default=4, help="K (1: the single-head model)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2,
                        help="forward passes (the first includes one-off set-up)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        height, width = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must look like 720x1280, got {args.size!r}")

    if args.child:
        print("RESULT " + json.dumps(measure(args.model[0], height, width, args.heads,
                                             args.batch, args.repeats)))
        return 0

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                      os.environ.get("PYTHONPATH")]))}
    status = 0
    for name in args.model:
        command = [sys.executable, __file__, "--child", "--model", name, "--size", args.size,
                   "--heads", str(args.heads), "--batch", str(args.batch),
                   "--repeats", str(args.repeats)]
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
        if result.returncode or not lines:
            status = 1
            print(f"{name}: failed (exit {result.returncode})\n{result.stderr[-3000:]}",
                  file=sys.stderr)
            continue
        figures = json.loads(lines[-1][len("RESULT "):])
        print(", ".join(f"{key} {value}" for key, value in figures.items()), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
