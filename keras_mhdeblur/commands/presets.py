"""`mhdeblur make-preset`: pack a training run's best model as a preset folder."""

from pathlib import Path

from keras_mhdeblur.commands import CommandError, reports_errors


def register(subparsers):
    parser = subparsers.add_parser(
        "make-preset", help="pack a training run's best model as a preset (loads by folder)",
        description="Write RUN_DIR's best checkpoint (best.keras; model.keras with --final, or "
        "--model FILE, e.g. one with a scoring branch from add-scorer) as a preset folder: the "
        "model's config, its weights without optimiser state, and metadata with the run's "
        "recipe, data, steps and measured validation figures. Load it with "
        "keras_mhdeblur.from_preset(OUT_DIR) or give OUT_DIR wherever a model file goes.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a `mhdeblur train` run folder")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="the preset folder to write")
    parser.add_argument("--name", required=True, help="the preset's name")
    parser.add_argument("--description", default="", help="one line on what it is for")
    parser.add_argument("--final", action="store_true",
                        help="pack model.keras (the end of the run) instead of best.keras")
    parser.add_argument("--model", metavar="FILE",
                        help="pack this model file (trained in RUN_DIR) instead")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR")
    parser.set_defaults(func=make_preset_command)


def preset_metadata_of_run(run, name, description, model_file):
    """The metadata `make-preset` stores: the run's recipe and its measured figures."""
    import keras_mhdeblur

    config = run.read_config()
    state = run.read_state()
    best = state.get("best") or {}
    return {
        "name": name,
        "description": description,
        "keras_mhdeblur_version": keras_mhdeblur.__version__,
        "training": {"recipe": config, "steps_done": state.get("step"),
                     "finished": bool(state.get("finished")), "source_file": model_file.name},
        "measured": {"validation_step": best.get("step"),
                     "validation_best_overall_psnr": best.get("best_overall_psnr"),
                     "validation_best_single_head_psnr": best.get("best_single_head_psnr"),
                     "validation_best_single_head": best.get("best_single_head")},
    }


@reports_errors("make-preset")
def make_preset_command(args):
    from keras_mhdeblur.presets import PresetError, save_preset
    from keras_mhdeblur.saving import load_model
    from keras_mhdeblur.training import RunDirectory

    run = RunDirectory(args.run_dir)
    if not run.config_path.exists():
        raise CommandError(f"{run.path}: not a training run folder (no config.json)")
    model_file = Path(args.model) if args.model else (run.final_path if args.final
                                                      else run.best_path)
    if not model_file.exists():
        hint = " (the run has no validation; use --final)" if not args.final else ""
        raise CommandError(f"{model_file}: missing{hint}")
    model = load_model(model_file, compile=False)
    metadata = preset_metadata_of_run(run, args.name, args.description, model_file)
    metadata.update(backbone=type(model).__name__, heads=model.heads,
                    combine_heads=model.combine_heads, outputs=model.num_outputs,
                    selected_output=model.selected_output,
                    auto_output=model.output_scorer is not None,
                    arguments={key: value for key, value in model.get_config().items()
                               if key not in ("name", "trainable", "dtype")})
    try:
        folder = save_preset(model, args.out_dir, metadata, overwrite=args.overwrite)
    except PresetError as error:
        raise CommandError(str(error)) from None
    print(f"wrote preset {args.name!r} to {folder} ({model.count_params():,} parameters)")
    return 0
