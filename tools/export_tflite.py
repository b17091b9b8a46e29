"""Exports a keras_mhdeblur model to a TFLite / LiteRT file, verified in the interpreter.

    python tools/export_tflite.py MODEL OUT.tflite [--output all|shipped|auto|selected|N]
        [--layout heads|channels] [--input-size HxW] [--tlc TRAIN_HxW]
        [--quantize none|float16|dynamic|int8] [--representative DIR] [--uint8-io] [--overwrite]

The same as `mhdeblur export MODEL OUT --format tflite` (keras_mhdeblur.commands.export);
`main(argv)` returns the exit status (0 written and verified, 1 export or verification failed,
2 bad command line).
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow starts, as mhdeblur does
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_mhdeblur.commands import export  # noqa: E402


def main(argv=None):
    return export.main(argv, file_format="tflite", prog="export_tflite.py")


if __name__ == "__main__":
    sys.exit(main())
