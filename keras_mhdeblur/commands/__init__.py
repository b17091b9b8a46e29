"""The `mhdeblur` subcommands, one module each, thin over the library; shared argument helpers.

Each module's `register(subparsers)` adds its parser; its `func(args)` returns the exit code:
0 done, 1 a problem with the inputs (the message names the file or argument), 130 interrupted.
"""

import functools
import sys


class CommandError(ValueError):
    """Arguments that cannot work together; the message names them."""


def user_errors():
    """Exceptions that mean "bad input" (printed as one line, exit code 1), not a bug."""
    from keras_mhdeblur.data.io import DataError
    from keras_mhdeblur.saving import ModelFileError
    from keras_mhdeblur.training import RunError

    from keras_mhdeblur.presets import PresetError

    errors = [CommandError, DataError, ModelFileError, RunError, PresetError]
    try:
        from keras_mhdeblur.export import ExportError
        errors.append(ExportError)
    except ImportError:
        pass
    return tuple(errors)


def reports_errors(command):
    """Decorates `func(args)`: user errors become `mhdeblur COMMAND: error: ...` and exit code 1."""
    def decorate(function):
        @functools.wraps(function)
        def run(args):
            try:
                return function(args)
            except user_errors() as error:
                print(f"mhdeblur {command}: error: {error}", file=sys.stderr)
                return 1
        return run
    return decorate


def add_scoring_arguments(parser, model_help, data_help):
    """MODEL, --data, --split and --limit, shared by evaluate and select-head; then the
    inference arguments."""
    from keras_mhdeblur.cli import positive_int

    parser.add_argument("model", metavar="MODEL", help=model_help)
    parser.add_argument("--data", required=True, metavar="DIR", help=data_help)
    parser.add_argument("--split", help="split of --data, e.g. test (GoPro)")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="only the first N pairs")
    add_inference_arguments(parser)


def add_inference_arguments(parser):
    """--tile, --overlap and --tlc, shared by evaluate, select-head and deblur."""
    from keras_mhdeblur.cli import image_size, positive_int

    parser.add_argument("--tile", type=positive_int, default=None, metavar="N",
                        help="run on N x N tiles blended over --overlap pixels (large photos; "
                        "default: the whole image at once)")
    parser.add_argument("--overlap", type=int, default=32, metavar="M",
                        help="pixels shared by neighbouring tiles (default 32)")
    parser.add_argument("--tlc", type=image_size, default=None, metavar="HxW",
                        help="NAFNet only: test-time local pooling (TLC) for this training crop "
                        "size, e.g. 256x256 (METHOD 6.3)")


def check_tiling(args):
    if args.tile is not None and not 0 <= args.overlap < args.tile:
        raise CommandError(f"--overlap must be in [0, --tile) = [0, {args.tile}); got "
                           f"{args.overlap}")


def inference_model(model, args):
    """`model` as --tlc asks (its TLC version, or itself); checks --tile/--overlap."""
    from keras_mhdeblur.inference import with_tlc

    check_tiling(args)
    if args.tlc is None:
        return model
    try:
        return with_tlc(model, args.tlc)
    except ValueError as error:
        raise CommandError(f"--tlc: {error}") from None


def load_inference_model(args):
    """The model of args.model for inference, converted to TLC when --tlc is given."""
    from keras_mhdeblur.saving import load_model

    check_tiling(args)
    return inference_model(load_model(args.model, compile=False), args)


def find_pair_set(data, split=None, limit=None):
    """`find_pairs(data, split)` (first `limit` pairs), with a hint to the flag on split errors."""
    from keras_mhdeblur.data import DataError, find_pairs

    try:
        pairs = find_pairs(data, split=split)
    except DataError as error:
        if "split" in str(error) and split is None:
            raise DataError(f"{error} (flag: --split)") from None
        raise
    if limit is not None:
        pairs = pairs.select(range(min(limit, len(pairs))))
    pairs.check()
    return pairs
