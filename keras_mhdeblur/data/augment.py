"""Training augmentation of (blurry, sharp) pairs, the official recipe
(docs/method.md, "Training data").

A random crop at the same place in both images, one of the 8 dihedral states (horizontal flip,
vertical flip, transpose; uniform) applied to both, and optionally MPRNet's saturation jitter
(factor drawn from 1 +- jitter, applied to both with probability 1/3). The same semantics exist
twice: in NumPy with a `np.random.Generator` (the Pillow/PyDataset path) and in TensorFlow with
stateless random ops (the tf.data path); the two draw different random numbers.
"""

from dataclasses import dataclass

import numpy as np

from keras_mhdeblur.data.io import to_float

# ITU-R 601 luma, as torchvision's rgb_to_grayscale that MPRNet's adjust_saturation uses.
_LUMA_WEIGHTS = (0.2989, 0.587, 0.114)


@dataclass(frozen=True)
class Augmentation:
    """What to do to each training pair.

    Attributes:
        crop_size: (height, width) of the random crop, an int for a square, or None for no crop.
        dihedral: apply a uniformly drawn dihedral state: all 8 for square crops, the 4 flips
            otherwise (a transpose would change the shape).
        saturation_jitter: 0 for none; 0.2 draws the factor from [0.8, 1.2] as MPRNet does.
        saturation_probability: how often the saturation jitter is applied (MPRNet: 1/3).
    """

    crop_size: int | tuple | None = 256
    dihedral: bool = True
    saturation_jitter: float = 0.0
    saturation_probability: float = 1 / 3

    @property
    def crop_shape(self):
        """(height, width) or None."""
        if self.crop_size is None:
            return None
        if isinstance(self.crop_size, int):
            return (self.crop_size, self.crop_size)
        return (int(self.crop_size[0]), int(self.crop_size[1]))

    @property
    def num_dihedral_states(self):
        if not self.dihedral:
            return 1
        shape = self.crop_shape
        return 8 if shape is not None and shape[0] == shape[1] else 4


def dihedral_transform(image, state):
    """One of the 8 symmetries of the square, on (..., H, W, C).

    state: 0..7; bit 4 transposes H and W, then bit 1 flips horizontally (W), bit 2 vertically (H).
    """
    if state & 4:
        image = np.swapaxes(image, -3, -2)
    if state & 1:
        image = image[..., :, ::-1, :]
    if state & 2:
        image = image[..., ::-1, :, :]
    return image


def undo_dihedral_transform(image, state):
    """The inverse of `dihedral_transform(image, state)`: the flips undo themselves, then the
    transpose."""
    if state & 2:
        image = image[..., ::-1, :, :]
    if state & 1:
        image = image[..., :, ::-1, :]
    if state & 4:
        image = np.swapaxes(image, -3, -2)
    return image


def adjust_saturation(image, factor):
    """Blends (..., 3) RGB in [0, 1] with its grayscale: factor 0 = gray, 1 = unchanged."""
    gray = image @ np.asarray(_LUMA_WEIGHTS, dtype=np.float32)
    gray = gray[..., None]
    return np.clip(gray + np.float32(factor) * (image - gray), 0.0, 1.0)


def augment_pair(blurry, sharp, rng, augmentation=Augmentation()):
    """Augments one pair with NumPy.

    Args:
        blurry, sharp: (H, W, 3) arrays of the same size, uint8, uint16 or float in [0, 1].
        rng: np.random.Generator.
        augmentation: `Augmentation`.

    Returns:
        (blurry, sharp) float32 in [0, 1], shape (crop_h, crop_w, 3) (or (H, W, 3) without a crop;
        transposed when the dihedral state says so).
    """
    crop = augmentation.crop_shape
    if crop is not None:
        height, width = blurry.shape[:2]
        if height < crop[0] or width < crop[1]:
            raise ValueError(f"image {height}x{width} is smaller than the {crop[0]}x{crop[1]} crop")
        top = int(rng.integers(0, height - crop[0] + 1))
        left = int(rng.integers(0, width - crop[1] + 1))
        blurry = blurry[top:top + crop[0], left:left + crop[1]]
        sharp = sharp[top:top + crop[0], left:left + crop[1]]
    if augmentation.dihedral:
        state = int(rng.integers(0, augmentation.num_dihedral_states))
        blurry, sharp = dihedral_transform(blurry, state), dihedral_transform(sharp, state)
    blurry, sharp = to_float(np.ascontiguousarray(blurry)), to_float(np.ascontiguousarray(sharp))
    if augmentation.saturation_jitter > 0 and rng.random() < augmentation.saturation_probability:
        jitter = augmentation.saturation_jitter
        factor = rng.uniform(1 - jitter, 1 + jitter)
        blurry, sharp = adjust_saturation(blurry, factor), adjust_saturation(sharp, factor)
    return blurry, sharp


def augment_pair_tf(blurry, sharp, seed, augmentation=Augmentation()):
    """Augments one pair inside a tf.data graph, with stateless random ops.

    Args:
        blurry, sharp: (H, W, 3) uint8 or uint16 tensors of the same size.
        seed: shape (2,) int64 tensor; the same seed gives the same augmentation.
        augmentation: `Augmentation`.

    Returns:
        (blurry, sharp) float32 tensors in [0, 1], shape (crop_h, crop_w, 3).
    """
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed, 4)
    pair = tf.stack([blurry, sharp])  # (2, H, W, 3): one draw moves both images alike
    crop = augmentation.crop_shape
    if crop is not None:
        pair = tf.image.stateless_random_crop(pair, [2, crop[0], crop[1], 3], seed=seeds[0])
    # Float before transposing: oneDNN's transpose rejects uint8 on CPUs without AVX-512.
    pair = tf.image.convert_image_dtype(pair, tf.float32)
    if augmentation.dihedral:
        state = tf.random.stateless_uniform(
            [], seeds[1], minval=0, maxval=augmentation.num_dihedral_states, dtype=tf.int32)
        if augmentation.num_dihedral_states == 8:
            pair = tf.cond(state >= 4, lambda: tf.transpose(pair, [0, 2, 1, 3]), lambda: pair)
        pair = tf.cond(state % 2 == 1, lambda: tf.reverse(pair, [2]), lambda: pair)
        pair = tf.cond((state // 2) % 2 == 1, lambda: tf.reverse(pair, [1]), lambda: pair)
    if augmentation.saturation_jitter > 0:
        jitter = augmentation.saturation_jitter
        apply = tf.random.stateless_uniform([], seeds[2]) < augmentation.saturation_probability
        factor = tf.random.stateless_uniform([], seeds[3], 1 - jitter, 1 + jitter)

        def saturate():
            gray = tf.tensordot(pair, tf.constant(_LUMA_WEIGHTS, tf.float32), axes=1)[..., None]
            return tf.clip_by_value(gray + factor * (pair - gray), 0.0, 1.0)

        pair = tf.cond(apply, saturate, lambda: pair)
    return pair[0], pair[1]
