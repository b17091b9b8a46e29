"""The official NAFNet-width32 recipe on GoPro, multi-head (docs/method.md, "Training recipes"),
through the library.

    python examples/train_gopro.py --gopro /data/GOPRO_Large --out runs/mhnafnet-w32
    python examples/train_gopro.py --gopro /data/GOPRO_Large --out runs/mhnafnet-w32 --resume
    python examples/train_gopro.py --gopro DIR --out RUN --width 8 --steps 4 --batch 2 \
        --crop 64                               # smoke test: DIR/train and DIR/test, any layout

Recipe (the official MHNAFNet-width32[-combinate-heads] config): K = 4 heads combined into 10
outputs, global batch 32 of random 256x256 crops with flips and transposes, 200k iterations,
AdamW (lr 1e-3, betas 0.9/0.9, weight decay 1e-3, eps 1e-8), cosine decay to 1e-7, gradient
clipping at global norm 0.01, winner-takes-all PSNR loss; validation on the GoPro test set
(the official code has no separate validation split). `--devices N` trains data-parallel with
the same global batch (the official run: 4 GPUs x 8).

Expected numbers (GoPro test, official 8-bit PSNR): the single-head NAFNet-width32 baseline
reaches 32.87 dB / SSIM 0.9606 (NAFNet's README; docs/method.md, "Results"); the paper reports
multi-head gains of up to 0.11-0.18 dB best overall and 0.04-0.08 dB best single head over the
baselines (its abstract; which backbone gives which end is not stated). Afterwards:

    mhdeblur select-head RUN/best.keras --data VAL_DIR     # a held-out split of your choice
    mhdeblur evaluate RUN/best.keras --data /data/GOPRO_Large --split test --tlc 256x256
"""

import argparse

from keras_mhdeblur.training import TrainConfig, train

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--gopro", required=True, help="GOPRO_Large folder (train/ and test/)")
parser.add_argument("--out", required=True, help="run folder")
parser.add_argument("--resume", action="store_true")
parser.add_argument("--heads", type=int, default=4, help="1 for the single-head baseline")
parser.add_argument("--no-combine", action="store_true")
parser.add_argument("--width", type=int, default=32, help="32 (official) or 64")
parser.add_argument("--steps", type=int, default=200_000)
parser.add_argument("--batch", type=int, default=32, help="global batch")
parser.add_argument("--crop", type=int, default=256)
parser.add_argument("--devices", type=int, default=None, help="data-parallel devices")
parser.add_argument("--mixed-precision", choices=("mixed_bfloat16", "mixed_float16"))
parser.add_argument("--val-every", type=int, default=5000)
args = parser.parse_args()

config = TrainConfig(
    model=f"nafnet-w{args.width}" if args.width in (32, 64) else "nafnet-w32",
    width=None if args.width in (32, 64) else args.width,  # other widths: smoke tests
    heads=args.heads, combine_heads=not args.no_combine,
    data=args.gopro, split="train", val_data=args.gopro, val_split="test",
    crop=args.crop, batch=args.batch, steps=args.steps, seed=42,
    checkpoint_every=min(1000, args.steps), val_every=args.val_every,
    mixed_precision=args.mixed_precision, devices=args.devices)
result = train(config, args.out, resume=args.resume)
if result.best:
    print(f"best on the test set: {result.best['best_overall_psnr']:.3f} dB best overall, "
          f"{result.best['best_single_head_psnr']:.3f} dB best single head "
          f"(output {result.best['best_single_head']}), at step {result.best['step']}")
