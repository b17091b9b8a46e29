"""`mhdeblur presets` lists the shipped presets; `mhdeblur make-preset` packs a training run's
best model as a preset folder."""

from pathlib import Path

from keras_mhdeblur.commands import CommandError, reports_errors


def register(subparsers):
    from keras_mhdeblur.commands.arguments import positive_int
    from keras_mhdeblur.commands.arguments import PAD_MODE_CHOICES
    from keras_mhdeblur.saving import WEIGHT_DTYPES

    listing = subparsers.add_parser(
        "presets", help="list the shipped presets (trained models that load by name)",
        description="List the presets shipped in the package: name, backbone, heads and "
        "outputs, parameters, file size and the held-out figures measured when it was made. "
        "Use a name wherever a model file goes (mhdeblur deblur --model NAME, evaluate NAME, "
        "keras_mhdeblur.from_preset(NAME)).")
    listing.add_argument("--json", action="store_true", help="print the full metadata as JSON")
    listing.set_defaults(func=list_presets_command)

    parser = subparsers.add_parser(
        "make-preset", help="pack a training run's best model as a preset (loads by folder)",
        description="Write RUN_DIR's best checkpoint (best.keras; model.keras with --final, or "
        "--model FILE, e.g. one with a scoring branch from add-scorer) as a preset folder: the "
        "model's config, its weights without optimiser state, and metadata with the run's "
        "recipe, data, steps and measured validation figures. Load it with "
        "keras_mhdeblur.from_preset(OUT_DIR) or give OUT_DIR wherever a model file goes.")
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a `mhdeblur train` run folder, or a preset (name or folder) to "
                        "repack, e.g. with --weights-dtype float16; its metadata is kept")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="the preset folder to write")
    parser.add_argument("--name", required=True, help="the preset's name")
    parser.add_argument("--description", default="", help="one line on what it is for")
    parser.add_argument("--final", action="store_true",
                        help="pack model.keras (the end of the run) instead of best.keras")
    parser.add_argument("--model", metavar="FILE",
                        help="pack this model file (trained in RUN_DIR) instead")
    parser.add_argument("--measure", type=positive_int, default=0, metavar="N",
                        help="also measure it on N held-out synthetic pairs (the run's blur on "
                        "photos its training never saw) and the bundled real blurry photos, "
                        "and store the figures in the metadata")
    parser.add_argument("--weights-dtype", choices=WEIGHT_DTYPES, default="float32",
                        help="store the weights in float16 to halve the preset (outputs move "
                        "by about 1/20 of an 8-bit level; --measure then measures the stored "
                        "weights; docs/presets.md, \"Weights in float16\")")
    parser.add_argument("--pad-mode", choices=PAD_MODE_CHOICES, default="reflect",
                        help="how the preset pads a side that is not a multiple of 16 (stored "
                        "in its config): reflect (default), or constant, the official zeros, "
                        "which leave most of a photo's blur "
                        "(docs/presets.md, 'Padding a photo')")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR")
    parser.set_defaults(func=make_preset_command)


def preset_metadata_of_run(run, name, description, model_file):
    """The metadata `make-preset` stores: the run's recipe and its measured figures."""
    import keras_mhdeblur

    config = run.read_config()
    state = run.read_state()
    best = state.get("best") or {}
    training = {"recipe": config, "steps_done": state.get("step"),
                "finished": bool(state.get("finished")), "source_file": model_file.name}
    if config.get("init_from"):
        training["initialised_from"] = initial_training(config["init_from"])
    return {
        "name": name,
        "description": description,
        "keras_mhdeblur_version": keras_mhdeblur.__version__,
        "training": training,
        "measured": {"validation_step": best.get("step"),
                     "validation_best_overall_psnr": best.get("best_overall_psnr"),
                     "validation_best_single_head_psnr": best.get("best_single_head_psnr"),
                     "validation_best_single_head": best.get("best_single_head")},
    }


def initial_training(init_from):
    """What a fine-tuned run started from, for its preset's metadata: the training record of the
    preset it names, or the recipe and steps of the run whose checkpoint it names; else the
    name alone."""
    from keras_mhdeblur.presets import PresetError, preset_metadata
    from keras_mhdeblur.training import RunDirectory

    record = {"model": str(init_from)}
    path = Path(init_from)
    for folder in (path.parent.parent, path.parent):  # run/checkpoints/step-N.keras, run/best.keras
        run = RunDirectory(folder)
        if path.suffix == ".keras" and run.config_path.exists():
            state = run.read_state()
            return {**record, "recipe": run.read_config(), "steps_done": state.get("step"),
                    "finished": bool(state.get("finished"))}
    try:
        return {**record, **preset_metadata(init_from).get("training", {})}
    except PresetError:
        return record


def select_on_validation(model, run, metadata):
    """Stores the best single head on the run's validation pairs (not the held-out ones)."""
    from keras_mhdeblur.evaluation import select_best_head
    from keras_mhdeblur.training import TrainConfig, validation_pairs

    config = TrainConfig.from_dict(run.read_config(), str(run.config_path))
    pairs = validation_pairs(config)
    if pairs is None:
        print(f"mhdeblur make-preset: note: {run.path} has no validation pairs; the preset has no "
              "selected head (run `mhdeblur select-head` on your own)")
        return
    selection = select_best_head(model, pairs)
    metadata["measured"]["selected_on"] = f"the run's validation pairs ({len(pairs)})"
    metadata["measured"]["selected_validation_psnr"] = selection["best_single_head_psnr"]


def measure(model, recipe, count):
    """Held-out and real-photo figures (`presets.measure`) for the metadata."""
    from keras_mhdeblur.data.sources import bundled_blurry_photo_paths
    from keras_mhdeblur.presets import HELD_OUT_SEED, held_out_pairs_for_recipe
    from keras_mhdeblur.presets.measure import (blur_length_table, by_blur_length, figures_table,
                                                held_out_figures, photo_figures)

    pairs = held_out_pairs_for_recipe(recipe, count)
    figures = {**held_out_figures(model, pairs), "seed": HELD_OUT_SEED,
               "source": "builtin:heldout"}
    print(figures_table(figures))
    octaves = by_blur_length(model, recipe, max(1, count // 2))
    print(f"per octave of shake length ({max(1, count // 2)} pairs each):\n"
          f"{blur_length_table(octaves)}")
    photos, _ = photo_figures(model, bundled_blurry_photo_paths())
    return {"held_out": figures, "by_blur_length": octaves, "real_photos": photos}


@reports_errors("make-preset")
def make_preset_command(args):
    from keras_mhdeblur.presets import PresetError, is_preset_folder, save_preset, shipped_presets
    from keras_mhdeblur.saving import load_model, round_weights
    from keras_mhdeblur.training import RunDirectory

    if is_preset_folder(args.run_dir) or args.run_dir in shipped_presets():
        model, metadata, recipe = repacked_preset(args)
    else:
        run = RunDirectory(args.run_dir)
        if not run.config_path.exists():
            raise CommandError(f"{run.path}: not a training run folder (no config.json) nor a "
                               "preset")
        model_file = Path(args.model) if args.model else (run.final_path if args.final
                                                          else run.best_path)
        if not model_file.exists():
            hint = " (the run has no validation; use --final)" if not args.final else ""
            raise CommandError(f"{model_file}: missing{hint}")
        model = load_model(model_file, compile=False)
        # Everything measured below is measured on the weights as they will be stored.
        round_weights(model, args.weights_dtype)
        metadata = preset_metadata_of_run(run, args.name, args.description, model_file)
        recipe = run.read_config()
        if model.num_outputs > 1 and model.selected_output is None:
            select_on_validation(model, run, metadata)
    # Before measuring: the real photos are not multiples of 16.
    model.set_pad_mode(args.pad_mode)
    if args.measure:
        metadata["measured"].update(measure(model, recipe, args.measure),
                                    weights_dtype=args.weights_dtype)
    metadata.update(backbone=type(model).__name__, heads=model.heads,
                    combine_heads=model.combine_heads, outputs=model.num_outputs,
                    selected_output=model.selected_output,
                    auto_output=model.output_scorer is not None,
                    arguments={key: value for key, value in model.get_config().items()
                               if key not in ("name", "trainable", "dtype")})
    try:
        folder = save_preset(model, args.out_dir, metadata, overwrite=args.overwrite,
                             weights_dtype=args.weights_dtype)
    except PresetError as error:
        raise CommandError(str(error)) from None
    print(f"wrote preset {args.name!r} to {folder} ({model.count_params():,} parameters, "
          f"{args.weights_dtype} weights)")
    return 0


def repacked_preset(args):
    """A preset's model (its weights rounded to --weights-dtype), metadata and training recipe,
    for `make-preset PRESET OUT_DIR`: the metadata is kept, renamed, with where it came from;
    its figures are those stored unless --measure measures them again."""
    from keras_mhdeblur.presets import from_preset, preset_metadata, resolve_preset
    from keras_mhdeblur.saving import round_weights

    if args.final or args.model:
        raise CommandError(f"{args.run_dir}: is a preset, which holds one model; --final and "
                           "--model choose among a training run's checkpoints")
    source = resolve_preset(args.run_dir)
    model = round_weights(from_preset(source), args.weights_dtype)
    stored = preset_metadata(source)
    metadata = {key: value for key, value in stored.items()
                if key not in ("parameters", "file_bytes", "weights_dtype")}
    metadata.update(name=args.name, description=args.description or stored.get("description", ""),
                    repacked_from={"preset": stored.get("name", str(args.run_dir)),
                                   "weights_dtype": stored.get("weights_dtype", "float32")})
    metadata.setdefault("measured", {})
    return model, metadata, stored.get("training", {}).get("recipe", {})


@reports_errors("presets")
def list_presets_command(args):
    import json

    from keras_mhdeblur.presets import default_preset, list_presets

    presets = list_presets()
    if args.json:
        print(json.dumps(presets, indent=2))
        return 0
    if not presets:
        print("no presets are shipped in this installation")
        return 0
    default = default_preset()
    for metadata in presets:
        held_out = metadata.get("measured", {}).get("held_out")
        figures = (f"; held out: input {held_out['input_psnr']:.2f} dB -> "
                   f"{held_out['shipped_output']} {held_out['shipped_psnr']:.2f} dB, oracle "
                   f"{held_out['oracle_psnr']:.2f} dB" if held_out else "")
        mark = " (default)" if metadata["name"] == default else ""
        print(f"{metadata['name']}{mark}: {metadata.get('backbone')} K={metadata.get('heads')}, "
              f"{metadata.get('outputs')} outputs, {metadata.get('parameters', 0):,} parameters, "
              f"{metadata.get('file_bytes', 0) / 1e6:.1f} MB{figures}")
        if metadata.get("description"):
            print(f"  {metadata['description']}")
    from keras_mhdeblur.presets.routing import shipped_router_record

    router = shipped_router_record()
    if router is not None:
        short, long = router["presets"]
        print(f"preset router (`mhdeblur deblur` with no --model): photos whose estimated smear "
              f"is {router['threshold']:.1f} px or more go to {long}, the others to {short}")
    return 0
