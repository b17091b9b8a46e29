"""Argument types and the flags several commands share, in one place the commands import."""

import argparse
import json

from keras_mhdeblur.commands import CommandError
from keras_mhdeblur.utils.sizes import parse_size


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def blur_octaves(text):
    """argparse type: the longest shake length in pixels, a power of two of at least 2 -> the
    octaves (1, 2), (2, 4), ... up to it (`presets.measure.octaves_up_to`)."""
    from keras_mhdeblur.presets.measure import octaves_up_to

    expected = f"expected a power of two of at least 2 px, got {text!r}"
    try:
        octaves = octaves_up_to(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(expected) from None
    if octaves is None:
        raise argparse.ArgumentTypeError(expected)
    return octaves


def image_size(text, minimum=8):
    """argparse type: "HxW" or "S" (square) -> (H, W), both at least `minimum` (8)."""
    try:
        return parse_size(text, "size", minimum=minimum)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("size: ")) from None


def add_scoring_arguments(parser, model_help, data_help):
    """MODEL, --data, --split and --limit, shared by evaluate and select-head; then the
    inference arguments."""
    parser.add_argument("model", metavar="MODEL", help=model_help)
    parser.add_argument("--data", required=True, metavar="DIR", help=data_help)
    parser.add_argument("--split", help="split of --data, e.g. test (GoPro)")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="only the first N pairs")
    parser.add_argument("--allow-unpaired", action="store_true",
                        help="skip images that have no partner (with a warning) instead of "
                        "stopping with the list of them")
    add_inference_arguments(parser)


def add_inference_arguments(parser):
    """--tile, --overlap, --tlc and --self-ensemble, shared by evaluate, select-head and deblur."""
    parser.add_argument("--tile", type=positive_int, default=None, metavar="N",
                        help="run on N x N tiles blended over --overlap pixels (large photos; "
                        "default: the whole image at once)")
    parser.add_argument("--overlap", type=int, default=32, metavar="M",
                        help="pixels shared by neighbouring tiles (default 32)")
    parser.add_argument("--tlc", type=image_size, default=None, metavar="HxW",
                        help="NAFNet only: test-time local pooling (TLC) for this training crop "
                        "size, e.g. 256x256 (docs/method.md, 'TLC')")
    parser.add_argument("--self-ensemble", type=int, default=1, metavar="N",
                        help="average the outputs of N flips and transposes of each image: 1, 2, "
                        "4 or 8 (N times the time; docs/presets.md, 'Self-ensemble'; default 1)")


# `models.base.PAD_MODES`, without importing Keras to parse a command line.
PAD_MODE_CHOICES = ("reflect", "constant")


def add_pad_mode_argument(parser, default):
    """--pad-mode, for deblur (default reflect: photos of any size) and evaluate (default the
    model's own, as the official protocol pads)."""
    parser.add_argument("--pad-mode", choices=PAD_MODE_CHOICES + ("model",), default=default,
                        help="how a side that is not a multiple of 16 is padded: reflect, "
                        "constant (zeros, the official NAFNet and HINet code) or model (the "
                        "model's own: reflect for the shipped presets); a network trained on "
                        "crops restores little of a photo padded with zeros "
                        f"(docs/presets.md, 'Padding a photo'; default {default})")


def _parse_value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        try:
            return [int(part) for part in text.split(",")]
        except ValueError:
            pass
    return text


def key_values(items, flag="--override", example="enc_blocks=1,1"):
    """{key: value} from repeated KEY=VALUE arguments of `flag`; a value is JSON (0, null,
    [1, 2]) or comma-separated integers, else the text."""
    values = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise CommandError(f"{flag} {item!r}: expected KEY=VALUE, e.g. {example}")
        values[key.strip()] = _parse_value(value.strip())
    return values


def blur_changes(items, flag="--blur"):
    """{setting: value} from repeated KEY=VALUE arguments (`key_values`, e.g. steady_share=0.5,
    blur_pixels=[1,32], jpeg_quality=null), checked against `data.BlurSettings`; a
    `CommandError` names the flag, the item and the known settings."""
    import dataclasses

    from keras_mhdeblur.data import BlurSettings

    changes = key_values(items, flag, "steady_share=0.5")
    known = [field.name for field in dataclasses.fields(BlurSettings) if field.name != "label"]
    for item in items:
        if item.partition("=")[0].strip() not in known:
            raise CommandError(f"{flag} {item!r}: not a blur setting; known: {', '.join(known)}")
    try:
        BlurSettings(**changes)
    except (TypeError, ValueError) as error:
        raise CommandError(f"{flag}: {error}") from None
    return changes
