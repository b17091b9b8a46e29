"""Two or more presets side by side on the same held-out pairs.

    python experiments/compare_presets.py nafnet-w16-mh4 path/to/other-preset --out runs/compare.json

For every preset: the shipped output per octave of shake length (`presets.measure.by_blur_length`,
the first preset's recipe, the same regions for all), and the held-out figures under each
preset's own recipe (its blur on the held-out photos, 192x192, seed `presets.HELD_OUT_SEED`), so
that a model trained on one blur distribution is also read on the other's.

`--sources heldout,train-photos,leaves,natural-leaves` repeats the octaves on other sharp images
under the same blur: the photos the training used, and dead leaves of each style from a pool the
training never drew (seeded by `presets.HELD_OUT_SEED`). A model that gains on the training
photos and loses on the held-out ones has fitted its photos rather than learnt to deblur.

    python experiments/compare_presets.py nafnet-w16-mh4 --sources heldout,train-photos,leaves

`--blur KEY=VALUE` changes a setting of every recipe's blur (`data.BlurSettings`), e.g. to read
a preset on pairs without noise, JPEG or clipped highlights (other draws, so other pairs):

    python experiments/compare_presets.py nafnet-w16-mh4 --blur noise_sigma=0 \
        --blur jpeg_quality=null --blur highlight_gain=1

`--longest 64` reads octaves up to 64 px instead of the recipes' 32 (32-64 px is a smear as
long as the clock photo's); give such long paths enough sub-frames to smear, not ghost:

    python experiments/compare_presets.py nafnet-w16-mh4 --longest 64 --blur num_subframes=[17,49]

`--self-ensemble 8` restores every input through its flips and transposes and averages them
(`inference.restore`), to read what the self-ensemble adds to a preset.
"""

import argparse

from keras_mhdeblur.commands.arguments import blur_octaves
from keras_mhdeblur.presets.measure import BLUR_OCTAVES

# Sharp images to measure on: (source, source_options) of `presets.held_out_pairs_for_recipe`.
SOURCES = {
    "heldout": ("builtin:heldout", None),
    "train-photos": ("builtin:train", {"photo_share": 1.0}),
    "leaves": ("builtin:train", {"photo_share": 0.0, "dead_leaves_count": 16}),
    "natural-leaves": ("builtin:train", {"photo_share": 0.0, "dead_leaves_count": 16,
                                         "dead_leaves_style": "natural"}),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="+", help="preset names or folders")
    parser.add_argument("--pairs", type=int, default=32, help="held-out pairs per recipe")
    parser.add_argument("--per-octave", type=int, default=16, help="pairs per octave")
    parser.add_argument("--sources", default="heldout",
                        help=f"sharp images of the per-octave tables, from {', '.join(SOURCES)} "
                             "(default heldout)")
    parser.add_argument("--self-ensemble", type=int, default=1, metavar="N",
                        help="average N flips and transposes of every input (1, 2, 4 or 8; "
                        "inference.restore)")
    parser.add_argument("--blur", action="append", default=[], metavar="KEY=VALUE",
                        help="change a blur setting of every recipe (JSON value, e.g. "
                             "noise_sigma=0, jpeg_quality=null); repeat for several")
    parser.add_argument("--longest", dest="octaves", type=blur_octaves, default=BLUR_OCTAVES,
                        metavar="PX",
                        help="the per-octave tables double the shake length from 1 px up to "
                             f"PX (a power of two; default {BLUR_OCTAVES[-1][1]})")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args()
    sources = args.sources.split(",")
    unknown = [name for name in sources if name not in SOURCES]
    if unknown:
        parser.error(f"--sources: unknown {', '.join(unknown)}; known: {', '.join(SOURCES)}")

    from keras_mhdeblur.presets import from_preset, held_out_pairs_for_recipe, preset_metadata
    from keras_mhdeblur.presets.measure import blur_length_table, by_blur_length, held_out_figures
    from keras_mhdeblur.utils.files import write_json

    recipes = {str(name): preset_metadata(name)["training"]["recipe"] for name in args.presets}
    changes = _blur_changes(parser, args.blur)
    for recipe in recipes.values():
        recipe["synthetic_blur"] = {**recipe.get("synthetic_blur", {}), **changes}
    kept = ("input_psnr", "shipped_psnr", "shipped_gain_db", "oracle_psnr",
            "outputs_winning_5_percent", "max_colour_cast_levels",
            "mean_brightness_shift_levels", "target_brightness_shift_levels")
    results = {}
    for name in args.presets:
        model = from_preset(name)
        results[str(name)] = {"held_out": {}}
        for source in sources:
            image_source, options = SOURCES[source]
            rows = by_blur_length(model, recipes[str(args.presets[0])], args.per_octave,
                                  octaves=args.octaves, self_ensemble=args.self_ensemble,
                                  source=image_source, source_options=options)
            print(f"{name}, {args.per_octave} pairs of {source} per octave of shake length:\n"
                  f"{blur_length_table(rows)}")
            key = "by_blur_length" if source == "heldout" else f"by_blur_length_{source}"
            results[str(name)][key] = rows
        for recipe_of, recipe in recipes.items():
            figures = held_out_figures(model, held_out_pairs_for_recipe(recipe, args.pairs),
                                       args.self_ensemble)
            results[str(name)]["held_out"][recipe_of] = {key: figures[key] for key in kept}
            print(f"{name} on {args.pairs} held-out pairs of {recipe_of}'s blur: input "
                  f"{figures['input_psnr']:.2f} -> shipped {figures['shipped_psnr']:.2f} dB "
                  f"({figures['shipped_gain_db']:+.2f}), oracle {figures['oracle_psnr']:.2f}, "
                  f"brightness {figures['mean_brightness_shift_levels']:+.2f} levels (sharp "
                  f"{figures['target_brightness_shift_levels']:+.2f})")
    if args.out:
        write_json(args.out, results)
        print(f"wrote {args.out}")


def _blur_changes(parser, items):
    """{setting: value} from --blur KEY=VALUE items, checked against `BlurSettings`."""
    from keras_mhdeblur.commands import CommandError
    from keras_mhdeblur.commands.arguments import blur_changes

    try:
        return blur_changes(items)
    except CommandError as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
