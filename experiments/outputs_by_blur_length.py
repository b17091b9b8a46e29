"""Every output of a multi-head preset, and the mean of its physical heads, per octave of shake.

    python experiments/outputs_by_blur_length.py nafnet-w16-mh4
    python experiments/outputs_by_blur_length.py runs/preset-stage4 --source train-photos
    python experiments/outputs_by_blur_length.py nafnet-w16-mh4-long --longest 64

The pairs are those of `experiments/compare_presets.py` (`presets.measure.by_blur_length`: the
preset's own blur, 16 pairs per octave, held-out photos, seed `presets.HELD_OUT_SEED`), so the
rows line up with its tables. For each octave it prints the gain over the blurry input (8-bit
PSNR, dB) of every output, then of the mean of the K physical heads, which is not an output of
the model: with winner-takes-all no output has learnt from every pair, and the mean shows how far
the heads are from the single answer a user wants
(docs/presets.md, "Against a single head at the same budget").
"""

import argparse

import numpy as np

from keras_mhdeblur.commands.arguments import blur_octaves
from keras_mhdeblur.presets.measure import BLUR_OCTAVES

SOURCES = {"heldout": ("builtin:heldout", None),
           "train-photos": ("builtin:train", {"photo_share": 1.0})}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", help="preset name or folder (a multi-head model)")
    parser.add_argument("--per-octave", type=int, default=16, help="pairs per octave")
    parser.add_argument("--source", choices=sorted(SOURCES), default="heldout",
                        help="sharp images: the held-out photos or the training photos")
    parser.add_argument("--longest", dest="octaves", type=blur_octaves, default=BLUR_OCTAVES,
                        metavar="PX",
                        help="octaves up to this many pixels (a power of two; default "
                             f"{BLUR_OCTAVES[-1][1]})")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args()

    from keras_mhdeblur.data.io import to_uint8
    from keras_mhdeblur.evaluation import evaluate_inputs, evaluate_model, psnr_uint8
    from keras_mhdeblur.heads import physical_head_outputs
    from keras_mhdeblur.presets import from_preset, held_out_pairs_for_recipe, preset_metadata
    from keras_mhdeblur.presets.measure import octave_recipe
    from keras_mhdeblur.utils.files import write_json

    model = from_preset(args.preset)
    if model.num_outputs < 2:
        parser.error(f"{args.preset}: has one output; this compares the outputs of a multi-head "
                     "model")
    recipe = preset_metadata(args.preset)["training"]["recipe"]
    heads = physical_head_outputs(model.heads, model.combine_heads)
    source, options = SOURCES[args.source]
    rows = []
    print(f"{args.preset}: gain over the input (dB) per output, then the mean of the physical "
          f"heads (outputs {', '.join(map(str, heads))}); {args.per_octave} pairs of "
          f"{args.source} per octave")
    for low, high in args.octaves:
        pairs = held_out_pairs_for_recipe(octave_recipe(recipe, low, high), args.per_octave,
                                          source=source, source_options=options)
        mean_psnr = []

        def measure_mean_of_heads(name, blurry, sharp, outputs):  # evaluate_model's outputs
            mean = np.mean([outputs[k] for k in heads], axis=0)
            mean_psnr.append(psnr_uint8(to_uint8(mean), to_uint8(sharp)))

        evaluation = evaluate_model(model, pairs, compute_ssim=False, each=measure_mean_of_heads)
        input_psnr = evaluate_inputs(pairs, compute_ssim=False).summary()["per_output_psnr"][0]
        gains = [psnr - input_psnr for psnr in evaluation.summary()["per_output_psnr"]]
        row = {"blur_pixels": [low, high], "input_psnr": input_psnr, "output_gains_db": gains,
               "mean_of_heads_gain_db": float(np.mean(mean_psnr)) - input_psnr}
        rows.append(row)
        print(f"{low}-{high} px (input {input_psnr:.2f} dB): "
              + " ".join(f"{gain:+.2f}" for gain in gains)
              + f" | mean of heads {row['mean_of_heads_gain_db']:+.2f}", flush=True)
    if args.out:
        write_json(args.out, rows)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
