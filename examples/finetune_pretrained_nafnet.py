"""Turn an official single-head NAFNet checkpoint into a multi-head model and fine-tune it.

    python examples/finetune_pretrained_nafnet.py --checkpoint NAFNet-GoPro-width32.pth \
        --data /data/GOPRO_Large --split train --out mh-nafnet-w32.keras
    python examples/finetune_pretrained_nafnet.py \
        --checkpoint ../shared/fixtures/reference/nafnet_single_w8.npz --width 8 \
        --enc-blocks 1,1,1,2 --steps 3 --crop 64 --batch 2 --out /tmp/mh.keras   # smoke test

The checkpoint is a `.pth` from the NAFNet project (reading it needs PyTorch:
pip install 'keras_mhdeblur[torch]') or a `.npz` of the same state_dict. The multi-head model
gets the backbone as is; the last convolution is copied into every head, heads 1..K-1 slightly
perturbed to break their symmetry (`load_torch_weights(..., from_single_head=True)`), so output 0
starts equal to the single-head model and training lets the heads part ways.
"""

import argparse

import numpy as np

import keras_mhdeblur as mh
from keras_mhdeblur import optimizers
from keras_mhdeblur.convert import load_torch_weights
from keras_mhdeblur.convert.torch_weights import load_torch_checkpoint
from keras_mhdeblur.data import SyntheticPairs, find_pairs, synthetic_dataset, training_dataset

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--checkpoint", required=True, help="official single-head .pth or .npz")
parser.add_argument("--width", type=int, default=32)
parser.add_argument("--enc-blocks", default="1,1,1,28", help="official: 1,1,1,28")
parser.add_argument("--heads", type=int, default=4)
parser.add_argument("--data", help="paired training images (default: synthetic blur)")
parser.add_argument("--split", default=None)
parser.add_argument("--steps", type=int, default=20_000)
parser.add_argument("--lr", type=float, default=2e-4, help="peak lr, lower than from scratch")
parser.add_argument("--crop", type=int, default=256)
parser.add_argument("--batch", type=int, default=8)
parser.add_argument("--out", default="mh-nafnet.keras")
args = parser.parse_args()

architecture = dict(width=args.width, enc_blocks=tuple(int(n) for n in args.enc_blocks.split(",")))
state_dict = load_torch_checkpoint(args.checkpoint)
single = mh.NAFNet(**architecture)
load_torch_weights(single, state_dict)
model = mh.NAFNetMH(heads=args.heads, combine_heads=True, **architecture)
load_torch_weights(model, state_dict, from_single_head=True)

probe = np.random.default_rng(0).random((1, 64, 64, 3)).astype("float32")
start = np.abs(np.asarray(model(probe))[:, 0] - np.asarray(single(probe))).max()
print(f"output 0 vs the single-head model before fine-tuning: max abs difference {start:.2e}")

schedule = optimizers.official_schedule(model.recipe, args.steps, peak_learning_rate=args.lr)
model.compile(optimizer=optimizers.official_optimizer(model.recipe, learning_rate=schedule))
if args.data:
    batches = training_dataset(find_pairs(args.data, split=args.split), args.batch, args.crop)
else:
    batches = synthetic_dataset(SyntheticPairs(args.crop, seed=0), args.batch)
model.fit(batches, steps_per_epoch=args.steps, epochs=1, shuffle=False)
model.save(args.out)
print(f"saved {args.out}; next: mhdeblur select-head {args.out} --data VAL_DIR")
