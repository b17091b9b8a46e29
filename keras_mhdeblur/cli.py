"""The `mhdeblur` command. Thin: every subcommand parses its flags and calls the library.

Each subcommand lives in the module that owns its work and registers itself here through a
`register(subparsers)` function, so adding one is one line in `SUBCOMMAND_MODULES`.
"""

import argparse
import importlib
import os
import sys
import tempfile

from keras_mhdeblur import __version__

# TensorFlow's C++ start-up chatter would bury the command's own output. The commands import it
# only when they run (so --help and --version start in a fraction of a second); then
# `_import_backend_quietly` holds back what the import prints unless the import fails.
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
    "keras_mhdeblur.commands.make_synthetic",
    "keras_mhdeblur.commands.export",
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mhdeblur",
        description="Multi-head image deblurring (arXiv 2208.13029) with Keras 3.",
    )
    parser.add_argument("--version", action="version", version=f"mhdeblur {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _import_backend_quietly():
    """Imports Keras and its backend with file descriptor 2 captured: TensorFlow's native
    start-up lines (absl's "I0000 ... oneDNN custom operations are on", which the log-level
    variables do not silence once Python is running) go nowhere, unless the import fails, when
    they are replayed with the error."""
    if "keras" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _import_backend_quietly()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("mhdeblur: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
