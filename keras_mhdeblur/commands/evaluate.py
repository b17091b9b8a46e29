"""`mhdeblur evaluate`: official PSNR/SSIM of every output on a paired folder."""

from keras_mhdeblur.commands import find_pair_set, load_inference_model, reports_errors
from keras_mhdeblur.commands.arguments import add_pad_mode_argument, add_scoring_arguments


def register(subparsers):
    parser = subparsers.add_parser(
        "evaluate", help="PSNR/SSIM per output, best overall, worst, best single head",
        description="Score every output of MODEL on the pairs in --data exactly as the official "
        "code does (8-bit rounding, PSNR over RGB, NAFNet's 3-D SSIM; docs/method.md, 'Metrics') "
        "and print a table: per output, best overall (per image the best output: an oracle), "
        "worst, and the best single head (one fixed output index).")
    add_scoring_arguments(parser, ".keras model file", "paired images")
    add_pad_mode_argument(parser, "model")
    parser.add_argument("--json", metavar="OUT.json", help="also write the results as JSON")
    parser.add_argument("--no-ssim", dest="ssim", action="store_false",
                        help="skip SSIM (much faster)")
    parser.set_defaults(func=evaluate_command)


@reports_errors("evaluate")
def evaluate_command(args):
    from keras_mhdeblur.data import iter_evaluation_pairs
    from keras_mhdeblur.evaluation import evaluate_model, format_summary
    from keras_mhdeblur.utils.files import write_json

    model = load_inference_model(args)
    pairs = find_pair_set(args.data, args.split, args.limit, args.allow_unpaired)
    evaluation = evaluate_model(model, iter_evaluation_pairs(pairs, verify=False),
                                tile=args.tile, overlap=args.overlap,
                                self_ensemble=args.self_ensemble, compute_ssim=args.ssim,
                                total=len(pairs), progress=True)
    summary = evaluation.summary()
    print(format_summary(summary, f"{args.model} on {pairs.root}"
                                  f"{f' ({args.split})' if args.split else ''}"))
    if args.json:
        record = dict(summary)
        record.update(model=str(args.model), data=str(args.data), split=args.split,
                      tile=args.tile, overlap=args.overlap if args.tile else None,
                      tlc=list(args.tlc) if args.tlc else None,
                      self_ensemble=args.self_ensemble, pad_mode=model.pad_mode,
                      per_image_psnr=dict(zip(evaluation.names, evaluation.psnr)))
        write_json(args.json, record)
        print(f"wrote {args.json}")
    return 0
