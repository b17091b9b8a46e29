"""Trains the preset router that `mhdeblur deblur` uses to choose a preset per photo.

    python tools/train_router.py runs/router            # ~30 min on 2 CPU cores
    cp -r runs/router/router keras_mhdeblur/presets/    # ship it

Three sets of synthetic 128x128 pairs (`routing.ROUTER_BLUR`: 1-64 px, half under steady
motion): the router learns the path length of the first (training photos and dead leaves,
`--pairs`); its threshold is the one under which routing restores the second best (training
photos, both presets run on them); the third, from the held-out photos, says what routing gains
on photos that neither the router nor the presets saw. The pairs, their lengths and the presets'
PSNR are cached in OUT/pairs-*.npz, so a rerun (or one after an interruption) skips what is
done. OUT/router is the router folder (`routing.Router.load`), its figures in router.json.
docs/presets.md, "One preset per photo", has the results.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cached_pairs(path, count, seed, source, source_options, presets=None):
    """`routing.smear_pairs`, its blurry images as 8-bit, read from `path` when an earlier run
    wrote it for the same count and the same presets' weights."""
    import numpy as np

    from keras_mhdeblur.presets.routing import SmearPairs, preset_fingerprint, smear_pairs
    from keras_mhdeblur.utils.files import write_file_atomically

    wanted = np.array([preset_fingerprint(name) for name in presets or []], dtype=str)
    if path.exists():
        with np.load(path) as stored:
            if ("straightness" in stored.files and len(stored["lengths"]) == count
                    and np.array_equal(stored["presets"], wanted)):
                return SmearPairs(stored["blurry"], stored["lengths"], stored["straightness"],
                                  stored["psnr"] if presets else None)
        print(f"{path}: made for another count, other presets' weights or by an older version; "
              "making the pairs again")
    pairs = smear_pairs(count, seed, source, source_options, presets=presets)
    pairs = pairs._replace(blurry=np.round(np.clip(pairs.blurry, 0, 1) * 255).astype(np.uint8))
    write_file_atomically(path, lambda name: np.savez_compressed(
        name, blurry=pairs.blurry, lengths=pairs.lengths, straightness=pairs.straightness,
        psnr=pairs.psnr if presets else np.zeros(0), presets=wanted), suffix=".tmp.npz")
    return pairs


def exact_reading_ceilings(fit, measure):
    """What routing would reach on the pairs `measure` if the router read each camera path
    exactly (both `SmearPairs` with PSNR; the rules are chosen on `fit`): by its true length
    (one threshold), and by its true length and straightness (a threshold on log2 length that
    moves linearly with the straightness, both ends chosen on a grid)."""
    import numpy as np

    from keras_mhdeblur.presets.routing import best_threshold, routed_figures

    by_length = routed_figures(measure.lengths, measure.psnr,
                               best_threshold(fit.lengths, fit.psnr))["routed_psnr"]

    def routed(pairs, steady_end, shake_end):
        threshold = pairs.straightness * steady_end + (1 - pairs.straightness) * shake_end
        second = np.log2(np.maximum(pairs.lengths, 1e-6)) >= threshold
        return np.where(second, pairs.psnr[:, 1], pairs.psnr[:, 0]).mean()

    grid = np.arange(0, 7.01, 0.125)  # log2 px; 7 (128 px) sends nothing to the second preset
    ends = max(((a, b) for a in grid for b in grid), key=lambda ends: routed(fit, *ends))
    return {"routed_by_true_length_psnr": float(by_length),
            "routed_by_true_length_and_straightness_psnr": float(routed(measure, *ends))}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="folder for the cached pairs and the router")
    parser.add_argument("--presets", nargs=2, default=["nafnet-w16-mh4", "nafnet-w16-mh4-long"],
                        metavar=("SHORT", "LONG"),
                        help="the presets for shorter and for longer smears")
    parser.add_argument("--pairs", type=int, default=8000, help="pairs the router learns from")
    parser.add_argument("--threshold-pairs", type=int, default=4000,
                        help="pairs of the training photos that choose the threshold")
    parser.add_argument("--held-out-pairs", type=int, default=600,
                        help="pairs of the held-out photos the routing is measured on")
    parser.add_argument("--photo-share", type=float, default=0.8,
                        help="share of the learning pairs cut from photos, the rest from dead "
                             "leaves (default 0.8: photos are what it reads)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=303, help="seed of the learning pairs")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT/router")
    args = parser.parse_args()
    if min(args.pairs, args.threshold_pairs, args.held_out_pairs, args.epochs) < 1:
        parser.error("--pairs, --threshold-pairs, --held-out-pairs and --epochs must be "
                     "positive")
    if not 0 <= args.photo_share <= 1:
        parser.error(f"--photo-share must be in [0, 1], got {args.photo_share}")
    out = Path(args.out)
    router_dir = out / "router"
    if router_dir.exists() and not args.overwrite:
        parser.error(f"{router_dir}: already exists; pass --overwrite to replace it")

    import keras
    import numpy as np

    from keras_mhdeblur.presets import preset_metadata
    from keras_mhdeblur.presets.routing import (ROUTER_BLUR, Router, best_threshold,
                                                build_router, fit_router, preset_fingerprint,
                                                routed_figures)

    out.mkdir(parents=True, exist_ok=True)
    # The photos and dead leaves the long preset trained on (the held-out photos are never
    # among them).
    recipe = preset_metadata(args.presets[1])["training"]["recipe"]
    options = {**(recipe.get("source_options") or {}), "photo_share": args.photo_share}
    learn = cached_pairs(out / "pairs-learn.npz", args.pairs, args.seed, recipe["source"],
                         options)
    photos = {**options, "photo_share": 1.0}
    sets = {"threshold_pairs": cached_pairs(out / "pairs-threshold.npz", args.threshold_pairs,
                                            args.seed + 1, recipe["source"], photos,
                                            args.presets),
            "held_out_pairs": cached_pairs(out / "pairs-heldout.npz", args.held_out_pairs,
                                           args.seed + 2, "builtin:heldout", None,
                                           args.presets)}
    keras.utils.set_random_seed(args.seed)
    network = build_router()
    fit_router(network, learn.blurry.astype(np.float32) / 255, learn.lengths, args.epochs,
               seed=args.seed, verbose=2)
    router = Router(network, args.presets)
    smears = {name: router.patch_smears(pairs.blurry.astype(np.float32) / 255)
              for name, pairs in sets.items()}
    router.threshold = best_threshold(smears["threshold_pairs"], sets["threshold_pairs"].psnr)
    figures = {}
    for name, pairs in sets.items():
        error = np.log2(smears[name]) - np.log2(np.clip(pairs.lengths, 1, 64))
        figures[name] = {**routed_figures(smears[name], pairs.psnr, router.threshold),
                         "smear_log2_error_rms": float(np.sqrt(np.mean(error ** 2)))}
    # How much a better reading of the blur could add: routing by the true path (no network).
    figures["held_out_pairs"].update(exact_reading_ceilings(sets["threshold_pairs"],
                                                            sets["held_out_pairs"]))
    for name in sets:
        print(f"{name}: " + ", ".join(f"{key} {value:.3f}" for key, value in
                                       figures[name].items()))
    print(f"threshold {router.threshold:.1f} px")
    router.metadata = {"trained": {"pairs": args.pairs, "threshold_pairs": args.threshold_pairs,
                                   "held_out_pairs": args.held_out_pairs,
                                   "photo_share": args.photo_share, "epochs": args.epochs,
                                   "seed": args.seed, "blur": ROUTER_BLUR,
                                   "preset_weights": [preset_fingerprint(name)
                                                      for name in args.presets],
                                   "command": "python " + " ".join(sys.argv)},
                       "measured": figures}
    router.save(router_dir, overwrite=args.overwrite)
    print(f"wrote {router_dir}")


if __name__ == "__main__":
    main()
