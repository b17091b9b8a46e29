"""Exports a keras_mhdeblur model (.keras) to a TFLite / LiteRT file, verified in the interpreter.

    python tools/export_tflite.py MODEL.keras OUT.tflite [--heads all|selected|N]
        [--layout heads|channels] [--input-size HxW] [--tlc TRAIN_HxW]
        [--quantize none|float16|dynamic|int8] [--representative DIR] [--uint8-io] [--overwrite]

Thin over `keras_mhdeblur.export.export_tflite`; also callable as `main(argv)` (returns the exit
status: 0 written and verified, 1 export or verification failed, 2 bad command line).
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_mhdeblur import export  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(
        description="Export a keras_mhdeblur model to a verified .tflite file (LiteRT).")
    parser.add_argument("model", help="the .keras file, or a preset (name or folder)")
    parser.add_argument("output", help="the .tflite file to write")
    parser.add_argument("--input-size", metavar="HxW",
                        help="fixed input size (mobile GPU delegates need one); default: dynamic "
                        "H and W (resize_tensor_input in the interpreter)")
    parser.add_argument("--tlc", metavar="TRAIN_HxW",
                        help="export the TLC version of a NAFNet trained on TRAIN_HxW crops "
                        "(needs --input-size)")
    parser.add_argument("--quantize", choices=export.QUANTIZATIONS, default="none",
                        help="none (float32), float16 (weights), dynamic (int8 weights), int8 "
                        "(full integer, calibrated); default: none")
    parser.add_argument("--representative", metavar="DIR",
                        help="images for int8 calibration (default: synthetic blur)")
    parser.add_argument("--calibration-samples", type=int, default=16,
                        help="number of int8 calibration images (default: 16)")
    parser.add_argument("--max-error", type=float,
                        help="override the verification's max abs error (output units)")
    parser.add_argument("--min-psnr", type=float,
                        help="override the verification's minimum PSNR vs Keras (dB)")
    export.add_output_arguments(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    tolerance = None
    if args.max_error is not None or args.min_psnr is not None:
        tolerance = export.Tolerance(args.max_error, args.min_psnr)
    try:
        result = export.export_tflite(
            args.model, args.output, heads=args.heads, layout=args.layout,
            input_size=args.input_size, tlc=args.tlc, quantize=args.quantize,
            uint8_io=args.uint8_io, representative=args.representative,
            calibration_samples=args.calibration_samples, tolerance=tolerance,
            overwrite=args.overwrite)
    except (export.ExportError, export.ExportVerificationError) as error:
        print(f"export_tflite: error: {error}", file=sys.stderr)
        return 1
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
