"""Converts an official PyTorch checkpoint into a keras_mhdeblur `.keras` model.

    python tools/convert_torch_weights.py NAFNet-GoPro-width32.pth nafnet_w32.keras \
        --options options/test/GoPro/NAFNet-width32.yml
    python tools/convert_torch_weights.py MHNAFNet.pth mh.keras --class MHNAFNetLocal \
        --kwargs '{"width": 32, "enc_blk_nums": [1,1,1,28], "middle_blk_num": 1,
                   "dec_blk_nums": [1,1,1,1], "n_heads": 4, "combinate_heads": true}'
    # a single-head checkpoint as the start of a multi-head fine-tune:
    python tools/convert_torch_weights.py NAFNet.pth mh.keras --options NAFNet-width32.yml \
        --from-single-head --heads 4

The architecture comes from the official YAML options (`network_g`) or from `--class` and
`--kwargs` (the official constructor arguments). `.pth` files need PyTorch
(`pip install ".[torch]"`); a `.npz` of official names works without it. The output is written
atomically and never replaces an existing file without `--overwrite`. Exit status: 0 converted,
1 the checkpoint does not fit (the message lists every missing, unexpected and mis-shaped key),
2 bad command line.
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="official .pth (or .npz) checkpoint")
    parser.add_argument("output", help="the .keras file to write")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--options", help="official YAML options file (its network_g section)")
    source.add_argument("--class", dest="official_class",
                        help="official class name, e.g. MHNAFNetLocal, HINet, MHRestormer")
    parser.add_argument("--kwargs", default="{}",
                        help="JSON of the official constructor arguments (with --class)")
    parser.add_argument("--from-single-head", action="store_true",
                        help="the checkpoint is single-head; build --heads heads from it")
    parser.add_argument("--heads", type=int, default=4, help="K with --from-single-head")
    parser.add_argument("--no-combine", action="store_true",
                        help="with --from-single-head: K outputs instead of K(K+1)/2")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser


def _architecture(args):
    """(official class, constructor kwargs) from the options file or the flags."""
    if args.options:
        import yaml

        path = Path(args.options)
        if not path.is_file():
            raise SystemExit(f"error: --options {path}: no such file")
        network = dict((yaml.safe_load(path.read_text()) or {}).get("network_g") or {})
        if "type" not in network:
            raise SystemExit(f"error: --options {path}: no network_g.type naming the class")
        return network.pop("type"), network
    try:
        kwargs = json.loads(args.kwargs)
    except json.JSONDecodeError as error:
        raise SystemExit(f"error: --kwargs is not valid JSON ({error})") from None
    return args.official_class, kwargs


def main(argv=None):
    args = build_parser().parse_args(argv)
    output = Path(args.output)
    if output.suffix != ".keras":
        print(f"error: {output}: the output must be a .keras file", file=sys.stderr)
        return 2
    if output.exists() and not args.overwrite:
        print(f"error: {output} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    official_class, kwargs = _architecture(args)
    if args.from_single_head:
        kwargs = {**kwargs, "n_heads": args.heads, "combinate_heads": not args.no_combine}
        official_class = official_class if official_class.startswith("MH") else (
            "MH" + official_class)

    import keras_mhdeblur
    from keras_mhdeblur.convert import WeightImportError, load_torch_checkpoint
    from keras_mhdeblur.saving import save_model

    try:
        model = keras_mhdeblur.from_official_config(official_class, **kwargs)
        state_dict = load_torch_checkpoint(args.checkpoint)
        keras_mhdeblur.load_torch_weights(model, state_dict,
                                          from_single_head=args.from_single_head)
    except (WeightImportError, FileNotFoundError, ImportError, ValueError) as error:
        print(f"error: {args.checkpoint}: {error}", file=sys.stderr)
        return 1
    save_model(model, output)
    print(f"wrote {output}: {type(model).__name__}, {model.count_params():,} parameters, "
          f"{model.num_outputs} output(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
