"""Where a CPU train step spends its time, per backend: forward + gradient of NAFNet's pieces.

    python benchmarks/backend_components.py                 # TensorFlow and JAX, width 32
    python benchmarks/backend_components.py --size 64 --width 64

Each piece is timed as loss = sum(piece(x) ** 2) and its gradient with respect to the input
and the weights, compiled the way `fit` compiles it (tf.function without XLA on TensorFlow,
jax.jit on JAX). Each backend runs in its own process, alternating over --rounds. The pieces
are at NAFNet's first level (H x W x width) unless named otherwise.
"""

import argparse
import json
import os
import subprocess
import sys

WORKER = r"""
import json, sys, time
import numpy as np
import keras
from keras import ops
from keras_mhdeblur.layers import depthwise_conv, channel_layer_norm
from keras_mhdeblur.models.nafnet import NAFBlockStack

settings = json.loads(sys.argv[1])
size, width, repeats = settings["size"], settings["width"], settings["repeats"]
rng = np.random.default_rng(0)

def array(*shape):
    return rng.normal(size=shape).astype("float32") * 0.1

def conv(stride, kernel):
    return lambda x, w: ops.conv(x, w, strides=stride, padding="same" if stride == 1 else "valid")

block = NAFBlockStack(1, width)
block.build((1, size, size, width))
pieces = {
    "depthwise 3x3 (2*width ch)": (lambda x, w: depthwise_conv(x, w),
                                   array(1, size, size, 2 * width), array(3, 3, 2 * width, 1)),
    "conv 3x3 width->width": (conv(1, 3), array(1, size, size, width),
                              array(3, 3, width, width)),
    "conv 3x3 3->width (intro)": (conv(1, 3), array(1, size, size, 3), array(3, 3, 3, width)),
    "conv 2x2 stride 2 (down)": (conv(2, 2), array(1, size, size, width),
                                 array(2, 2, width, 2 * width)),
    "1x1 conv (matmul)": (lambda x, w: ops.matmul(x, w), array(1, size, size, width),
                          array(width, 2 * width)),
    "channel layer norm": (lambda x, w: channel_layer_norm(x, w, w, epsilon=1e-6),
                           array(1, size, size, width), array(width)),
    "NAFBlock (whole)": (None, array(1, size, size, width), None),
}

backend = keras.backend.backend()
if backend == "tensorflow":
    import tensorflow as tf

    def compiled(piece):
        function, x, w = piece
        variables = [tf.Variable(v) for v in ([x] + ([w] if w is not None else []))]
        weights = variables if function is not None else [variables[0]] + block.trainable_variables

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                y = function(*variables) if function is not None else block(variables[0])
                loss = tf.reduce_sum(y ** 2)
            return tape.gradient(loss, weights)
        return step
else:
    import jax, jax.numpy as jnp

    def compiled(piece):
        function, x, w = piece
        if function is None:
            values = [v.value for v in block.trainable_variables]

            def loss(x, values):
                y, _ = block.stateless_call(values, [], x)
                return jnp.sum(y ** 2)
            gradient = jax.jit(jax.grad(loss, argnums=(0, 1)))
            return lambda: gradient(x, values)
        gradient = jax.jit(jax.grad(lambda x, w: jnp.sum(function(x, w) ** 2), argnums=(0, 1)))
        return lambda: gradient(x, w)

def block_until_ready(value):
    if backend == "jax":
        jax.block_until_ready(value)
    else:
        [v.numpy() for v in value]

results = {}
for name, piece in pieces.items():
    step = compiled(piece)
    block_until_ready(step())
    start = time.perf_counter()
    for _ in range(repeats):
        block_until_ready(step())
    results[name] = (time.perf_counter() - start) / repeats
print("RESULT " + json.dumps(results))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--size", type=int, default=128, help="H = W of the first level")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    backends = args.backends.split(",")
    times = {}
    for _ in range(args.rounds):
        for backend in backends:
            env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
            settings = json.dumps({"size": args.size, "width": args.width,
                                   "repeats": args.repeats})
            done = subprocess.run([sys.executable, "-c", WORKER, settings], env=env,
                                  capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{backend} failed:\n{done.stderr[-3000:]}")
            line = next(l for l in done.stdout.splitlines() if l.startswith("RESULT "))
            for name, seconds in json.loads(line[len("RESULT "):]).items():
                times.setdefault(name, {}).setdefault(backend, []).append(seconds)
    print(f"forward + gradient, batch 1, {args.size}x{args.size}, width {args.width}, "
          f"{os.cpu_count()} CPU cores, best of {args.rounds} rounds of {args.repeats} calls (ms)")
    print(f"{'piece':<28}" + "".join(f"{b:>12}" for b in backends)
          + ("   jax / tf" if set(backends) == {"tensorflow", "jax"} else ""))
    for name, by_backend in times.items():
        row = {b: min(by_backend[b]) * 1e3 for b in backends}
        ratio = f"{row['jax'] / row['tensorflow']:>11.2f}" if "jax" in row and \
            "tensorflow" in row else ""
        print(f"{name:<28}" + "".join(f"{row[b]:>12.2f}" for b in backends) + ratio)


if __name__ == "__main__":
    main()
