"""`mhdeblur demo`: the shipped preset at work, then single head vs multi-head trained on
synthetic blur in minutes; no download."""

from keras_mhdeblur.commands import reports_errors


def register(subparsers):
    from keras_mhdeblur.commands.arguments import positive_int

    parser = subparsers.add_parser(
        "demo", help="train a single-head and a multi-head model on synthetic blur and compare",
        description="The method in a few minutes on a CPU, nothing to download. First the "
        "shipped preset deblurs held-out synthetic pairs and real blurry photos (table and "
        "preset_sheet.png at 1:1, seconds). Then: train a small "
        "single-head and a small multi-head NAFNet (K=4, combined into 10 outputs, annealed "
        "winner-takes-all) on built-in synthetic motion blur, add the scoring branch that picks "
        "the output without an oracle, score both on held-out pairs, print the comparison, write a "
        "contact sheet and both models (and a TFLite file when export is available).")
    parser.add_argument("--out", default="mhdeblur-demo", metavar="DIR",
                        help="output folder (default ./mhdeblur-demo)")
    parser.add_argument("--quick", action="store_true",
                        help="about a minute: tiny crops and sets (a smoke test)")
    parser.add_argument("--steps", type=positive_int, help="training steps per model (default 600, "
                        "--quick 40)")
    parser.add_argument("--label", choices=("random", "middle"), default="random",
                        help="sharp label: a random sub-frame (ambiguous, where several heads "
                        "help; default) or the middle one (GoPro-style)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--official", action="store_true",
                        help="train the multi-head model with the official hard winner-takes-all "
                        "loss instead of the recommended annealed one")
    parser.add_argument("--no-export", dest="export", action="store_false",
                        help="skip the TFLite export")
    parser.add_argument("--preset", default="default", metavar="NAME|DIR",
                        help="the preset shown first (default: the default shipped preset)")
    parser.add_argument("--no-preset", dest="preset", action="store_const", const=None,
                        help="skip the preset part")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the demo's files in a non-empty --out")
    parser.set_defaults(func=demo_command)


@reports_errors("demo")
def demo_command(args):
    from keras_mhdeblur.demo import run_demo

    run_demo(args.out, steps=args.steps, quick=args.quick, label=args.label, seed=args.seed,
             official=args.official, overwrite=args.overwrite, export=args.export,
             preset=args.preset)
    return 0
