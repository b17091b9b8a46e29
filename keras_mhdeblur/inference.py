"""Deblurring photos: whole images, large photos in overlapping tiles, TLC, output selection.

Every function takes float images (H, W, 3) in [0, 1] and returns float32 numpy arrays:
(K', H, W, 3) for all outputs of a multi-head model, (H, W, 3) for one output.
"""

import math

import keras
import numpy as np


def rebuilt(model, **changes):
    """The same network built again with some constructor arguments changed (ones that do not
    change the weights, like `tlc_train_size` or `scan_blocks`), with the weights copied."""
    config = model.get_config()
    unknown = sorted(set(changes) - set(config))
    if unknown:
        raise ValueError(f"{type(model).__name__} has no argument(s) {unknown}")
    converted = type(model).from_config({**config, **changes})
    converted.set_weights(model.get_weights())
    return converted


def with_tlc(model, train_size):
    """The same network with TLC local pooling (METHOD 6.3) for a `train_size` (h, w) crop,
    sharing no state with `model` (weights are copied). Only backbones with a global pool
    (NAFNet) take `tlc_train_size`."""
    if "tlc_train_size" not in model.get_config():
        raise ValueError(f"{type(model).__name__} has no global pooling, so TLC does not apply")
    return rebuilt(model, tlc_train_size=tuple(int(s) for s in train_size))


def select_outputs(model, outputs, which="all"):
    """Final-stage outputs of one batch -> (B, K', H, W, 3) ('all') or (B, H, W, 3).

    which: "all", "selected" (the model's `selected_output`, or all when none is stored), or an
    output index.
    """
    final = keras.ops.convert_to_numpy(model.final_output(outputs))
    if model.single_output:
        return final
    if which == "selected":
        which = "all" if model.selected_output is None else model.selected_output
    if which == "all":
        return final
    index = int(which)
    if not 0 <= index < model.num_outputs:
        raise ValueError(f"output index {index} out of range: the model has {model.num_outputs} "
                         "outputs")
    return final[:, index]


def tile_starts(size, tile, overlap):
    """Start offsets of tiles of `tile` pixels covering `size` with at least `overlap` pixels
    shared by neighbours; the last tile is snapped to the end."""
    if tile >= size:
        return [0]
    stride = tile - overlap
    count = math.ceil((size - tile) / stride) + 1
    starts = [min(i * stride, size - tile) for i in range(count)]
    return sorted(set(starts))


def _blend_window(tile_h, tile_w, overlap):
    """Weights that fall linearly to a small value over `overlap` pixels at every tile edge, so
    seams fade into each other (a plain mean leaves visible steps)."""
    def ramp(length):
        if overlap <= 0:
            return np.ones(length, np.float32)
        position = np.arange(length, dtype=np.float32)
        distance = np.minimum(position + 1, length - position)
        return np.clip(distance / (overlap + 1), 1e-3, 1.0)

    return np.outer(ramp(tile_h), ramp(tile_w))[..., None]


def restore(model, image, which="selected", tile=None, overlap=32, batch_size=4):
    """Deblurs one image.

    Args:
        model: a keras_mhdeblur model.
        image: (H, W, 3) float in [0, 1] (uint8 is scaled).
        which: "all", "selected" or an output index (see `select_outputs`).
        tile: None for the whole image at once (padding handles any size), or the tile size in
            pixels for large photos; tiles overlap by `overlap` pixels and are blended.
        batch_size: tiles per forward pass.

    Returns: (K', H, W, 3) or (H, W, 3) float32.
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    image = image.astype(np.float32)
    if tile is None:
        return select_outputs(model, model.predict_on_batch(image[None]), which)[0]
    if overlap < 0 or overlap >= tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    height, width = image.shape[:2]
    tile_h, tile_w = min(tile, height), min(tile, width)
    boxes = [(top, left) for top in tile_starts(height, tile_h, overlap)
             for left in tile_starts(width, tile_w, overlap)]
    window = _blend_window(tile_h, tile_w, overlap)
    result, weights = None, np.zeros((height, width, 1), np.float32)
    for first in range(0, len(boxes), batch_size):
        chunk = boxes[first:first + batch_size]
        tiles = np.stack([image[t:t + tile_h, l:l + tile_w] for t, l in chunk])
        if len(boxes) > batch_size and len(chunk) < batch_size:
            # A constant batch shape keeps the compiled predict function from retracing.
            tiles = np.concatenate([tiles, np.repeat(tiles[-1:], batch_size - len(chunk), 0)])
        restored = select_outputs(model, model.predict_on_batch(tiles), which)[:len(chunk)]
        if result is None:
            result = np.zeros(restored.shape[1:-3] + (height, width, 3), np.float32)
        for (top, left), output in zip(chunk, restored):
            result[..., top:top + tile_h, left:left + tile_w, :] += output * window
            weights[top:top + tile_h, left:left + tile_w] += window
    return result / weights


def spread_map(outputs):
    """Per-pixel disagreement between outputs: the standard deviation across outputs, averaged
    over RGB. (K', H, W, 3) -> (H, W); high where the heads propose different sharp images."""
    return np.asarray(outputs, np.float32).std(axis=0).mean(axis=-1)
