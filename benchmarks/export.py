"""TFLite export per quantization mode: file size, CPU latency and accuracy, against Keras on TF.

    python benchmarks/export.py                                     # NAFNetMH-w32, K=4 combined
    python benchmarks/export.py --sizes 256x256 --modes none,int8 --width 8 --repeats 2

One dynamic-size export per mode (so every size uses the same file), run in the LiteRT
interpreter with `--threads` threads (XNNPACK, the default CPU path) at each size; Keras
`predict` on TensorFlow is timed in the same run. Latency is the median of `--repeats` runs after
one warm-up. Accuracy on synthetic-blur pairs (256x256): PSNR of each mode's outputs against the
Keras outputs, and the change of the mean PSNR against the sharp images (all K' outputs, clipped
to [0, 1]) relative to Keras.

Random weights, with the NAFBlocks' zero-initialised beta/gamma drawn from N(0, 0.1^2): left at
zero every block is the identity and quantization would look free. Trained weights may quantize
differently; the export's own verification checks each real model.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _parse():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--sizes", default="256x256,720x1280", help="HxW, comma separated")
    parser.add_argument("--modes", default="none,float16,dynamic,int8",
                        help="quantization modes, comma separated")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per size")
    parser.add_argument("--threads", type=int, default=2, help="interpreter threads")
    parser.add_argument("--pairs", type=int, default=4, help="synthetic pairs for the PSNR")
    parser.add_argument("--calibration-samples", type=int, default=8)
    parser.add_argument("--override", default="{}",
                        help='JSON of constructor overrides, e.g. \'{"enc_blocks": [1, 1], '
                        '"dec_blocks": [1, 1]}\' for a smoke run')
    return parser.parse_args()


def _median_seconds(function, repeats):
    function()  # warm-up: tracing, allocation, XNNPACK packing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _mean_psnr(outputs, sharp):
    """Mean PSNR over pairs and outputs; outputs (N, K', H, W, 3) or (N, H, W, 3)."""
    import numpy as np

    from keras_mhdeblur.evaluation import psnr

    outputs = np.clip(outputs, 0, 1)
    if outputs.ndim == 5:
        return float(np.mean([psnr(outputs[n, k], sharp[n]) for n in range(len(outputs))
                              for k in range(outputs.shape[1])]))
    return float(np.mean([psnr(o, s) for o, s in zip(outputs, sharp)]))


def main():
    args = _parse()
    import numpy as np

    import keras_mhdeblur
    from keras_mhdeblur import export
    from keras_mhdeblur.data import make_synthetic_set
    from keras_mhdeblur.evaluation import psnr
    from keras_mhdeblur.utils.sizes import parse_size

    sizes = [parse_size(size, "--sizes") for size in args.sizes.split(",")]
    modes = args.modes.split(",")
    model = keras_mhdeblur.build_model("nafnet-w32", heads=args.heads, width=args.width,
                                       **json.loads(args.override))
    rng = np.random.default_rng(0)
    for variable in model.weights:
        if variable.path.endswith(("/beta", "/gamma")) and "norm" not in variable.path:
            variable.assign(rng.normal(0, 0.1, variable.shape).astype("float32"))
    blurry, sharp = make_synthetic_set(args.pairs, (256, 256), seed=7)
    images = {size: rng.random((1, *size, 3), dtype=np.float32) for size in sizes}

    print(f"NAFNetMH width {args.width}, K={args.heads} combined ({model.num_outputs} outputs), "
          f"{model.count_params():,} parameters; interpreter: {export.interpreter_class()[1]}, "
          f"{args.threads} threads; {os.cpu_count()} CPUs", flush=True)
    keras_reference = np.concatenate([model.predict(b[None], verbose=0) for b in blurry])
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        keras_file = Path(directory) / "model.keras"
        model.save(keras_file)
        row = {"mode": "Keras predict (TF)", "bytes": keras_file.stat().st_size,
               "export_s": None, "vs_keras": None, "delta": 0.0}
        for size in sizes:
            row[size] = _median_seconds(lambda: model.predict(images[size], verbose=0),
                                        args.repeats)
        rows.append(row)
        print(row, flush=True)
        base_psnr = _mean_psnr(keras_reference, sharp)
        for mode in modes:
            start = time.perf_counter()
            result = export.export_tflite(
                model, Path(directory) / f"{mode}.tflite", quantize=mode,
                calibration_samples=args.calibration_samples, calibration_size=(256, 256))
            row = {"mode": mode, "bytes": result.size_bytes,
                   "export_s": time.perf_counter() - start}
            interpreter = export.make_interpreter(result.path, num_threads=args.threads)
            for size in sizes:
                row[size] = _median_seconds(
                    lambda: export.run_interpreter(interpreter, images[size]), args.repeats)
            outputs = np.concatenate([export.run_interpreter(interpreter, b[None])
                                      for b in blurry])
            row["vs_keras"] = float(np.mean([psnr(o, r)
                                             for o, r in zip(outputs, keras_reference)]))
            row["delta"] = _mean_psnr(outputs, sharp) - base_psnr
            rows.append(row)
            print({k: v for k, v in row.items() if k != "mode"} | {"mode": mode}, flush=True)

    float32_bytes = next((r["bytes"] for r in rows if r["mode"] == "none"), None)
    size_names = [f"{h}x{w} ms" for h, w in sizes]
    header = (f"| {'mode':<18} | {'file MB':>8} | {'x float32':>9} | "
              + " | ".join(f"{name:>13}" for name in size_names)
              + f" | {'PSNR vs Keras':>13} | {'dPSNR vs sharp':>14} | {'export s':>8} |")
    print()
    print(f"Keras PSNR vs sharp (mean of {model.num_outputs} outputs, {args.pairs} synthetic "
          f"pairs 256x256, random weights): {base_psnr:.2f} dB")
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    for row in rows:
        ratio = f"{row['bytes'] / float32_bytes:.2f}" if float32_bytes else "-"
        cells = [f"{row['mode']:<18}", f"{row['bytes'] / 1e6:8.2f}", f"{ratio:>9}"]
        cells += [f"{row[size] * 1000:13.0f}" for size in sizes]
        cells.append(f"{row['vs_keras']:13.1f}" if row["vs_keras"] is not None else f"{'-':>13}")
        cells.append(f"{row['delta']:+14.3f}")
        cells.append(f"{row['export_s']:8.0f}" if row["export_s"] is not None else f"{'-':>8}")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
