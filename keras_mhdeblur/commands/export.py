"""`mhdeblur export`: a model to a TFLite file or a SavedModel folder, verified against Keras
before it is written (keras_mhdeblur.export). `tools/export_tflite.py` and
`tools/export_savedmodel.py` are this command with the format fixed (`main`)."""

import argparse
from pathlib import Path

from keras_mhdeblur.commands import CommandError, reports_errors
from keras_mhdeblur.commands.arguments import image_size, positive_int

FORMATS = ("tflite", "savedmodel")
# keras_mhdeblur.export.QUANTIZATIONS and LAYOUTS, spelt out so that building the parser
# (`mhdeblur --help`) does not import TensorFlow; tests/test_export.py checks they agree.
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
LAYOUTS = ("heads", "channels")
# The flags only a TFLite file has (dest -> flag): given for a SavedModel, they are an error.
TFLITE_FLAGS = {"input_size": "--input-size", "tlc": "--tlc", "quantize": "--quantize",
                "representative": "--representative",
                "calibration_samples": "--calibration-samples",
                "calibration_size": "--calibration-size", "max_error": "--max-error",
                "min_psnr": "--min-psnr"}


def register(subparsers):
    parser = subparsers.add_parser(
        "export", help="export a model to a verified TFLite file or SavedModel folder",
        description="Export MODEL (a .keras file or a preset) to OUT: a TFLite / LiteRT file "
        "when OUT ends in .tflite, else a SavedModel folder (--format chooses explicitly). The "
        "exported model runs on a random and a synthetic-blur image and must agree with Keras "
        "within the tolerance of its quantization mode; otherwise nothing is written and the "
        "exit code is 1. An existing OUT is replaced only with --overwrite.")
    add_export_arguments(parser)


def main(argv=None, file_format=None, prog=None):
    """The command as a program of its own, with `file_format` fixed (the tools/ wrappers).
    Returns the exit code; a bad command line exits with 2 (argparse)."""
    what = {"tflite": "a verified .tflite file (LiteRT)",
            "savedmodel": "a verified SavedModel folder"}[file_format]
    parser = argparse.ArgumentParser(
        prog=prog, description=f"Export a keras_mhdeblur model to {what}: `mhdeblur export "
        f"--format {file_format}`.")
    add_export_arguments(parser, file_format)
    args = parser.parse_args(argv)
    return args.func(args)


def add_export_arguments(parser, file_format=None):
    """MODEL, OUT and the export flags; --format unless `file_format` fixes it, and the TFLite
    flags unless it is "savedmodel"."""
    out_help = {"tflite": "the .tflite file to write",
                "savedmodel": "the SavedModel folder to write"}.get(
        file_format, "the .tflite file or the SavedModel folder to write")
    parser.add_argument("model", metavar="MODEL",
                        help="a .keras file, or a preset (name or folder)")
    parser.add_argument("out", metavar="OUT", help=out_help)
    if file_format is None:
        parser.add_argument("--format", choices=FORMATS,
                            help="tflite or savedmodel (default: tflite when OUT ends in "
                            ".tflite, else a SavedModel folder)")
    parser.add_argument("--output", metavar="all|shipped|auto|selected|K",
                        help="which output to export: all, shipped (auto with a scoring branch, "
                        "else the selected head), auto (the scoring branch's fusion), selected "
                        "or an output index (default: shipped when the model has a scoring "
                        "branch or a selected head, else all)")
    # The flag's old name, still accepted ("heads" means K, the number of heads, everywhere else).
    parser.add_argument("--heads", dest="output", help=argparse.SUPPRESS)
    parser.add_argument("--layout", choices=LAYOUTS, default="heads",
                        help="heads: (1, K', H, W, 3) like Keras; channels: (1, H, W, 3K'), "
                        "output k in channels 3k..3k+2, for mobile GPU delegates (default: heads)")
    parser.add_argument("--uint8-io", action="store_true",
                        help="uint8 RGB input and output, scaling and clamping built in")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    if file_format != "savedmodel":
        add_tflite_arguments(parser if file_format else parser.add_argument_group("TFLite only"))
    parser.set_defaults(func=export_command, format=file_format)


def add_tflite_arguments(parser):
    """The flags of TFLite exports; their defaults are None so that a SavedModel export can tell
    they were given."""
    parser.add_argument("--input-size", type=image_size, metavar="HxW",
                        help="fixed input size (mobile GPU delegates need one); default: dynamic "
                        "H and W (resize_tensor_input in the interpreter)")
    parser.add_argument("--tlc", type=image_size, metavar="TRAIN_HxW",
                        help="export the TLC version of a NAFNet trained on TRAIN_HxW crops "
                        "(needs --input-size)")
    parser.add_argument("--quantize", choices=QUANTIZATIONS,
                        help="none (float32), float16 (weights), dynamic (int8 weights), int8 "
                        "(full integer, calibrated); default: none")
    parser.add_argument("--representative", metavar="DIR",
                        help="images for int8 calibration (default: synthetic blur)")
    parser.add_argument("--calibration-samples", type=positive_int, metavar="N",
                        help="number of int8 calibration images (default: 16)")
    parser.add_argument("--calibration-size", type=image_size, metavar="HxW",
                        help="size of the int8 calibration crops (default: --input-size, or "
                        "128x128 for dynamic sizes)")
    parser.add_argument("--max-error", type=float,
                        help="override the verification's max abs error (output units)")
    parser.add_argument("--min-psnr", type=float,
                        help="override the verification's minimum PSNR vs Keras (dB)")


def export_format(args):
    """"tflite" or "savedmodel": --format, else what OUT's name says."""
    if args.format is not None:
        return args.format
    return "tflite" if Path(args.out).suffix.lower() == ".tflite" else "savedmodel"


@reports_errors("export")
def export_command(args):
    file_format = export_format(args)
    if file_format == "savedmodel":
        given = [flag for dest, flag in TFLITE_FLAGS.items()
                 if getattr(args, dest, None) is not None]
        if given:  # said before TensorFlow starts
            raise CommandError(f"{', '.join(given)}: only for TFLite files, and OUT {args.out} "
                               "is written as a SavedModel folder (name it *.tflite or pass "
                               "--format tflite)")

    from keras_mhdeblur.export import ExportVerificationError, export_saved_model, export_tflite

    options = dict(output=args.output, layout=args.layout, uint8_io=args.uint8_io,
                   overwrite=args.overwrite)
    try:
        if file_format == "tflite":
            result = export_tflite(args.model, args.out, **options, **tflite_options(args))
        else:
            result = export_saved_model(args.model, args.out, **options)
    except ExportVerificationError as error:  # the file was made but is wrong: not written
        raise CommandError(str(error)) from None
    print(result)
    return 0


def tflite_options(args):
    """export_tflite's TFLite arguments from the flags given (the others keep their defaults)."""
    from keras_mhdeblur.export import Tolerance

    options = {dest: getattr(args, dest) for dest in
               ("input_size", "tlc", "quantize", "representative", "calibration_samples",
                "calibration_size") if getattr(args, dest) is not None}
    if args.max_error is not None or args.min_psnr is not None:
        options["tolerance"] = Tolerance(args.max_error, args.min_psnr)
    return options
