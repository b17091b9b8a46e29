"""Data-parallel training on the engines' own machinery (no home-made parallelism).

    with keras_mhdeblur.distribute.data_parallel(devices=2):
        model = keras_mhdeblur.NAFNetMH(heads=4)
        model.compile(optimizer=model.official_optimizer(total_steps))
    model.fit(dataset_with_global_batch, ...)

TensorFlow: `tf.distribute.MirroredStrategy` over the local GPUs (or CPUs when there are none).
JAX: `keras.distribution.DataParallel` over `jax.devices()`; for several hosts call
`jax.distributed.initialize()` first (every host then runs the same script), and
`keras.distribution.list_devices()` lists all hosts' devices.

The batch given to `fit` is the global batch (per-device batch x devices), as the official
configs count it (NAFNet-w32: 4 GPUs x 8 = 32). Losses average over the global batch, so one
data-parallel step equals one single-device step on the same batch.
"""

import contextlib

import keras


def available_devices():
    """Names of the devices data parallelism would use, accelerators first."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return [device.name for device in devices]
    return keras.distribution.list_devices()


@contextlib.contextmanager
def data_parallel(devices=None):
    """Builds, compiles and fits the model inside this context to train data-parallel.

    Args:
        devices: how many devices (the first N of `available_devices()`), or None for all.
    """
    names = available_devices()
    if devices is not None:
        if devices < 1 or devices > len(names):
            raise ValueError(f"devices={devices} requested, but {len(names)} are available: "
                             f"{names}")
        names = names[:devices]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.distribute.MirroredStrategy(names).scope():
            yield
    elif backend == "jax":
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=names))
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)
    else:
        raise NotImplementedError(f"data parallel training is not wired for the {backend} "
                                  "backend; use TensorFlow or JAX")
