"""Exports a keras_mhdeblur model to a verified TensorFlow SavedModel folder.

    python tools/export_savedmodel.py MODEL OUT_DIR [--output all|shipped|auto|selected|N]
        [--layout heads|channels] [--uint8-io] [--overwrite]

Signature "serving_default": input "image" (B, H, W, 3) float32 in [0, 1] (any B, H, W), output
"output". The same as `mhdeblur export MODEL OUT_DIR --format savedmodel`
(keras_mhdeblur.commands.export); `main(argv)` returns the exit status (0 written and verified,
1 export failed, 2 bad command line).
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow starts, as mhdeblur does
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_mhdeblur.commands import export  # noqa: E402


def main(argv=None):
    return export.main(argv, file_format="savedmodel", prog="export_savedmodel.py")


if __name__ == "__main__":
    sys.exit(main())
