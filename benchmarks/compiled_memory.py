"""Memory of the compiled training step as XLA plans it, without running it (JAX backend).

    KERAS_BACKEND=jax python benchmarks/compiled_memory.py --config nafnet-w32 --batch 8 \
        --crop 256 --precision float32,mixed_bfloat16

Compiles the loss-and-gradient function of a multi-head model for the given batch and crop on
the current JAX device and prints XLA's buffer plan: temporaries (activations kept for the
backward pass and scratch) and arguments (weights, inputs). Compiling needs no memory for the
activations, so a CPU can estimate what a GPU run will need; the CPU compiler fuses and
schedules differently, so read it as an estimate and compare variants with each other.
"""

import argparse
import json
import sys
import time


def _parse():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="nafnet-w32", help="named config(s), comma separated")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--precision", default="float32",
                        help="float32, mixed_bfloat16, mixed_float16 (comma separated)")
    parser.add_argument("--override", default="{}", help="JSON of constructor overrides")
    return parser.parse_args()


def plan(config, precision, args):
    import jax
    import keras

    import keras_mhdeblur

    keras.config.set_dtype_policy(precision)
    model = keras_mhdeblur.build_model(config, heads=args.heads, **json.loads(args.override))
    model.compile()
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss(trainable, non_trainable, blurry, sharp):
        outputs, _ = model.stateless_call(trainable, non_trainable, blurry)
        return model.compute_loss(blurry, sharp, outputs)

    images = jax.ShapeDtypeStruct((args.batch, args.crop, args.crop, 3), "float32")
    start = time.perf_counter()
    compiled = jax.jit(jax.value_and_grad(loss)).lower(
        trainable, non_trainable, images, images).compile()
    seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    return (f"{config:<12} {precision:<15} {memory.temp_size_in_bytes / 2**30:>9.2f} "
            f"{memory.argument_size_in_bytes / 2**30:>9.2f} {seconds:>10.1f}  "
            f"{jax.devices()[0].device_kind}")


def main():
    args = _parse()
    import keras

    if keras.backend.backend() != "jax":
        raise SystemExit("run with KERAS_BACKEND=jax: this reads XLA's plan through JAX")
    print(f"{'config':<12} {'precision':<15} {'temp GiB':>9} {'args GiB':>9} {'compile s':>10}"
          "  device")
    for config in args.config.split(","):
        for precision in args.precision.split(","):
            print(plan(config, precision, args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
