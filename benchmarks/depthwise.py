"""Depthwise 3x3 convolution on JAX: XLA's grouped convolution against `layers.depthwise_conv`
(shifted products, what the library uses on JAX's CPU backend), forward and gradient.

    KERAS_BACKEND=jax python benchmarks/depthwise.py [--shapes 1x128x128x64,4x64x64x32]

Prints the time of each, alternating, and the largest difference of their outputs.
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from keras_mhdeblur.layers import depthwise_conv  # noqa: E402


def grouped(x, kernel):
    channels = x.shape[-1]
    return lax.conv_general_dilated(x, kernel.reshape(3, 3, 1, channels), (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    feature_group_count=channels)


def shifted(x, kernel):
    return depthwise_conv(x, kernel)


def timed(function, *args, repeats):
    jax.block_until_ready(function(*args))
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(function(*args))
    return (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="1x128x128x64,4x64x64x32,1x32x32x512")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    args = parser.parse_args()
    print(f"JAX {jax.__version__} on {jax.default_backend()}; median of {args.rounds} rounds of "
          f"{args.repeats} calls")
    print(f"{'shape':>16} {'grouped fwd':>12} {'shifted fwd':>12} {'grouped grad':>13} "
          f"{'shifted grad':>13} {'max diff':>9}")
    rng = np.random.default_rng(0)
    for text in args.shapes.split(","):
        shape = tuple(int(n) for n in text.split("x"))
        x = jnp.asarray(rng.normal(size=shape).astype("float32"))
        kernel = jnp.asarray(rng.normal(size=(3, 3, shape[-1], 1)).astype("float32"))
        rows = {}
        for _ in range(args.rounds):
            for name, function in (("grouped", grouped), ("shifted", shifted)):
                forward = jax.jit(function)
                gradient = jax.jit(jax.grad(lambda x, k, f=function: jnp.sum(f(x, k) ** 2),
                                            argnums=(0, 1)))
                rows.setdefault(name, []).append(
                    (timed(forward, x, kernel, repeats=args.repeats),
                     timed(gradient, x, kernel, repeats=args.repeats)))
        diff = float(jnp.abs(grouped(x, kernel) - shifted(x, kernel)).max())
        median = {name: np.median(np.array(values), axis=0) * 1e3 for name, values in rows.items()}
        print(f"{text:>16} {median['grouped'][0]:>10.2f}ms {median['shifted'][0]:>10.2f}ms "
              f"{median['grouped'][1]:>11.2f}ms {median['shifted'][1]:>11.2f}ms {diff:>9.1e}")


if __name__ == "__main__":
    main()
