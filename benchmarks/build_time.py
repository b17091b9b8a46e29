"""How long building each backbone takes (construction creates every weight), and its size.

    python benchmarks/build_time.py [--heads 4]

Model construction is paid by every script, test and command before its first step; it prints
seconds per backbone at its default (official) configuration and the parameter count.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_mhdeblur  # noqa: E402

BACKBONES = ("NAFNetMH", "RestormerMH", "MPRNetMH", "HINetMH")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=4)
    args = parser.parse_args()
    total = 0.0
    for name in BACKBONES:
        start = time.perf_counter()
        model = getattr(keras_mhdeblur, name)(heads=args.heads)
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{name:<12} {model.count_params():>12,} parameters  built in {seconds:5.2f} s")
    print(f"{'all four':<12} {'':>12}              {total:5.2f} s")


if __name__ == "__main__":
    main()
