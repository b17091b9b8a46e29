"""The heads protocol (docs/heads.md): do the K heads stay alive, and what does a user ship?

For each seed, trains the demo's small NAFNet on built-in synthetic blur once per variant (same
data and initialisation per seed: the seed sets both) and scores it on held-out pairs:

    single     one head (the baseline)
    official   K = 4 with head combination, the official hard winner-takes-all loss
    nocombine  K = 4 without combination (diagnosis)
    annealed   annealed winner-takes-all, T0 = --temperature dB, falling to 0 over half the steps
    relaxed    relaxed winner-takes-all, eps = --relaxation

While training, a probe of held-out pairs records per output the win share and the channel bias
(per-channel mean of the output minus the target's, in 8-bit levels) at every checkpoint, which
is the diagnosis of how the physical heads drift. In the table, "mean |channel bias|" averages
|bias| over the physical heads and RGB (the single head has one of about 1 level on these
labels: a brightness offset every model shares), and "colour cast" is the largest spread
between a head's R, G and B biases. Every run is a normal `mhdeblur train` run
folder (resumable); a finished run's figures go to <out>/<variant>-seed<N>.json and are not
computed again, so the command can be stopped and started again.

Each multi-head run also gets the scoring branches of --scorers (backbone frozen), each with
its auto PSNR and how much it knows of the per-patch winner against the winners' own
frequencies (docs/heads.md, "The targets, and what stands in the way").

    python experiments/heads_protocol.py --label random --out runs/heads-random
    python experiments/heads_protocol.py --label middle --steps 3000 --probe-every 250 \
        --test-pairs 128 --variants single,annealed,relaxed,official \
        --scorers candidates,features --out runs/heads-middle-3000
"""

import argparse
import json
import sys
import time
from pathlib import Path

import keras
import numpy as np

from keras_mhdeblur.demo import DEMO_MODEL
from keras_mhdeblur.evaluation import evaluate_inputs, evaluate_model, select_best_head
from keras_mhdeblur.heads import physical_head_outputs
from keras_mhdeblur.inference import restore
from keras_mhdeblur.saving import load_model, save_model
from keras_mhdeblur.utils.files import write_json
from keras_mhdeblur.uncertainty import spread_error_report
from keras_mhdeblur.scoring import FUSIONS, INPUTS, OBJECTIVES, fit_scorer, with_output_scorer
from keras_mhdeblur.training import (TEST_SEED_OFFSET, TrainConfig, synthetic_stream, train,
                                     training_data, validation_pairs)

VARIANTS = ("single", "official", "nocombine", "annealed", "relaxed")


def variant_config(variant, args, seed):
    common = dict(DEMO_MODEL, synthetic=True, synthetic_label=args.label, crop=args.crop,
                  batch=args.batch, steps=args.steps, val_synthetic=args.val_pairs,
                  checkpoint_every=args.probe_every, val_every=args.steps, keep=1, seed=seed)
    changes = {"single": dict(heads=1), "official": {}, "nocombine": dict(combine_heads=False),
               "annealed": dict(temperature=args.temperature),
               "relaxed": dict(relaxation=args.relaxation)}
    if variant not in changes:
        raise SystemExit(f"--variants: unknown variant {variant!r}; expected {VARIANTS}")
    return TrainConfig(**{"heads": 4, **common, **changes[variant]})


def colour_bias(outputs, sharp):
    """(N, K', H, W, 3), (N, H, W, 3) -> (K', 3): mean over images of the per-channel mean of
    the clamped output minus the target's, in 8-bit levels."""
    means = np.clip(outputs, 0, 1).mean(axis=(2, 3)) - sharp.mean(axis=(1, 2))[:, None]
    return 255.0 * means.mean(axis=0)


def probe(model, blurry, sharp):
    """Win share and colour bias of every output on the probe pairs."""
    outputs = np.stack([restore(model, image, which="all") for image in blurry])
    if outputs.ndim == 4:
        outputs = outputs[:, None]
    mse = ((np.clip(outputs, 0, 1) - sharp[:, None]) ** 2).mean(axis=(2, 3, 4))
    wins = np.bincount(mse.argmin(axis=1), minlength=outputs.shape[1]) / len(blurry)
    return {"wins": wins.tolist(), "colour_bias": colour_bias(outputs, sharp).tolist(),
            "outputs": outputs}


class Probe(keras.callbacks.Callback):
    def __init__(self, blurry, sharp, start_step, every, history):
        super().__init__()
        self.blurry, self.sharp, self.history = blurry, sharp, history
        self.step, self.every = start_step, every

    def on_train_begin(self, logs=None):
        if not self.history:  # a fresh run: the heads at initialisation
            record = probe(self.model, self.blurry, self.sharp)
            record.pop("outputs")
            self.history.append({"step": 0, **record})

    def on_epoch_end(self, epoch, logs=None):
        self.step = (epoch + 1) * self.every
        record = probe(self.model, self.blurry, self.sharp)
        record.pop("outputs")
        self.history.append({"step": self.step, **record})


def run_one(variant, seed, args, out_dir, log):
    result_path = out_dir / f"{variant}-seed{seed}.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    config = variant_config(variant, args, seed)
    run_dir = out_dir / f"{variant}-seed{seed}"
    history_path = run_dir / "probe_history.json"
    resume = (run_dir / "config.json").exists()
    history = json.loads(history_path.read_text()) if resume and history_path.exists() else []
    probe_blurry, probe_sharp = synthetic_stream(config, TEST_SEED_OFFSET + 7).arrays(
        args.probe_pairs)
    start = time.perf_counter()

    class SaveHistory(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            write_json(history_path, history)

    done = [h["step"] for h in history]
    history[:] = [h for h in history if h["step"] <= (max(done) if done else 0)]
    result = train(config, run_dir, resume=resume, verbose=0, log=log,
                   callbacks=[Probe(probe_blurry, probe_sharp, 0, config.checkpoint_every,
                                    history), SaveHistory()])
    if not result.finished:
        raise SystemExit(f"{run_dir}: stopped before the end; run again to resume")
    model = result.model
    blurry, sharp = synthetic_stream(config, TEST_SEED_OFFSET).arrays(args.test_pairs)
    test_pairs = [(f"{i:06d}", b, s) for i, (b, s) in enumerate(zip(blurry, sharp))]
    record = {"variant": variant, "seed": seed, "config": config.to_dict(),
              "train_seconds": round(time.perf_counter() - start, 1), "history": history}
    if model.num_outputs > 1:
        selection = select_best_head(model, validation_pairs(config))
        record["selected_output"] = int(model.selected_output)
        record["selection_validation_psnr"] = selection["best_single_head_psnr"]
        scored = add_scorers(record, model, config, test_pairs, args, run_dir)
        record["uncertainty"] = uncertainty(scored or model, test_pairs)
    summary = evaluate_model(model, test_pairs, compute_ssim=False).summary()
    final = probe(model, blurry, sharp)
    record.update(test=summary, test_wins=final["wins"], test_colour_bias=final["colour_bias"],
                  physical_outputs=physical_head_outputs(config.heads, config.combine_heads)
                  if config.heads > 1 else [0])
    write_json(result_path, record)
    return record


def scorer_spec(text):
    """"INPUTS[:OBJECTIVE][@PATCH]" (scoring.INPUTS, scoring.OBJECTIVES, a power of two) ->
    (inputs, objective, patch size); by default the winner objective on 8x8 patches."""
    branch, _, patch = text.partition("@")
    inputs, _, objective = branch.partition(":")
    objective = objective or "winner"
    if inputs not in INPUTS or objective not in OBJECTIVES or not (patch or "8").isdigit():
        raise SystemExit(f"--scorers: {text!r} is not INPUTS[:OBJECTIVE][@PATCH] with INPUTS one "
                         f"of {INPUTS} and OBJECTIVE one of {OBJECTIVES}")
    return inputs, objective, int(patch or 8)


def scored_path(run_dir, spec):
    """The file of a run's scored model for one --scorers spec."""
    if spec == "candidates":
        return run_dir / "scored.keras"
    return run_dir / f"scored-{spec.replace(':', '-').replace('@', '-p')}.keras"


def add_scorers(record, model, config, test_pairs, args, run_dir):
    """Trains each scoring branch of --scorers that the record lacks (backbone frozen, on the
    training stream after the samples the backbone saw) and stores its auto PSNRs in
    record["auto"][spec]. Returns the first spec's scored model (None without scorers); its
    file is <run>/scored.keras."""
    if "auto_psnr" in record:  # records written before the scorer had inputs
        record.setdefault("auto", {})["candidates"] = record.pop("auto_psnr")
    record.setdefault("auto", {})
    first = None
    if not args.scorer_steps:
        return first
    for spec in (s for s in args.scorers.split(",") if s):
        path = scored_path(run_dir, spec)
        if spec in record["auto"] and path.exists():
            stored = load_model(path, compile=True)
            if "cross_entropy" not in record["auto"][spec]:  # figures added since
                record["auto"][spec] = auto_psnrs(stored, test_pairs)
            first = stored if first is None else first
            continue
        inputs, objective, patch_size = scorer_spec(spec)
        keras.utils.set_random_seed(config.seed)  # same branch initialisation for every run
        scored = with_output_scorer(model, patch_size=patch_size, inputs=inputs)
        fit_scorer(scored, training_data(config, start_step=config.steps), args.scorer_steps,
                   objective=objective)
        record["auto"][spec] = auto_psnrs(scored, test_pairs)
        save_model(scored, path)
        first = scored if first is None else first
    return first


def fill_scorers(record, out_dir, args):
    """Adds the --scorers that a finished record lacks."""
    specs = [s for s in args.scorers.split(",") if s]
    have = {spec for spec, figures in record.get("auto", {}).items() if "cross_entropy" in figures}
    if record["variant"] == "single" or all(spec in have for spec in specs):
        return record
    run_dir = out_dir / f"{record['variant']}-seed{record['seed']}"
    model = load_model(run_dir / "model.keras", compile=True)
    config = TrainConfig.from_dict(record["config"])
    blurry, sharp = synthetic_stream(config, TEST_SEED_OFFSET).arrays(args.test_pairs)
    pairs = [(f"{i:06d}", b, s) for i, (b, s) in enumerate(zip(blurry, sharp))]
    add_scorers(record, model, config, pairs, args, run_dir)
    write_json(out_dir / f"{record['variant']}-seed{record['seed']}.json", record)
    return record


def auto_psnrs(model, pairs):
    """The auto output on held-out pairs: mean 8-bit PSNR with each fusion ("soft", "pick"),
    and how much the branch knows of the per-patch winner: its top-1 accuracy and
    cross-entropy (nats) against those of the winners' own frequencies on these pairs
    (`prior_*`, the best any input-blind guess does), and the PSNR of the plain mean of the
    outputs (`uniform`, what the soft fusion falls back to when it knows nothing)."""
    from keras_mhdeblur.evaluation import psnr_uint8
    from keras_mhdeblur.data.io import to_uint8
    from keras_mhdeblur.scoring import patch_winners, scorer_loss

    scorer = model.output_scorer
    scores = {fusion: [] for fusion in (*FUSIONS, "uniform")}
    hits, cross_entropy, winners_seen = [], [], []
    for _, blurry, sharp in pairs:
        outputs, features = model.outputs_and_features(blurry[None])
        outputs = model.final_output(outputs)
        logits = scorer(blurry[None], outputs, features)
        for fusion in FUSIONS:
            fused = keras.ops.convert_to_numpy(scorer.fuse_with_logits(outputs, logits, fusion))
            scores[fusion].append(psnr_uint8(to_uint8(fused[0]), to_uint8(sharp)))
        mean = keras.ops.convert_to_numpy(outputs)[0].mean(axis=0)
        scores["uniform"].append(psnr_uint8(to_uint8(mean), to_uint8(sharp)))
        winners = patch_winners(outputs, sharp[None], scorer.patch_size)
        cross_entropy.append(float(scorer_loss(logits, winners)))
        winners = keras.ops.convert_to_numpy(winners)[0]
        hits.append((keras.ops.convert_to_numpy(logits)[0].argmax(0) == winners).mean())
        winners_seen.append(winners.ravel())
    frequencies = np.bincount(np.concatenate(winners_seen), minlength=scorer.num_outputs)
    frequencies = frequencies / frequencies.sum()
    live = frequencies[frequencies > 0]
    return {**{name: float(np.mean(values)) for name, values in scores.items()},
            "winner_accuracy": float(np.mean(hits)), "cross_entropy": float(np.mean(cross_entropy)),
            "prior_accuracy": float(frequencies.max()),
            "prior_entropy": float(-(live * np.log(live)).sum())}


def uncertainty(model, pairs, count=16):
    """Mean spread-map scores (uncertainty.py) against the error of the shipped output (auto
    with a scoring branch, else the selected one) on the first `count` test pairs."""
    which = "auto" if model.output_scorer is not None else "selected"
    reports = []
    for _, blurry, sharp in pairs[:count]:
        outputs = restore(model, blurry, which="all+auto")
        reports.append(spread_error_report(outputs[:-1], outputs[-1], sharp))
    return {"shipped": which, **{key: float(np.mean([r[key] for r in reports]))
                                 for key in reports[0]}}


def fill_uncertainty(record, out_dir, args):
    """Adds the spread-map scores to a finished record that lacks them."""
    if record["variant"] == "single" or "uncertainty" in record:
        return record
    run_dir = out_dir / f"{record['variant']}-seed{record['seed']}"
    path = scored_path(run_dir, args.scorers.split(",")[0])
    model = load_model(path if path.exists() else run_dir / "model.keras", compile=True)
    if model.output_scorer is None:
        model.selected_output = record["selected_output"]
    config = TrainConfig.from_dict(record["config"])
    blurry, sharp = synthetic_stream(config, TEST_SEED_OFFSET).arrays(args.test_pairs)
    pairs = [(f"{i:06d}", b, s) for i, (b, s) in enumerate(zip(blurry, sharp))]
    record["uncertainty"] = uncertainty(model, pairs)
    write_json(out_dir / f"{record['variant']}-seed{record['seed']}.json", record)
    return record


def input_psnr(args, seed):
    config = variant_config("official", args, seed)
    blurry, sharp = synthetic_stream(config, TEST_SEED_OFFSET).arrays(args.test_pairs)
    pairs = [(f"{i:06d}", b, s) for i, (b, s) in enumerate(zip(blurry, sharp))]
    return evaluate_inputs(pairs, compute_ssim=False).summary()["per_output_psnr"][0]


def table(records, inputs):
    """Rows: input, single head, each multi-head variant (selected output, best single head on
    test, auto, oracle, spread-map scores, live outputs and heads, worst colour cast); mean over
    seeds and per seed. Variants run on fewer seeds are left out (see `diagnosis`)."""
    seeds = sorted(inputs)
    lines = [f"{'':<44}{'mean':>8}  " + "  ".join(f"{'seed ' + str(s):>8}" for s in seeds)]

    def row(label, values):
        values = [values[s] for s in seeds]
        lines.append(f"{label:<44}{np.mean(values):8.3f}  " +
                     "  ".join(f"{v:8.3f}" for v in values))

    row("input (blurry) PSNR", inputs)
    by = {}
    for r in records:
        by.setdefault(r["variant"], {})[r["seed"]] = r
    for variant in VARIANTS:
        runs = by.get(variant)
        if not runs or set(runs) != set(seeds):
            continue
        if variant == "single":
            row("single head", {s: runs[s]["test"]["per_output_psnr"][0] for s in seeds})
            row("single head: mean |channel bias|",
                {s: float(np.abs(runs[s]["test_colour_bias"][0]).mean()) for s in seeds})
            continue
        row(f"{variant}: selected output (val)",
            {s: runs[s]["test"]["per_output_psnr"][runs[s]["selected_output"]] for s in seeds})
        row(f"{variant}: best single head (test)",
            {s: runs[s]["test"]["best_single_head_psnr"] for s in seeds})
        autos = [{"candidates": runs[s]["auto_psnr"]} if "auto_psnr" in runs[s]
                 else runs[s].get("auto", {}) for s in seeds]
        specs = sorted(set.intersection(*(set(a) for a in autos)))
        for spec in specs:
            for fusion in FUSIONS:
                row(f"{variant}: auto ({spec}, {fusion})",
                    dict(zip(seeds, (a[spec][fusion] for a in autos))))
            if all("cross_entropy" in a[spec] for a in autos):
                for key, label in (("winner_accuracy", "winner top-1"),
                                   ("cross_entropy", "cross-entropy")):
                    row(f"  {spec}: {label}", dict(zip(seeds, (a[spec][key] for a in autos))))
        if specs and all("uniform" in a[specs[0]] for a in autos):
            first = specs[0]
            row(f"{variant}: mean of the outputs", dict(zip(seeds, (a[first]["uniform"]
                                                                     for a in autos))))
            row("  winners' frequencies: top-1", dict(zip(seeds, (a[first]["prior_accuracy"]
                                                                  for a in autos))))
            row("  winners' frequencies: entropy", dict(zip(seeds, (a[first]["prior_entropy"]
                                                                    for a in autos))))
        row(f"{variant}: best overall (oracle)",
            {s: runs[s]["test"]["best_overall_psnr"] for s in seeds})
        if all("uncertainty" in runs[s] for s in seeds):
            row(f"{variant}: spread-error Spearman",
                {s: runs[s]["uncertainty"]["spearman"] for s in seeds})
            row(f"{variant}: AUSE / random AUSE",
                {s: runs[s]["uncertainty"]["ause"] / runs[s]["uncertainty"]["ause_random"]
                 for s in seeds})
        row(f"{variant}: outputs winning >= 5%",
            {s: float(sum(w >= 0.05 for w in runs[s]["test_wins"])) for s in seeds})
        row(f"{variant}: physical heads >= 5%",
            {s: float(sum(runs[s]["test_wins"][k] >= 0.05 for k in runs[s]["physical_outputs"]))
             for s in seeds})
        row(f"{variant}: physical heads' win share",
            {s: float(sum(runs[s]["test_wins"][k] for k in runs[s]["physical_outputs"]))
             for s in seeds})
        row(f"{variant}: heads' mean |channel bias|",
            {s: float(np.abs([runs[s]["test_colour_bias"][k]
                              for k in runs[s]["physical_outputs"]]).mean()) for s in seeds})
        row(f"{variant}: worst head colour cast",
            {s: float(max(np.ptp(runs[s]["test_colour_bias"][k])
                          for k in runs[s]["physical_outputs"])) for s in seeds})
    return "\n".join(lines)


def diagnosis(records, seed):
    """The heads over training on the probe pairs, one block per variant (seed `seed`): win
    share of the physical heads, outputs winning >= 5%, and colour casts (8-bit levels) of the
    physical heads against those of the pair averages."""
    lines = [f"heads over training, seed {seed} (probe pairs):",
             f"{'variant':<10}{'step':>6}{'physical wins':>15}{'live outputs':>14}"
             f"{'worst head cast':>17}{'mean |cast| heads':>19}{'mean |cast| pairs':>19}"]
    for record in records:
        if record["seed"] != seed or record["variant"] == "single":
            continue
        physical = record["physical_outputs"]
        for point in record["history"]:
            wins, cast = np.array(point["wins"]), np.abs(np.array(point["colour_bias"]))
            pairs = np.delete(cast, physical, axis=0)
            lines.append(f"{record['variant']:<10}{point['step']:>6}{wins[physical].sum():>15.2f}"
                         f"{int((wins >= 0.05).sum()):>14}{cast[physical].max():>17.1f}"
                         f"{cast[physical].mean():>19.1f}"
                         f"{pairs.mean() if pairs.size else float('nan'):>19.1f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the runs and results")
    parser.add_argument("--label", choices=("random", "middle"), default="random")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--relaxation", type=float, default=0.1)
    parser.add_argument("--scorers", default="candidates",
                        help="scoring branches to train on each multi-head run, comma-separated "
                             "INPUTS[:OBJECTIVE][@PATCH]: candidates, features or both; winner "
                             "or fusion; patch size (default 8)")
    parser.add_argument("--scorer-steps", type=int, default=300,
                        help="steps of scoring-branch training per multi-head run (0: none)")
    parser.add_argument("--probe-every", type=int, default=100)
    parser.add_argument("--probe-pairs", type=int, default=32)
    parser.add_argument("--val-pairs", type=int, default=32)
    parser.add_argument("--test-pairs", type=int, default=64)
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = [v for v in args.variants.split(",") if v]
    records = []
    for seed in seeds:
        for variant in variants:
            print(f"== {variant}, seed {seed} ==", flush=True)
            record = run_one(variant, seed, args, out_dir, log=lambda *a: None)
            if args.scorer_steps:
                record = fill_scorers(record, out_dir, args)
            records.append(fill_uncertainty(record, out_dir, args))
            r = records[-1]
            print(f"   wins {np.round(r['test_wins'], 2).tolist()}  best overall "
                  f"{r['test']['best_overall_psnr']:.3f}  ({r['train_seconds']:.0f} s)", flush=True)
    # The table covers every finished run in the folder, from this and earlier invocations.
    records = [json.loads(path.read_text()) for path in sorted(out_dir.glob("*-seed*.json"))]
    seeds = sorted({record["seed"] for record in records})
    inputs = {seed: input_psnr(args, seed) for seed in seeds}
    text = (f"label={args.label}, {args.steps} steps, crop {args.crop}, batch {args.batch}, "
            f"{args.test_pairs} test pairs, 8-bit PSNR (dB)\n" + table(records, inputs) +
            "\n\n" + diagnosis(records, seeds[0]))
    print(text)
    (out_dir / "table.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
