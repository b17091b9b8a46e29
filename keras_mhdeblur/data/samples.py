"""Sample images to check or calibrate a model with: synthetic blurry images (no download) or
random crops of a folder of the user's own pictures.

Both return a float32 batch (N, H, W, 3) in [0, 1]. The export verifies its files on the
synthetic ones and calibrates int8 quantization on either (keras_mhdeblur.export).
"""

from pathlib import Path

import keras
import numpy as np

from keras_mhdeblur.data.datasets import list_images
from keras_mhdeblur.data.io import IMAGE_EXTENSIONS, DataError, read_image
from keras_mhdeblur.data.synthetic import make_synthetic_set


def synthetic_blurry_images(count, size, seed=0, max_side=256):
    """(count, H, W, 3) float32 blurry images in [0, 1]: the blurry half of
    `make_synthetic_set(count, size, seed)`, GoPro-style synthetic blur.

    Drawn at most `max_side` pixels per side and resized up beyond that: drawing a 720x1280 set
    takes ~25 s on 2 cores, and sample images need the blur's look, not its full resolution.
    """
    height, width = size
    drawn = (min(height, max_side), min(width, max_side))
    blurry, _ = make_synthetic_set(count, size=drawn, seed=seed, workers=2)
    if drawn != (height, width):
        blurry = np.clip(_resized(blurry, (height, width)), 0, 1)
    return blurry.astype(np.float32)


def folder_crops(folder, count, size, seed=0):
    """(count, H, W, 3) float32 random crops in [0, 1] of the images in `folder` and its
    subfolders, in name order and cycled (crop i comes from image i mod n); an image smaller than
    the crop is resized up to cover it first.

    Raises:
        DataError: `folder` is not a folder, holds no images, or an image cannot be read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of images")
    paths = sorted(list_images(folder, recursive=True).values())
    if not paths:
        raise DataError(f"{folder}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    rng = np.random.default_rng(seed)
    height, width = size
    crops = []
    for index in range(count):
        image = read_image(paths[index % len(paths)])
        if image.shape[0] < height or image.shape[1] < width:
            image = _resized(image, (max(height, image.shape[0]), max(width, image.shape[1])))
        top = rng.integers(0, image.shape[0] - height + 1)
        left = rng.integers(0, image.shape[1] - width + 1)
        crops.append(image[top:top + height, left:left + width])
    return np.clip(np.stack(crops), 0, 1).astype(np.float32)


def _resized(images, size):
    """Bilinear resize of (H, W, 3) or (N, H, W, 3) float images to `size` (H, W), as numpy."""
    return keras.ops.convert_to_numpy(keras.ops.image.resize(images, size))
