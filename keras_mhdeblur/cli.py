"""The `mhdeblur` command. Thin: every subcommand parses its flags and calls the library.

Each subcommand lives in the module that owns its work and registers itself here through a
`register(subparsers)` function, so adding one is one line in `SUBCOMMAND_MODULES`.
"""

import argparse
import importlib
import os
import sys

# TensorFlow's C++ start-up chatter would bury the command's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Modules that contribute subcommands; each defines `register(subparsers)` which adds a parser
# whose default `func(args) -> int` runs it.
SUBCOMMAND_MODULES = (
    "keras_mhdeblur.commands.train",
    "keras_mhdeblur.commands.evaluate",
    "keras_mhdeblur.commands.select_head",
    "keras_mhdeblur.commands.add_scorer",
    "keras_mhdeblur.commands.presets",
    "keras_mhdeblur.commands.deblur",
    "keras_mhdeblur.commands.demo",
    "keras_mhdeblur.data.cli",
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mhdeblur",
        description="Multi-head image deblurring (arXiv 2208.13029) with Keras 3.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("mhdeblur: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
