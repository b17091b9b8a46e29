"""`mhdeblur deblur`: deblur photos with a trained model, as PNGs (and contact sheets)."""

import glob
import sys
import time
from pathlib import Path

from keras_mhdeblur.commands import (CommandError, check_inference_arguments, inference_model,
                                     reports_errors)
from keras_mhdeblur.commands.arguments import add_inference_arguments, add_pad_mode_argument

# --model's word for choosing a preset per photo (`presets.routing`).
AUTO = "auto"


def register(subparsers):
    parser = subparsers.add_parser(
        "deblur", help="deblur photos (files, folders or globs) into PNGs",
        description="Deblur every INPUT (image files, folders of images, or glob patterns) at "
        "full resolution and write OUT_DIR/NAME.png from the model's shipped output (auto or "
        "its selected head, see select-head), or every output with --all-heads "
        "(NAME_out{k}.png). With no --model (or --model auto) the preset router reads each "
        "photo's blur and picks the preset for it (the default preset, or the long-smear one; "
        "docs/presets.md, \"One preset per photo\"); without a router, the default preset "
        "deblurs. Large photos: --tile "
        "runs overlapping tiles blended together. Existing files are never replaced without "
        "--overwrite. (`mhdeblur deblur MODEL INPUT...`, the model first, works too.)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders, globs")
    parser.add_argument("--model", metavar="NAME|FILE|auto", default=None,
                        help="a preset name or folder, a .keras file, or auto: a preset per "
                        "photo chosen by the preset router (default: auto when the package "
                        "ships the router, else the default preset; `mhdeblur presets`)")
    parser.add_argument("--out", default="deblurred", metavar="OUT_DIR",
                        help="output folder (default ./deblurred)")
    parser.add_argument("--all-heads", action="store_true",
                        help="write every output as NAME_out{k}.png")
    parser.add_argument("--output", metavar="shipped|auto|selected|K",
                        help="which output to write: shipped (default: auto for a model with a "
                        "scoring branch, else its selected head), auto (the scoring branch's "
                        "fusion), selected or an output index")
    parser.add_argument("--sheet", action="store_true",
                        help="also write NAME_sheet.png: input, every output and the per-pixel "
                        "spread across heads (bright = the heads disagree)")
    parser.add_argument("--grey-as-colour", action="store_true",
                        help="restore a grey (black-and-white) photo like a colour one; by "
                        "default its outputs are written grey, since any colour in them was "
                        "made up by the network")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_inference_arguments(parser)
    add_pad_mode_argument(parser, "reflect")
    parser.set_defaults(func=deblur_command)


def _looks_like_model(item):
    from keras_mhdeblur.presets import is_preset_folder, shipped_presets

    path = Path(item)
    return (path.suffix.lower() in (".keras", ".h5") or is_preset_folder(path)
            or (str(item) in shipped_presets() and not path.exists()))


def choose_model(args):
    """Fills in args.model: --model, else a leading model argument, else auto (a preset per
    photo) when the preset router is shipped, else the default preset."""
    from keras_mhdeblur.presets import default_preset
    from keras_mhdeblur.presets.routing import shipped_router_record

    if args.model is None and len(args.inputs) > 1 and _looks_like_model(args.inputs[0]):
        args.model, args.inputs = args.inputs[0], args.inputs[1:]
    if args.model is None:
        args.model = AUTO if shipped_router_record() is not None else default_preset()
        if args.model is None:
            raise CommandError("no --model given and this installation ships no preset; pass "
                               "--model FILE (a .keras file or a preset folder)")


def models_per_photo(args, paths):
    """({path: model name or file}, {path: why, or None}): args.model for every photo, or
    with --model auto the router's choice for each."""
    from keras_mhdeblur.data.io import read_image
    from keras_mhdeblur.presets.routing import shipped_router

    if args.model != AUTO or Path(AUTO).exists():
        return {path: args.model for path in paths}, dict.fromkeys(paths)
    router = shipped_router()
    if router is None:
        raise CommandError("--model auto: this installation ships no preset router "
                           "(presets/router/ and both its presets); name a preset instead")
    choices = {path: router.choose(read_image(path)) for path in paths}
    return ({path: choice.preset for path, choice in choices.items()},
            {path: f"router: {router.explain(choice)}" for path, choice in choices.items()})


def load_models(args, names):
    """{name: model} of every model some photo needs (TLC with --tlc), with the notes on its
    outputs."""
    from keras_mhdeblur.saving import load_model

    models = {}
    for name in dict.fromkeys(names):
        model = models[name] = inference_model(load_model(name, compile=False), args)
        if args.output == "auto" and model.output_scorer is None:
            print(f"mhdeblur deblur: note: {name} has no scoring branch; --output auto writes "
                  "its selected head", file=sys.stderr)
        if (args.output in (None, "shipped") and model.num_outputs > 1
                and model.output_scorer is None and model.selected_output is None
                and not args.all_heads):
            print(f"mhdeblur deblur: warning: {name} has no selected head (run `mhdeblur "
                  "select-head` on validation data); writing output 0", file=sys.stderr)
    return models


def output_plan(args, model):
    """(chosen, which): the output `deblur` writes (`inference.output_choice`) and what
    `restore` must return for the files asked for."""
    from keras_mhdeblur.inference import output_choice

    try:
        chosen = output_choice(model, "shipped" if args.output is None else args.output)
    except ValueError as error:
        raise CommandError(f"--output {args.output}: {error}") from None
    if chosen in ("all", "all+auto") and model.num_outputs > 1:
        raise CommandError(f"--output {args.output}: deblur writes one image per photo; use "
                           "--all-heads for every output")
    # Every output is restored once when the files need them all; the chosen one is then picked.
    every = args.all_heads or args.sheet
    which = ("all+auto" if chosen == "auto" else "all") if every else chosen
    return chosen, which


def expand_inputs(inputs):
    """Image paths from files, folders (their images, sorted) and glob patterns, in order."""
    from keras_mhdeblur.data.io import IMAGE_EXTENSIONS

    found = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = sorted(p for p in path.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not images:
                raise CommandError(f"{path}: folder holds no images "
                                   f"({', '.join(IMAGE_EXTENSIONS)})")
            found += images
        elif path.is_file():
            found.append(path)
        else:
            matches = sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
            if not matches:
                raise CommandError(f"{item}: no such file or folder, and no file matches it as a "
                                   "pattern")
            found += matches
    unique = list(dict.fromkeys(found))
    stems = {}
    for path in unique:
        if path.stem in stems:
            raise CommandError(f"{stems[path.stem]} and {path} would both be written as "
                               f"{path.stem}.png; deblur them into different --out folders")
        stems[path.stem] = path
    return unique


def planned_outputs(path, out_dir, num_outputs, all_heads, sheet):
    """The files deblurring `path` writes."""
    stem = Path(path).stem
    files = ([out_dir / f"{stem}_out{k}.png" for k in range(num_outputs)] if all_heads
             else [out_dir / f"{stem}.png"])
    if sheet:
        files.append(out_dir / f"{stem}_sheet.png")
    return files


@reports_errors("deblur")
def deblur_command(args):
    from keras_mhdeblur.data.io import inspect_image, read_image, write_png
    from keras_mhdeblur.inference import restore
    from keras_mhdeblur.visualize import contact_sheet

    choose_model(args)
    check_inference_arguments(args)
    paths = expand_inputs(args.inputs)
    for path in paths:
        inspect_image(path)  # unreadable photos fail here, before any work
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise CommandError(f"--out {out_dir}: exists and is not a folder")
    names, reasons = models_per_photo(args, paths)
    models = load_models(args, names.values())
    plans = {name: output_plan(args, model) for name, model in models.items()}
    plan = {path: planned_outputs(path, out_dir, models[names[path]].num_outputs,
                                  args.all_heads and models[names[path]].num_outputs > 1,
                                  args.sheet) for path in paths}
    existing = [str(f) for files in plan.values() for f in files if f.exists()]
    if existing and not args.overwrite:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3
                                          else "")
        raise CommandError(f"{shown}: already exist{'s' if len(existing) == 1 else ''}; pass "
                           "--overwrite to replace, or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    for number, path in enumerate(paths, 1):
        start = time.perf_counter()
        model, (chosen, which) = models[names[path]], plans[names[path]]
        outputs, auto = model.num_outputs, chosen == "auto"
        image = read_image(path)
        restored = restore(model, image, which=which, tile=args.tile, overlap=args.overlap,
                           self_ensemble=args.self_ensemble, keep_grey=not args.grey_as_colour)
        files = plan[path]
        if args.all_heads and outputs > 1:
            for k in range(outputs):
                write_png(files[k], restored[k])
        elif restored.ndim == 4:
            write_png(files[0], restored[-1] if auto else restored[chosen])
        else:
            write_png(files[0], restored)
        if args.sheet:
            labels = [f"out {k}{' (selected)' if k == model.selected_output else ''}"
                      for k in range(outputs)]
            extra = [("auto", restored[-1])] if auto and restored.ndim == 4 else ()
            heads = restored[:outputs] if restored.ndim == 4 else restored
            write_png(files[-1], contact_sheet(image, heads, labels, extra=extra))
        height, width = image.shape[:2]
        chosen_by = f" with {names[path]} ({reasons[path]})" if reasons[path] else ""
        print(f"[{number}/{len(paths)}] {path} ({width}x{height}) -> "
              f"{', '.join(f.name for f in files)}{chosen_by} in "
              f"{time.perf_counter() - start:.1f} s")
    return 0
