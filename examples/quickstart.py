"""Quickstart: the Python API in about 30 lines. Build a multi-head NAFNet, train it on built-in
synthetic blur, score it with the official metrics, pick a head and deblur.

    python examples/quickstart.py                 # about two minutes on a laptop CPU
    python examples/quickstart.py --steps 5       # smoke test
"""

import argparse

import keras_mhdeblur as mh
from keras_mhdeblur.data import SyntheticPairs, synthetic_dataset
from keras_mhdeblur.evaluation import evaluate_model, format_summary, select_best_head
from keras_mhdeblur.inference import restore

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--out", default="quickstart.keras")
args = parser.parse_args()


def held_out(seed, count):  # (name, blurry, sharp) pairs, as the evaluation functions take them
    blurry, sharp = SyntheticPairs(64, seed=seed, label="random").arrays(count)
    return [(f"{seed}-{i}", b, s) for i, (b, s) in enumerate(zip(blurry, sharp))]


# K = 4 heads, every pair averaged: 10 outputs; a small NAFNet (width 8, two levels).
model = mh.build_model("nafnet-w32", heads=4, width=8, enc_blocks=(1, 1), dec_blocks=(1, 1))
# The official recipe: AdamW with a cosine schedule, the winner-takes-all PSNR loss, and
# per-output PSNR and win-share metrics.
model.compile(optimizer=model.official_optimizer(total_steps=args.steps))
# Ambiguous labels (a random sub-frame of the exposure) show why several heads help.
train = synthetic_dataset(SyntheticPairs(64, seed=0, label="random"), batch_size=8)
model.fit(train, steps_per_epoch=args.steps, epochs=1, shuffle=False)

select_best_head(model, held_out(seed=1, count=16))  # best single head, chosen on validation
print(format_summary(evaluate_model(model, held_out(seed=2, count=16)).summary(), "test"))
blurry = held_out(seed=3, count=1)[0][1]
print("selected output:", model.selected_output, restore(model, blurry).shape,
      "all outputs:", restore(model, blurry, which="all").shape)
model.save(args.out)
