"""Exports a keras_mhdeblur model (.keras) to a verified TensorFlow SavedModel folder.

    python tools/export_savedmodel.py MODEL.keras OUT_DIR [--heads all|selected|N]
        [--layout heads|channels] [--uint8-io] [--overwrite]

Signature "serving_default": input "image" (B, H, W, 3) float32 in [0, 1] (any B, H, W), output
"output". Thin over `keras_mhdeblur.export.export_saved_model`; also callable as `main(argv)`
(0 written and verified, 1 export failed, 2 bad command line).
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
        description="Export a keras_mhdeblur model to a verified SavedModel folder.")
    parser.add_argument("model", help="the .keras file")
    parser.add_argument("output", help="the SavedModel folder to write")
    export.add_output_arguments(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        result = export.export_saved_model(args.model, args.output, heads=args.heads,
                                           layout=args.layout, uint8_io=args.uint8_io,
                                           overwrite=args.overwrite)
    except (export.ExportError, export.ExportVerificationError) as error:
        print(f"export_savedmodel: error: {error}", file=sys.stderr)
        return 1
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
