"""How a preset pads a photo whose sides are not multiples of 16, and what it costs.

    python experiments/padding.py                                  # both shipped presets
    python experiments/padding.py PRESET ... --pairs 24 --sizes 200,184,192

The network halves the image four times, so `MultiHeadRestorationModel.pad_input` pads H and
W (bottom and right) to multiples of 16 and crops the result back. The official NAFNet code pads
with zeros. The presets never saw a band of zeros in training (their crops are multiples of
16), and on a photo padded with one they restore a fraction of what they restore otherwise.

For each preset and each side length, this prints the gain of the shipped output over the
blurry input on the same held-out pairs of the preset's own blur (the held-out photos, seed
`presets.HELD_OUT_SEED`), padded each way (`pad_mode`), with the oracle beside it. A side that
is a multiple of 16 is not padded, so its rows show what the network does with no padding.
docs/presets.md, "Padding a photo", reads the figures.
"""

import argparse

PAD_MODES_MEASURED = ("constant", "reflect")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="*", metavar="PRESET",
                        help="preset names or folders (default: every shipped preset)")
    parser.add_argument("--pairs", type=int, default=24, help="held-out pairs per side length")
    parser.add_argument("--sizes", default="200,184,192",
                        help="square side lengths, separated by commas (default 200,184,192)")
    args = parser.parse_args()
    try:
        sizes = [int(value) for value in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes: expected integers separated by commas, got {args.sizes!r}")
    if args.pairs < 1 or any(size < 16 for size in sizes):
        parser.error("--pairs must be positive and every size at least 16")

    from keras_mhdeblur.presets import (from_preset, held_out_pairs_for_recipe, preset_metadata,
                                        shipped_presets)
    from keras_mhdeblur.presets.measure import held_out_figures

    names = args.presets or list(shipped_presets())
    print("gain of the shipped output over the input, dB (oracle in brackets), per pad mode")
    for name in names:
        recipe = preset_metadata(name).get("training", {}).get("recipe", {})
        for size in sizes:
            pairs = held_out_pairs_for_recipe(recipe, args.pairs, size=size)
            cells = []
            for mode in PAD_MODES_MEASURED:
                figures = held_out_figures(from_preset(name).set_pad_mode(mode), pairs)
                cells.append(f"{mode} {figures['shipped_psnr'] - figures['input_psnr']:+.2f} "
                             f"({figures['oracle_psnr'] - figures['input_psnr']:+.2f})")
            padded = "padded" if size % 16 else "no padding"
            print(f"{name} {size}x{size} ({padded}), input {figures['input_psnr']:.2f} dB: "
                  + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
