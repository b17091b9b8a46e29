"""`mhdeblur add-scorer`: give a trained multi-head model its scoring branch (the "auto" output)."""

import argparse
import dataclasses
from pathlib import Path

from keras_mhdeblur.commands import CommandError, reports_errors


def register(subparsers):
    from keras_mhdeblur.commands.arguments import positive_int

    parser = subparsers.add_parser(
        "add-scorer", help="train the branch that picks the output per patch (--output auto)",
        description="Add a scoring branch to MODEL and train it, with every other weight "
        "frozen, to predict from the blurry input which output wins in each patch "
        "(docs/heads.md). The result, written to OUT, has an 'auto' output that deblur, "
        "evaluate and export use. Training pairs: --data DIR (paired folders), --synthetic, or "
        "--from-run RUN_DIR (the pairs of the run that trained MODEL: its data or its synthetic "
        "blur recipe).",
        argument_default=argparse.SUPPRESS)
    parser.add_argument("model", metavar="MODEL", help="trained multi-head .keras model")
    parser.add_argument("out", metavar="OUT", help="the .keras file to write")
    parser.add_argument("--data", metavar="DIR", help="paired training images")
    parser.add_argument("--split", help="split of --data, e.g. train (GoPro)")
    parser.add_argument("--synthetic", action="store_true", help="built-in synthetic blur")
    parser.add_argument("--from-run", metavar="RUN_DIR",
                        help="the training pairs of this run (config.json): data or synthetic "
                        "blur, label and source as it trained on, with a different seed")
    parser.add_argument("--synthetic-label", choices=("middle", "random"), default="middle")
    parser.add_argument("--source", metavar="DIR", help="sharp images for --synthetic")
    parser.add_argument("--crop", type=positive_int, default=128, help="crop size (default 128)")
    parser.add_argument("--batch", type=positive_int, default=8, help="batch size (default 8)")
    parser.add_argument("--steps", type=positive_int, default=500, help="steps (default 500)")
    parser.add_argument("--patch-size", type=positive_int, default=8,
                        help="scored patch size, a power of two (default 8)")
    parser.add_argument("--objective", choices=("winner", "fusion"), default="winner",
                        help="winner: cross-entropy on the per-patch winner (default); fusion: "
                        "the PSNR loss of the fused auto output itself")
    parser.add_argument("--inputs", choices=("candidates", "features", "both"),
                        default="candidates",
                        help="what the branch reads: candidates (the input and the outputs; "
                        "default), features (the backbone's last features) or both")
    parser.add_argument("--width", type=positive_int, default=16,
                        help="channels of the branch's convolutions (default 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=add_scorer_command)


def run_pairs(run_dir):
    """The TrainConfig of a run folder, with only what chooses its training pairs kept."""
    from keras_mhdeblur.training import RunDirectory, TrainConfig

    run = RunDirectory(run_dir)
    if not run.config_path.exists():
        raise CommandError(f"{run.path}: not a training run folder (no config.json)")
    stored = TrainConfig.from_dict(run.read_config(), str(run.config_path))
    kept = ("data", "split", "synthetic", "synthetic_label", "synthetic_blur", "source",
            "source_options")
    return TrainConfig(**{name: getattr(stored, name) for name in kept})


@reports_errors("add-scorer")
def add_scorer_command(args):
    import keras

    from keras_mhdeblur.saving import load_model, save_model
    from keras_mhdeblur.scoring import fit_scorer, with_output_scorer
    from keras_mhdeblur.training import TrainConfig, training_data

    out = Path(args.out)
    if out.exists() and not getattr(args, "overwrite", False):
        raise CommandError(f"{out}: already exists; pass --overwrite to replace it")
    synthetic, data = getattr(args, "synthetic", False), getattr(args, "data", None)
    from_run = getattr(args, "from_run", None)
    if (synthetic, data is not None, from_run is not None).count(True) != 1:
        raise CommandError("give exactly one source of training pairs: --data DIR, --synthetic "
                           "or --from-run RUN_DIR")
    if from_run is not None:
        clashing = [flag for name, flag in (("split", "--split"), ("source", "--source"))
                    if name in vars(args)]
        if args.synthetic_label != "middle":
            clashing.append("--synthetic-label")
        if clashing:
            raise CommandError(f"--from-run takes the pairs' settings from the run; drop "
                               f"{', '.join(clashing)}")
    if args.crop % args.patch_size:
        raise CommandError(f"--crop {args.crop} must be a multiple of --patch-size "
                           f"{args.patch_size}")
    model = load_model(args.model, compile=False)
    if model.single_output or model.num_outputs < 2:
        raise CommandError(f"{args.model}: single-output model; there is nothing to choose")
    if from_run is not None:
        config = dataclasses.replace(run_pairs(from_run), crop=args.crop, batch=args.batch,
                                     seed=args.seed)
    else:
        config = TrainConfig(synthetic=synthetic, data=data, split=getattr(args, "split", None),
                             synthetic_label=args.synthetic_label,
                             source=getattr(args, "source", None), crop=args.crop,
                             batch=args.batch, seed=args.seed)
    keras.utils.set_random_seed(args.seed)
    try:
        scored = with_output_scorer(model, patch_size=args.patch_size, width=args.width,
                                    inputs=args.inputs)
    except ValueError as error:
        raise CommandError(f"--patch-size: {error}") from None
    print(f"training the scoring branch of {args.model} for {args.steps} steps "
          f"({scored.output_scorer.count_params():,} parameters, backbone frozen)")
    fit_scorer(scored, training_data(config), args.steps, objective=args.objective, verbose=2)
    destination = save_model(scored, out)
    print(f"wrote {destination}: use --output auto (deblur and export)")
    return 0
