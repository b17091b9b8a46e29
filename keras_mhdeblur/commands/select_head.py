"""`mhdeblur select-head`: choose the best single head on validation data and store it."""

from keras_mhdeblur.commands import CommandError, find_pair_set, inference_model, reports_errors
from keras_mhdeblur.commands.arguments import add_scoring_arguments


def register(subparsers):
    parser = subparsers.add_parser(
        "select-head", help="store the best single head (by validation PSNR) in the model",
        description="Evaluate every output of MODEL on the validation pairs in --data, choose "
        "the one with the best mean PSNR (the paper's 'best single head') and store it in the "
        "model file (model.selected_output), so deblur and export use it by default. The file "
        "is replaced atomically.")
    add_scoring_arguments(parser, ".keras model file (updated in place)", "validation pairs")
    parser.add_argument("--out", metavar="FILE.keras",
                        help="write the model here instead of replacing MODEL")
    parser.set_defaults(func=select_head_command)


@reports_errors("select-head")
def select_head_command(args):
    from keras_mhdeblur.data import iter_evaluation_pairs
    from keras_mhdeblur.evaluation import format_summary, select_best_head
    from keras_mhdeblur.heads import output_pairs
    from keras_mhdeblur.saving import load_model, save_model

    # Loaded with its optimiser state (if any) so that rewriting the file loses nothing; scores
    # come from its TLC version when --tlc is given.
    model = load_model(args.model, compile=True)
    if model.single_output or model.num_outputs == 1:
        raise CommandError(f"{args.model}: single-output model; there is no head to select")
    scorer = inference_model(model, args)
    pairs = find_pair_set(args.data, args.split, args.limit, args.allow_unpaired)
    summary = select_best_head(scorer, iter_evaluation_pairs(pairs, verify=False), tile=args.tile,
                               overlap=args.overlap, self_ensemble=args.self_ensemble,
                               total=len(pairs), progress=True)
    print(format_summary(summary, f"{args.model} on {pairs.root}"))
    model.selected_output = summary["best_single_head"]
    destination = save_model(model, args.out or args.model)
    index = summary["best_single_head"]
    first, second = output_pairs(model.heads, model.combine_heads)[index]
    pair = f" = (head {first} + head {second}) / 2" if first != second else f" = head {first}"
    print(f"selected output {index}{pair}: {summary['best_single_head_psnr']:.3f} dB mean PSNR "
          f"on {summary['num_images']} images (best overall {summary['best_overall_psnr']:.3f} "
          f"dB); stored in {destination}")
    return 0
