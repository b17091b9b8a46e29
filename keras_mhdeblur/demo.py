"""The main job in a few minutes on a CPU, with no download: a trained preset at work, then
single head vs multi-head trained from scratch.

First the shipped preset (`keras_mhdeblur.presets`, trained in this project) deblurs held-out
synthetic pairs made from photos its training never saw and the real blurry photos scikit-image
bundles, in seconds: a table with the input row and `preset_sheet.png`, side by side at 1:1.
Then the training comparison:
Trains a small single-head and a small multi-head NAFNet (K = 4 heads, combined into 10 outputs)
on built-in synthetic motion blur whose sharp label is a *random* sub-frame of the exposure
(docs/method.md, "Small-scale runs"). That label is ambiguous on purpose: one head can only learn
the average answer (the blur itself), while several heads under the winner-takes-all loss can each
specialise on some of the possible answers, which is the paper's point. The multi-head model trains
with the recommended winner assignment (`training.RECOMMENDED_HEADS`: annealed winner-takes-all,
which keeps every head alive and free of colour casts; docs/heads.md), then gets a scoring branch
that picks the output per patch from the blurry input ("auto", keras_mhdeblur.scoring). Both
models are scored on held-out synthetic pairs with the official metric code; the multi-head
model's best single head is chosen on a separate validation set and stored in the saved model.

    results = run_demo("mhdeblur-demo")          # or `mhdeblur demo`

Writes into the output folder: preset_sheet.png, runs/single-head and runs/multi-head (training runs: checkpoints,
logs), single_head.keras, multi_head.keras (selected head stored), sheet.png (contact sheets of a
few test images), results.json, and multi_head.tflite when keras_mhdeblur.export is available.
"""

import importlib.util
import shutil
import time
from pathlib import Path

import numpy as np

from keras_mhdeblur.heads import output_pairs
from keras_mhdeblur.training import (RECOMMENDED_HEADS, TEST_SEED_OFFSET, RunError, TrainConfig,
                                     synthetic_stream, train, training_data, validation_pairs)

#: The small backbone: NAFNet with width 12 and two levels (about 40k parameters for K = 4).
DEMO_MODEL = dict(model="nafnet-w32", width=12,
                  overrides={"enc_blocks": [1, 1], "middle_blocks": 1, "dec_blocks": [1, 1]})
#: (steps, crop, batch, validation pairs, test pairs, scoring-branch steps) of the default and
#: the --quick demo.
BUDGETS = {"default": (600, 64, 8, 32, 64, 300), "quick": (40, 32, 4, 8, 16, 10)}
DEMO_FILES = ("runs", "single_head.keras", "multi_head.keras", "sheet.png", "results.json",
              "multi_head.tflite", "preset_sheet.png")
#: Held-out pairs (count, side) the preset is shown on, default and --quick.
PRESET_PAIRS = {"default": (16, 192), "quick": (2, 96)}
PRESET_SHEET_PAIRS = 3
SHEET_IMAGES = 3


def demo_configs(steps=None, quick=False, label="random", seed=0, official=False):
    """(single-head TrainConfig, multi-head TrainConfig, test pair count) of the demo; the
    multi-head one with the recommended winner assignment unless `official`."""
    default_steps, crop, batch, val_count, test_count, _ = BUDGETS["quick" if quick else "default"]
    steps = steps or default_steps
    common = dict(DEMO_MODEL, synthetic=True, synthetic_label=label, crop=crop, batch=batch,
                  steps=steps, val_synthetic=val_count, checkpoint_every=max(1, steps // 3),
                  val_every=max(1, steps // 3), keep=1, seed=seed)
    single = TrainConfig(heads=1, **common)
    assignment = {} if official else RECOMMENDED_HEADS
    multi = TrainConfig(heads=4, combine_heads=True, **common, **assignment)
    return single, multi, test_count


def _prepare(out_dir, overwrite):
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunError(f"{out_dir}: exists and is not a folder; choose another --out")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise RunError(f"{out_dir}: folder is not empty; choose another --out or pass "
                           "--overwrite (the demo's files in it are replaced)")
        for name in DEMO_FILES:
            path = out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _upscaled(image, factor):
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image


def _sheets(single, multi, test_pairs, count=SHEET_IMAGES):
    """Contact sheets of the first `count` test images, one row each."""
    from keras_mhdeblur.inference import restore
    from keras_mhdeblur.visualize import contact_sheet

    rows = []
    for name, blurry, sharp in test_pairs[:count]:
        factor = max(1, 128 // max(blurry.shape[:2]))  # tiny crops are shown larger
        outputs = restore(multi, blurry, which="all+auto")
        outputs, auto = outputs[:-1], outputs[-1]
        labels = [f"MH {k}{' sel' if k == multi.selected_output else ''}"
                  for k in range(len(outputs))]
        extra = [("auto", _upscaled(auto, factor)),
                 ("single head", _upscaled(restore(single, blurry), factor)),
                 ("target", _upscaled(sharp, factor))]
        rows.append(contact_sheet(_upscaled(blurry, factor),
                                  np.stack([_upscaled(o, factor) for o in outputs]), labels,
                                  extra=extra, columns=len(outputs) + 5))
    gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([part for row in rows for part in (row, gap)][:-1])


def comparison_table(inputs, single, multi, selected, multi_config):
    """The demo's table: input, single head, every multi-head output (with wins), the selected
    head, best single head, best overall and worst; PSNR/SSIM and gain over the input."""
    base = inputs["per_output_psnr"][0]

    def row(label, psnr, ssim=None, wins=None):
        ssim_text = f"{ssim:8.4f}" if ssim is not None else f"{'':8}"
        wins_text = f"{wins:7.1%}" if wins is not None else ""
        return f"{label:<50}{psnr:9.3f}{ssim_text}{psnr - base:+10.3f}{wins_text:>9}"

    count = multi["num_images"]
    lines = [f"{'':<50}{'PSNR':>9}{'SSIM':>8}{'vs input':>10}{'wins':>9}",
             row("input (blurry)", base, inputs["per_output_ssim"][0]),
             row("single head", single["per_output_psnr"][0], single["per_output_ssim"][0])]
    pairs = output_pairs(multi_config.heads, multi_config.combine_heads)
    for k, (psnr, ssim) in enumerate(zip(multi["per_output_psnr"], multi["per_output_ssim"])):
        i, j = pairs[k]
        what = f"head {i}" if i == j else f"(head {i} + head {j}) / 2"
        lines.append(row(f"multi-head output {k}: {what}", psnr, ssim,
                         multi["wins_psnr"][k] / count))
    best = multi["best_single_head"]
    lines += [
        row(f"multi-head selected output {selected} (on validation)",
            multi["per_output_psnr"][selected], multi["per_output_ssim"][selected]),
        row(f"multi-head best single head (output {best}, on test)",
            multi["best_single_head_psnr"], multi["per_output_ssim"][best]),
    ]
    if "auto_psnr" in multi:
        lines.append(row("multi-head auto (scoring branch, no oracle)", multi["auto_psnr"],
                         multi.get("auto_ssim")))
    lines += [
        row("multi-head best overall (oracle)", multi["best_overall_psnr"],
            multi["best_overall_ssim"]),
        row("multi-head worst", multi["worst_psnr"], multi["worst_ssim"]),
    ]
    return "\n".join(lines)


def show_preset(out_dir, preset="default", quick=False, log=print):
    """Deblurs held-out pairs and the bundled real blurry photos with a preset; writes
    out_dir/preset_sheet.png and returns its figures (None when no preset is shipped)."""
    from keras_mhdeblur.data.io import write_png
    from keras_mhdeblur.data.sources import bundled_blurry_photo_paths
    from keras_mhdeblur.presets import (default_preset, from_preset, held_out_pairs,
                                        preset_metadata, shipped_presets)
    from keras_mhdeblur.presets.measure import (figures_table, held_out_figures, photo_figures,
                                                showcase_sheet)

    chosen = default_preset() if preset == "default" else preset
    if chosen is None:
        log("no preset is shipped in this installation; skipping the preset part")
        return None
    start = time.perf_counter()
    model = from_preset(chosen)
    name = preset_metadata(chosen).get("name", str(chosen))
    count, size = PRESET_PAIRS["quick" if quick else "default"]
    pairs = held_out_pairs(chosen, count, size)
    figures = held_out_figures(model, pairs)
    photos, photo_images = photo_figures(model, bundled_blurry_photo_paths())
    routing_notes = []  # logged after the photo's figures
    photo_images = routed_photos(bundled_blurry_photo_paths(), photo_images, name,
                                 routing_notes.append)
    write_png(Path(out_dir) / "preset_sheet.png",
              showcase_sheet(model, pairs[:PRESET_SHEET_PAIRS], photo_images))
    seconds = time.perf_counter() - start
    log(f"preset {name!r} ({model.count_params():,} parameters) on {count} held-out synthetic "
        f"pairs of {size}x{size} from photos its training never saw; 8-bit PSNR (dB), SSIM:\n"
        + figures_table(figures))
    for record in photos:
        log(f"real blurry photo {record['photo']} ({record['width']}x{record['height']}): "
            f"{record['seconds']:.1f} s, colour cast "
            f"{record['colour_cast_levels']:.2f} levels, channel shifts "
            f"{' '.join(f'{v:+.2f}' for v in record['channel_shift_levels'])}")
    for note in routing_notes:
        log(note)
    log(f"side by side at 1:1: {Path(out_dir) / 'preset_sheet.png'} ({seconds:.0f} s)")
    others = [other for other in shipped_presets() if other != name]
    if others:
        log(f"also shipped: {', '.join(others)} (`mhdeblur presets` says what each is for; "
            "`mhdeblur deblur PHOTO --model NAME` uses one)")
    return {"name": name, "held_out": figures, "photos": photos, "seconds": round(seconds, 1)}


def routed_photos(paths, photo_images, shown, log=print):
    """What `mhdeblur deblur PHOTO` does with no --model: the preset router's choice for each
    real photo (`presets.routing`), logged; `photo_images` ((blurry, restored) by preset
    `shown`) with the chosen preset's output as a third panel where it chose another."""
    from keras_mhdeblur.presets import from_preset
    from keras_mhdeblur.presets.measure import restore_shipped
    from keras_mhdeblur.presets.routing import shipped_router

    router = shipped_router()
    if router is None:
        return photo_images
    models, routed = {}, []
    for path, (blurry, restored) in zip(paths, photo_images):
        choice = router.choose(blurry)
        log(f"`mhdeblur deblur {Path(path).name}` (no --model; preset router: "
            f"{router.explain(choice)}) deblurs it with {choice.preset}")
        if choice.preset == shown:
            routed.append((blurry, restored))
            continue
        if choice.preset not in models:
            models[choice.preset] = from_preset(choice.preset)
        routed.append((blurry, restored,
                       [(f"{choice.preset}, router's choice",
                         restore_shipped(models[choice.preset], blurry))]))
    return routed


def run_demo(out_dir="mhdeblur-demo", *, steps=None, quick=False, label="random", seed=0,
             official=False, overwrite=False, export=True, preset="default", verbose=2,
             log=print):
    """Runs the demo (see the module doc) and returns its results dict (also results.json).

    Args:
        out_dir: output folder; must be new or empty unless `overwrite`.
        steps: training steps per model (default 600; 40 with `quick`).
        quick: tiny crops and sets, about a minute: a smoke test of the whole path.
        label: "random" (ambiguous labels; docs/method.md, "Small-scale runs") or "middle"
            (GoPro-style).
        seed: seed of both runs and the synthetic data.
        official: train the multi-head model with the official hard winner-takes-all loss
            instead of the recommended annealed one.
        overwrite: replace the demo's files in a non-empty `out_dir`.
        export: also export the multi-head model to TFLite (when keras_mhdeblur.export exists).
        preset: the preset shown first ("default": the default shipped preset; None: skip).
        verbose: Keras `fit` verbosity (2: one line per checkpoint interval).
        log: where the table and progress lines go.
    """
    from keras_mhdeblur.evaluation import evaluate_inputs, evaluate_model, select_best_head
    from keras_mhdeblur.saving import save_model
    from keras_mhdeblur.utils.files import write_json
    from keras_mhdeblur.scoring import fit_scorer, with_output_scorer

    start = time.perf_counter()
    out_dir = _prepare(out_dir, overwrite)
    shown = None
    if preset is not None:
        log("== a trained preset, out of the box ==")
        shown = show_preset(out_dir, preset, quick, log)
        log("")
    single_config, multi_config, test_count = demo_configs(steps, quick, label, seed, official)
    scorer_steps = BUDGETS["quick" if quick else "default"][-1]
    recipe = ("official hard winner-takes-all" if official else
              f"annealed winner-takes-all from T = {multi_config.temperature:g} dB")
    log(f"demo: {single_config.steps} steps each, {single_config.crop}x{single_config.crop} "
        f"synthetic crops, batch {single_config.batch}, label={label}; multi-head: {recipe}")
    log("loss: the official PSNR loss is -PSNR in dB of the best output (so -25 means 25 dB "
        "on the training crops; lower is better)")
    runs = {}
    for name, config in (("single-head", single_config), ("multi-head", multi_config)):
        log(f"\n== training the {name} model ==")
        runs[name] = train(config, out_dir / "runs" / name, verbose=verbose, log=log).model
    single, multi = runs["single-head"], runs["multi-head"]
    log(f"\n== training the scoring branch ({scorer_steps} steps, backbone frozen) ==")
    multi = with_output_scorer(multi)
    # On the training stream after the samples the backbone saw.
    fit_scorer(multi, training_data(multi_config, start_step=multi_config.steps), scorer_steps)
    train_seconds = time.perf_counter() - start

    log("\n== evaluating on held-out pairs ==")
    blurry, sharp = synthetic_stream(multi_config, TEST_SEED_OFFSET).arrays(test_count)
    test_pairs = [(f"{i:06d}", b, s) for i, (b, s) in enumerate(zip(blurry, sharp))]
    selection = select_best_head(multi, validation_pairs(multi_config))
    results = {
        "preset": shown,
        "input": evaluate_inputs(test_pairs).summary(),
        "single_head": evaluate_model(single, test_pairs).summary(),
        "multi_head": evaluate_model(multi, test_pairs).summary(),
        "selected_output": multi.selected_output,
        "selection_validation_psnr": selection["best_single_head_psnr"],
    }
    save_model(single, out_dir / "single_head.keras")
    save_model(multi, out_dir / "multi_head.keras")

    from keras_mhdeblur.data.io import write_png

    write_png(out_dir / "sheet.png", _sheets(single, multi, test_pairs))
    table = comparison_table(results["input"], results["single_head"], results["multi_head"],
                             multi.selected_output, multi_config)
    log(f"\nHeld-out test set: {test_count} synthetic pairs of {multi_config.crop}x"
        f"{multi_config.crop}, label={label}; 8-bit PSNR (dB) and 3-D SSIM as the official code "
        "computes them.\n" + table)

    if export and importlib.util.find_spec("keras_mhdeblur.export") is not None:
        from keras_mhdeblur import export as export_lib

        try:
            exported = export_lib.export_tflite(multi, out_dir / "multi_head.tflite",
                                                output="auto", overwrite=True)
            results["tflite"] = str(exported.path)
            log(f"\nexported the auto output to TFLite: {exported.path} "
                f"({exported.size_bytes / 1e6:.2f} MB, verified in the interpreter)")
        except Exception as error:  # the demo's result stands without the export
            results["tflite_error"] = f"{type(error).__name__}: {error}"
            log(f"\nTFLite export skipped: {results['tflite_error']}")
    results.update(steps=multi_config.steps, crop=multi_config.crop, batch=multi_config.batch,
                   label=label, seed=seed, scorer_steps=scorer_steps,
                   train_seconds=round(train_seconds, 1),
                   wall_seconds=round(time.perf_counter() - start, 1),
                   single_head_config=single_config.to_dict(),
                   multi_head_config=multi_config.to_dict())
    write_json(out_dir / "results.json", results)
    log(f"\nwrote {out_dir}: single_head.keras, multi_head.keras, sheet.png, results.json "
        f"({results['wall_seconds']:.0f} s in all)")
    return results
