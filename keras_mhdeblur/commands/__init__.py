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


def check_inference_arguments(args):
    """--overlap against --tile, and --self-ensemble, before any model is loaded."""
    from keras_mhdeblur.inference import SELF_ENSEMBLE_SIZES

    if args.tile is not None and not 0 <= args.overlap < args.tile:
        raise CommandError(f"--overlap must be in [0, --tile) = [0, {args.tile}); got "
                           f"{args.overlap}")
    if args.self_ensemble not in SELF_ENSEMBLE_SIZES:
        raise CommandError(f"--self-ensemble must be one of "
                           f"{', '.join(map(str, SELF_ENSEMBLE_SIZES))}; got {args.self_ensemble}")


def inference_model(model, args):
    """`model` as --tlc asks (its TLC version, or itself), padding as --pad-mode asks where the
    command has it; checks the inference flags."""
    from keras_mhdeblur.models.surgery import with_tlc

    check_inference_arguments(args)
    if args.tlc is not None:
        try:
            model = with_tlc(model, args.tlc)
        except ValueError as error:
            raise CommandError(f"--tlc: {error}") from None
    pad_mode = getattr(args, "pad_mode", "model")
    return model if pad_mode == "model" else model.set_pad_mode(pad_mode)


def load_inference_model(args):
    """The model of args.model for inference, converted to TLC when --tlc is given."""
    from keras_mhdeblur.saving import load_model

    check_inference_arguments(args)
    return inference_model(load_model(args.model, compile=False), args)


def find_pair_set(data, split=None, limit=None, allow_unpaired=False):
    """`find_pairs(data, split)` (first `limit` pairs), with a hint to the flag on split errors."""
    from keras_mhdeblur.data import DataError, find_pairs

    try:
        pairs = find_pairs(data, split=split, allow_unpaired=allow_unpaired)
    except DataError as error:
        if "split" in str(error) and split is None:
            raise DataError(f"{error} (flag: --split)") from None
        raise
    if limit is not None:
        pairs = pairs.select(range(min(limit, len(pairs))))
    pairs.check()
    return pairs
