"""Input pipelines over paired datasets: tf.data for TensorFlow, `keras.utils.PyDataset` for any backend.

Training pipelines yield batches (blurry, sharp), each float32 (B, crop_h, crop_w, 3) in [0, 1],
that `model.fit` takes directly. Evaluation yields whole images with their names. Everything is
seeded: the same seed gives the same batches, whatever the number of parallel calls or workers.
TensorFlow is imported inside the tf.data functions only, so the PyDataset path runs without it
(with the JAX or torch backend).
"""

import multiprocessing
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import keras
import numpy as np

from keras_mhdeblur.data.augment import Augmentation, augment_pair, augment_pair_tf
from keras_mhdeblur.data.datasets import PairSet
from keras_mhdeblur.data.io import DataError, read_image_array, to_float
from keras_mhdeblur.data.synthetic import stack_pairs


def _pair_set(pairs):
    if isinstance(pairs, PairSet):
        return pairs
    pairs = tuple(pairs)
    if not pairs:
        raise DataError("no image pairs given")
    return PairSet(pairs[0].blurry.parent, "list", None, pairs)


def _crop_shape(crop):
    return Augmentation(crop_size=crop).crop_shape


def _center_crop(image, crop):
    if crop is None:
        return image
    top, left = (image.shape[0] - crop[0]) // 2, (image.shape[1] - crop[1]) // 2
    return image[top:top + crop[0], left:left + crop[1]]


# ---------------------------------------------------------------------------------------------
# tf.data


def _image_decoder(infos):
    """decode(path, use_pillow) -> (H, W, 3) tensor: uint8, or float32 in [0, 1] when any file
    is 16-bit."""
    import tensorflow as tf

    sixteen_bit = any(info.bit_depth == 16 for info in infos)
    dtype = tf.float32 if sixteen_bit else tf.uint8
    needs_pillow = not all(info.tf_decodable for info in infos)

    def read_with_pillow(path):
        path = path.decode()
        return read_image_array(path, np.uint16).astype(np.float32) / np.float32(65535) if sixteen_bit \
            else read_image_array(path, np.uint8)

    def decode_with_tf(path):
        return tf.io.decode_image(tf.io.read_file(path), channels=3, dtype=dtype,
                                  expand_animations=False)

    def decode_with_pillow(path):
        image = tf.numpy_function(read_with_pillow, [path], dtype, stateful=False)
        image.set_shape([None, None, 3])
        return image

    def decode(path, use_pillow):
        if not needs_pillow:
            return decode_with_tf(path)
        return tf.cond(use_pillow, lambda: decode_with_pillow(path), lambda: decode_with_tf(path))

    return decode


def _path_slices(pair_set, infos):
    return (
        [str(pair.blurry) for pair in pair_set],
        [str(pair.sharp) for pair in pair_set],
        [not info.tf_decodable for info in infos],
    )


def training_dataset(pairs, batch_size=8, crop_size=256, seed=0, *, dihedral=True,
                     saturation_jitter=0.0, cache=False, shuffle=True, repeat=True,
                     drop_remainder=True, num_parallel_calls=None, verify=True, start_step=0,
                     shard=None):
    """A tf.data pipeline of augmented training batches for `model.fit`.

    Decodes in parallel with tf.io, optionally caches the decoded images, shuffles (every epoch
    anew), repeats, crops and augments (see `augment.py`), batches and prefetches. Files are
    checked up front (`PairSet.check`), so decoding never fails inside the graph.

    Args:
        pairs: `PairSet` (from `find_pairs` & co.) or a sequence of `ImagePair`.
        batch_size: pairs per batch.
        crop_size: int or (height, width) of the random crops; every image must be at least this.
        seed: the same seed gives the same batches.
        dihedral: random flips and transposes (8 states for square crops).
        saturation_jitter: MPRNet's colour jitter, 0 (off) or e.g. 0.2.
        cache: False, True (decoded images kept in memory, as uint8 unless a file is 16-bit) or
            a file path for tf.data's file cache. With a cache the shuffle buffer also holds
            whole images.
        shuffle: reshuffle the pairs every epoch.
        repeat: repeat forever (pass `steps_per_epoch` to fit); False for one pass.
        drop_remainder: drop a last incomplete batch.
        num_parallel_calls: parallel decodes; None for tf.data.AUTOTUNE.
        verify: run Pillow's integrity check on every file when checking.
        start_step: first batch to yield, to resume a run: the samples of earlier batches are
            skipped before decoding, and the rest equal those of an uninterrupted pipeline.
        shard: (process_index, process_count) to read only this process's part of every
            batch (see `own_part`): batches of batch_size // process_count samples.

    Returns:
        tf.data.Dataset of (blurry, sharp), each float32 (batch_size, crop_h, crop_w, 3) in [0, 1].
    """
    import tensorflow as tf

    pair_set = _pair_set(pairs)
    augmentation = Augmentation(crop_size, dihedral, saturation_jitter)
    infos = pair_set.check(min_size=augmentation.crop_shape, verify=verify)
    decode = _image_decoder(infos)
    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls

    @tf.autograph.experimental.do_not_convert  # plain graph code; spares autograph's warnings
    def decode_pair(blurry_path, sharp_path, use_pillow):
        return decode(blurry_path, use_pillow), decode(sharp_path, use_pillow)

    dataset = tf.data.Dataset.from_tensor_slices(_path_slices(pair_set, infos))
    if cache:
        dataset = dataset.map(decode_pair, num_parallel_calls=parallel, deterministic=True)
        dataset = dataset.cache("" if cache is True else str(cache))
    if shuffle:
        dataset = dataset.shuffle(len(pair_set), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()

    @tf.autograph.experimental.do_not_convert
    def load(index, element):
        blurry, sharp = element if cache else decode_pair(*element)
        element_seed = tf.stack([tf.constant(seed, tf.int64), index])
        return augment_pair_tf(blurry, sharp, element_seed, augmentation)

    # The augmentation seed is the sample's position in the stream, so skipped samples leave the
    # rest unchanged.
    dataset = dataset.enumerate().skip(start_step * batch_size)
    dataset, batch_size = own_part(dataset, batch_size, shard)  # before decoding: files unread
    dataset = dataset.map(load, num_parallel_calls=parallel, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(pairs, center_crop=None, with_names=False, verify=True):
    """Whole validation/test images as a tf.data pipeline with batch size 1.

    Args:
        pairs: `PairSet` or a sequence of `ImagePair`.
        center_crop: None for whole images, or an int or (height, width) center crop
            (MPRNet picks its checkpoint on 256 center crops).
        with_names: also yield each pair's name.
        verify: run Pillow's integrity check on every file first.

    Returns:
        tf.data.Dataset of (blurry, sharp), float32 (1, H, W, 3) in [0, 1], in name order;
        (name, blurry, sharp) with name a (1,) string tensor when `with_names`.
    """
    import tensorflow as tf

    pair_set = _pair_set(pairs)
    crop = _crop_shape(center_crop)
    infos = pair_set.check(min_size=crop, verify=verify)
    decode = _image_decoder(infos)

    @tf.autograph.experimental.do_not_convert
    def load(name, blurry_path, sharp_path, use_pillow):
        images = []
        for path in (blurry_path, sharp_path):
            image = decode(path, use_pillow)
            if crop is not None:
                shape = tf.shape(image)
                image = tf.image.crop_to_bounding_box(
                    image, (shape[0] - crop[0]) // 2, (shape[1] - crop[1]) // 2, crop[0], crop[1])
            images.append(tf.image.convert_image_dtype(image, tf.float32))
        return (name, *images) if with_names else tuple(images)

    dataset = tf.data.Dataset.from_tensor_slices((pair_set.names, *_path_slices(pair_set, infos)))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(1).prefetch(tf.data.AUTOTUNE)


def iter_evaluation_pairs(pairs, center_crop=None, verify=True):
    """Whole validation/test images with Pillow and NumPy, one pair at a time, in name order.

    Args:
        pairs: `PairSet` or a sequence of `ImagePair`.
        center_crop: None, or an int or (height, width) center crop.
        verify: run Pillow's integrity check on every file first.

    Yields:
        (name, blurry, sharp): str, and float32 (H, W, 3) arrays in [0, 1].
    """
    pair_set = _pair_set(pairs)
    crop = _crop_shape(center_crop)
    infos = pair_set.check(min_size=crop, verify=verify)
    for pair, info in zip(pair_set, infos):
        dtype = np.uint16 if info.bit_depth == 16 else np.uint8
        blurry, sharp = (to_float(_center_crop(read_image_array(path, dtype), crop))
                         for path in (pair.blurry, pair.sharp))
        yield pair.name, blurry, sharp


def own_part(dataset, batch_size, shard):
    """(dataset, local batch size) for one process of several.

    `dataset` yields (position in the stream, ...) with batches starting at multiples of
    `batch_size`; process i of n keeps the i-th run of batch_size / n positions of every batch,
    so the parts of all processes, in process order, are the single-process batch. Called before
    the samples are made, so no process reads or generates another's samples.

    Args:
        shard: (process_index, process_count), or None for the whole stream.
    """
    if shard is None or shard[1] == 1:
        return dataset, batch_size
    index, count = shard
    if batch_size % count:
        raise ValueError(f"batch {batch_size} cannot be split evenly over {count} processes; "
                         f"use a multiple of {count}")
    local = batch_size // count
    return dataset.filter(lambda position, *_: (position % batch_size) // local == index), local


def synthetic_dataset(synthetic, batch_size=8, start_index=0, count=None, num_parallel_calls=None,
                      shard=None):
    """A tf.data pipeline over a `SyntheticPairs` stream (generated with NumPy in parallel calls).

    Args:
        synthetic: `SyntheticPairs`.
        batch_size: pairs per batch.
        start_index: index of the first pair in the stream.
        count: number of pairs, or None for an endless stream.
        num_parallel_calls: pairs generated at once; None for tf.data.AUTOTUNE.
        shard: (process_index, process_count) to generate only this process's part of every
            batch (see `own_part`).

    Returns:
        tf.data.Dataset of (blurry, sharp), each float32 (batch_size, H, W, 3) in [0, 1].
    """
    import tensorflow as tf

    stop = np.iinfo(np.int64).max if count is None else start_index + count
    height, width = synthetic.size

    def make(index):
        return synthetic.pair(int(index))[:2]

    @tf.autograph.experimental.do_not_convert
    def generate(index):
        blurry, sharp = tf.numpy_function(make, [index], [tf.float32, tf.float32], stateful=False)
        blurry.set_shape([height, width, 3])
        sharp.set_shape([height, width, 3])
        return blurry, sharp

    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls
    dataset = tf.data.Dataset.range(0, stop - start_index)  # positions, batches aligned to 0
    dataset, batch_size = own_part(dataset, batch_size, shard)
    dataset = dataset.map(lambda position: generate(position + start_index),
                          num_parallel_calls=parallel, deterministic=True)
    return dataset.batch(batch_size, drop_remainder=count is None).prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------------------------
# PyDataset (no TensorFlow needed)


class _EpochSampler:
    """Maps (epoch, batch index) to sample numbers of an endless stream, so batches can be made
    in any order by any worker and still be the same for the same seed."""

    def __init__(self, batch_size, steps_per_epoch, first_sample=0):
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.first_sample = int(first_sample)
        self.epoch = 0

    def sample_numbers(self, index):
        if not 0 <= index < self.steps_per_epoch:
            raise IndexError(f"batch index {index} out of range(0, {self.steps_per_epoch})")
        first = self.first_sample + (self.epoch * self.steps_per_epoch + index) * self.batch_size
        return range(first, first + self.batch_size)


class PairedPyDataset(keras.utils.PyDataset):
    """Augmented training batches from files, decoded with Pillow: any Keras backend, no TensorFlow.

    Same augmentation semantics as `training_dataset`. Every epoch visits the pairs in a fresh
    seeded order; the stream of samples continues across epochs (an epoch need not be a whole
    number of passes). Batch `i` of epoch `e` depends only on (seed, e, i), so `workers` and
    `use_multiprocessing` do not change the batches. (Keras may make a batch ahead after it has
    ended the epoch, and then it gets the next epoch's numbers: for a stream whose step n is
    always batch n, e.g. to resume exactly, wrap `__getitem__` in `StreamBatches`, as
    `mhdeblur train --pipeline pydataset` does.)

    Args:
        pairs: `PairSet` or a sequence of `ImagePair`.
        batch_size: pairs per batch.
        crop_size: int or (height, width) of the random crops.
        seed: the same seed gives the same batches.
        dihedral, saturation_jitter: as in `training_dataset`.
        steps_per_epoch: batches per epoch; default one pass, len(pairs) // batch_size (at least 1).
        start_sample: the stream's first sample number (a resumed training skips the samples
            of the steps it has done: steps * batch_size).
        cache: keep decoded images in memory (uint8, or uint16 for 16-bit files).
        verify: run Pillow's integrity check on every file first.
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size` of `keras.utils.PyDataset`.

    Items: (blurry, sharp), each float32 (batch_size, crop_h, crop_w, 3) in [0, 1].
    """

    def __init__(self, pairs, batch_size=8, crop_size=256, seed=0, *, dihedral=True,
                 saturation_jitter=0.0, steps_per_epoch=None, start_sample=0, cache=False,
                 verify=True, **kwargs):
        super().__init__(**kwargs)
        self.pair_set = _pair_set(pairs)
        self.augmentation = Augmentation(crop_size, dihedral, saturation_jitter)
        self.infos = self.pair_set.check(min_size=self.augmentation.crop_shape, verify=verify)
        self.seed = int(seed)
        steps = steps_per_epoch or max(1, len(self.pair_set) // batch_size)
        self._sampler = _EpochSampler(batch_size, steps, start_sample)
        self._cache = {} if cache else None
        self._orders = {}
        self._lock = threading.Lock()

    def __len__(self):
        return self._sampler.steps_per_epoch

    def on_epoch_end(self):
        self._sampler.epoch += 1

    def _pair_index(self, sample):
        """The pair a sample number uses: passes over the data in seeded random orders."""
        size = len(self.pair_set)
        round_number, position = divmod(sample, size)
        with self._lock:
            if round_number not in self._orders:
                if len(self._orders) > 4:
                    self._orders.pop(min(self._orders))
                rng = np.random.default_rng([self.seed, round_number])
                self._orders[round_number] = rng.permutation(size)
            return int(self._orders[round_number][position])

    def _images(self, index):
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        pair = self.pair_set[index]
        dtype = np.uint16 if self.infos[index].bit_depth == 16 else np.uint8
        images = read_image_array(pair.blurry, dtype), read_image_array(pair.sharp, dtype)
        if self._cache is not None:
            self._cache[index] = images
        return images

    def __getitem__(self, index):
        blurry_batch, sharp_batch = [], []
        for sample in self._sampler.sample_numbers(index):
            blurry, sharp = self._images(self._pair_index(sample))
            # Stream 1 keeps augmentation draws apart from the order draws (stream-less seeds).
            rng = np.random.default_rng([self.seed, sample, 1])
            blurry, sharp = augment_pair(blurry, sharp, rng, self.augmentation)
            blurry_batch.append(blurry)
            sharp_batch.append(sharp)
        return np.stack(blurry_batch), np.stack(sharp_batch)


class SyntheticPyDataset(keras.utils.PyDataset):
    """Batches of a `SyntheticPairs` stream as a `keras.utils.PyDataset` (any backend).

    Batch `i` of epoch `e` holds stream pairs (start_index + (e * steps_per_epoch + i) * batch_size)
    onwards, so every epoch brings new pairs and workers do not change them. (In `fit`, a batch
    Keras makes ahead after an epoch ended gets the next epoch's numbers; `StreamBatches` with
    `SyntheticBatches` is the stream whose step n is always batch n.)

    Args:
        synthetic: `SyntheticPairs`.
        batch_size: pairs per batch.
        steps_per_epoch: batches per epoch.
        start_index: index of the first pair in the stream.
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size` of `keras.utils.PyDataset`.

    Items: (blurry, sharp), each float32 (batch_size, H, W, 3) in [0, 1].
    """

    def __init__(self, synthetic, batch_size=8, steps_per_epoch=100, start_index=0, **kwargs):
        super().__init__(**kwargs)
        self.synthetic = synthetic
        self.start_index = int(start_index)
        self._sampler = _EpochSampler(batch_size, steps_per_epoch)

    def __len__(self):
        return self._sampler.steps_per_epoch

    def on_epoch_end(self):
        self._sampler.epoch += 1

    def __getitem__(self, index):
        return stack_pairs([self.synthetic.pair(self.start_index + sample)[:2]
                            for sample in self._sampler.sample_numbers(index)])


# ---------------------------------------------------------------------------------------------
# An endless stream of batches made ahead in worker processes (no TensorFlow needed)

# Forked workers share the parent's memory; elsewhere (macOS, Windows) StreamBatches uses threads.
_CAN_FORK = "fork" in multiprocessing.get_all_start_methods() and sys.platform.startswith("linux")
# The batch maker of a worker process, set once when the process starts (`_start_worker`).
_WORKER_MAKE_BATCH = None


def _start_worker(make_batch):
    global _WORKER_MAKE_BATCH
    _WORKER_MAKE_BATCH = make_batch


def _make_in_worker(index):
    return _WORKER_MAKE_BATCH(index)


class StreamBatches(keras.utils.PyDataset):
    """An endless stream of batches for `fit`: batch i is `make_batch(i)`, made ahead of use in
    worker processes that last as long as the stream.

    `fit` takes batch 0, 1, 2, ... across its epochs, on every backend, so a training's step n
    gets batch n whatever the number of processes. (Keras' own workers restart with every
    epoch and an epoch-indexed `PyDataset` can be asked for a batch after its epoch ended;
    `SyntheticPyDataset` and `PairedPyDataset` are for a plain `fit` where that does not
    matter.) Processes are forked (on Linux; threads elsewhere), so they share what the batch
    maker has already built (`SyntheticPairs.prepare`).

    Args:
        make_batch: index -> batch, e.g. (blurry, sharp) arrays; a pure function of the index.
        processes: worker processes; 1 makes every batch in the calling process.
        ahead: batches made ahead of the one asked for (default 2 per process).
    """

    def __init__(self, make_batch, processes=1, ahead=None):
        super().__init__()
        self.make_batch = make_batch
        self.processes = max(1, int(processes))
        self.ahead = int(ahead) if ahead is not None else 2 * self.processes
        self._pool = None
        self._task = None  # what the pool runs: make_batch, or its copy in a forked process
        self._pending = {}

    @property
    def num_batches(self):
        return None  # endless: Keras keeps one iterator across epochs

    def __getitem__(self, index):
        if self.processes == 1:
            return self.make_batch(index)
        if self._pool is None:
            if _CAN_FORK:
                self._pool = ProcessPoolExecutor(
                    self.processes, mp_context=multiprocessing.get_context("fork"),
                    initializer=_start_worker, initargs=(self.make_batch,))
                self._task = _make_in_worker
            else:  # threads: nothing to pickle (NumPy releases the GIL in the large steps)
                self._pool = ThreadPoolExecutor(self.processes)
                self._task = self.make_batch
        for wanted in range(index, index + self.ahead + 1):
            if wanted not in self._pending:
                self._pending[wanted] = self._pool.submit(self._task, wanted)
        batch = self._pending[index].result()
        # Keep a few behind: Keras may look at the first batches before it starts.
        for done in [key for key in self._pending if key < index - 2 or key > index + 4 * self.ahead]:
            self._pending.pop(done).cancel()
        return batch

    def close(self):
        """Stops the worker processes (also when the stream is garbage-collected)."""
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._pending = {}

    def __del__(self):
        self.close()


class SyntheticBatches:
    """Batch i of a `SyntheticPairs` stream: pairs first + i * batch_size onwards (a picklable
    batch maker for `StreamBatches`)."""

    def __init__(self, synthetic, batch_size, first=0):
        self.synthetic = synthetic
        self.batch_size = int(batch_size)
        self.first = int(first)

    def __call__(self, index):
        start = self.first + index * self.batch_size
        return stack_pairs([self.synthetic.pair(number)[:2]
                            for number in range(start, start + self.batch_size)])
