"""What choosing a preset per photo gains: each preset alone, the router's choice, the best of
the two per pair.

    python experiments/route_presets.py --out runs/route.json
    python experiments/route_presets.py --blur steady_share=1 --out runs/route-steady.json

On the held-out photos (seed `presets.HELD_OUT_SEED`, 192x192), per octave of camera-path length
from 1 px up to `--longest` (the same regions in every octave, `presets.measure.by_blur_length`)
and on 32 pairs of each preset's own recipe: the shipped output of each of the router's two
presets, then, pair by pair, the one the router picks from the blurry pair alone (the second
preset from its threshold of estimated smear, `presets.routing`) and the better of the two
(what a perfect router would get). The octaves use the first preset's recipe, with 17-49
sub-frames so that long paths smear instead of ghosting (as docs/presets.md measures the long
preset); `--blur KEY=VALUE` changes a setting of every recipe's blur (e.g. `steady_share=1`:
every pair under steady motion).
"""

import argparse

import numpy as np

from keras_mhdeblur.commands.arguments import blur_octaves


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--router", help="a router folder (default: the shipped one)")
    parser.add_argument("--pairs", type=int, default=32, help="held-out pairs per recipe")
    parser.add_argument("--per-octave", type=int, default=16, help="pairs per octave")
    parser.add_argument("--longest", dest="octaves", type=blur_octaves,
                        default=blur_octaves("64"), metavar="PX",
                        help="octaves of path length from 1 px up to PX (default 64)")
    parser.add_argument("--blur", action="append", default=[], metavar="KEY=VALUE",
                        help="change a blur setting of every recipe (JSON value); repeat")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args()
    if min(args.pairs, args.per_octave) < 1:
        parser.error("--pairs and --per-octave must be positive")

    from keras_mhdeblur.commands import CommandError
    from keras_mhdeblur.commands.arguments import blur_changes
    from keras_mhdeblur.evaluation import evaluate_inputs
    from keras_mhdeblur.presets import from_preset, held_out_pairs_for_recipe, preset_metadata
    from keras_mhdeblur.presets.measure import held_out_figures, octave_recipe
    from keras_mhdeblur.presets.routing import Router, routed_figures, shipped_router
    from keras_mhdeblur.utils.files import write_json

    try:
        changes = blur_changes(args.blur)
    except CommandError as error:
        parser.error(str(error))
    router = Router.load(args.router) if args.router else shipped_router()
    if router is None:
        parser.error("no router is shipped in this installation; pass --router FOLDER")
    models = {name: from_preset(name) for name in router.presets}
    recipes = {name: preset_metadata(name)["training"]["recipe"] for name in router.presets}
    for recipe in recipes.values():
        recipe["synthetic_blur"] = {**recipe.get("synthetic_blur", {}), **changes}
    first = recipes[router.presets[0]]
    octave_blur = {**first, "synthetic_blur": {
        **first["synthetic_blur"], "num_subframes": changes.get("num_subframes", [17, 49])}}
    rows = [(f"{low}-{high} px", octave_recipe(octave_blur, low, high), args.per_octave)
            for low, high in args.octaves]
    rows += [(f"{name}'s blur", recipe, args.pairs) for name, recipe in recipes.items()]

    names = " / ".join(router.presets)
    print(f"gain over the input (dB): {names} / routed / best of the two; share routed to "
          f"{router.presets[1]} (smears of {router.threshold:.1f} px or more); the router's "
          "median estimate")
    results = []
    for label, recipe, count in rows:
        pairs = held_out_pairs_for_recipe(recipe, count)
        psnr = np.stack([held_out_figures(models[name], pairs)["shipped_psnr_per_pair"]
                         for name in router.presets], axis=1)
        input_psnr = evaluate_inputs(pairs, compute_ssim=False).summary()["per_output_psnr"][0]
        smears = [router.smear(blurry)[0] for _, blurry, _ in pairs]
        figures = {"blur": label, "input_psnr": input_psnr, "median_smear_pixels":
                   float(np.median(smears)), **routed_figures(smears, psnr, router.threshold)}
        results.append(figures)
        gains = [figures[key] - input_psnr for key in ("first_psnr", "second_psnr",
                                                        "routed_psnr", "best_of_two_psnr")]
        print(f"{label:<28} input {input_psnr:6.2f}  "
              + "  ".join(f"{gain:+6.2f}" for gain in gains)
              + f"   {figures['second_share']:4.0%}   median smear "
              f"{figures['median_smear_pixels']:.1f} px", flush=True)
    if args.out:
        write_json(args.out, {"presets": router.presets, "blur_changes": changes,
                              "rows": results})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
