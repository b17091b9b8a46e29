"""Deblurring photos: whole images, large photos in overlapping tiles, TLC, output selection,
geometric self-ensemble, grey photos kept grey.

Every function takes float images (H, W, 3) in [0, 1] and returns float32 numpy arrays:
(K', H, W, 3) for all outputs of a multi-head model, (H, W, 3) for one output.
"""

import math
import time

import keras
import numpy as np

#: Seconds of eager forward passes a TensorFlow `Predictor` spends before it compiles its graph.
EAGER_SECONDS = 10.0

#: How many of the eight flips and transposes `restore(..., self_ensemble=n)` may average: the
#: first n states of `data.augment.dihedral_transform` (itself; mirrored; the four flips; all
#: eight), each set closed under composition, so the ensemble of a transposed or mirrored image
#: is that image's ensemble transposed or mirrored.
SELF_ENSEMBLE_SIZES = (1, 2, 4, 8)

#: A photo whose pixels' channels all lie within this of each other is grey (a black-and-white
#: photo, saved as colour or not; a colour JPEG of one strays by a level or two).
GREY_TOLERANCE = 2 / 255

#: The words every `which` / `--output` takes, besides an output index.
OUTPUT_CHOICES = ("all", "all+auto", "auto", "selected", "shipped")


def output_choice(model, which=None):
    """What `which` asks of `model`'s outputs, resolved once for inference, evaluation, the
    commands and the exports: "all", "all+auto", "auto" or an output index (int).

    which:
        None: "shipped" when the model has a scoring branch or a selected output, else "all".
        "shipped": the one output `mhdeblur deblur` writes: "auto" with a scoring branch, else
            the selected output, else output 0.
        "selected": the stored `model.selected_output`; an error when none is stored.
        "auto": the scoring branch's fusion (keras_mhdeblur.scoring); without a branch the
            selected output, else output 0.
        "all", "all+auto" (every output, then auto), or an output index (int or digit string).
    A single-output model has one output, which every choice but another index gives ("all").

    Raises:
        ValueError: an unknown choice, an index out of range, or "selected" with none stored.
    """
    text = str(which).strip().lower() if which is not None else None
    if text is not None and text not in OUTPUT_CHOICES and not text.isdigit():
        raise ValueError(f"output choice must be one of {', '.join(OUTPUT_CHOICES)} or an output "
                         f"index; got {which!r}")
    if model.single_output or model.num_outputs == 1:
        if text is not None and text.isdigit() and int(text) != 0:
            raise ValueError(f"output index {text} is out of range: {model.name} has a single "
                             "output (index 0)")
        return "all"
    scorer, selected = model.output_scorer is not None, model.selected_output
    if text is None:
        text = "shipped" if scorer or selected is not None else "all"
    if text == "shipped":
        text = "auto" if scorer else "selected" if selected is not None else "0"
    if text == "auto" and not scorer:
        text = "0" if selected is None else "selected"
    if text == "selected":
        if selected is None:
            raise ValueError(f"{model.name} has no selected output (model.selected_output is "
                             "None): choose one on validation pairs first (`mhdeblur select-head`, "
                             "evaluation.select_best_head), or ask for an index or 'all'")
        return int(selected)
    if text in ("all", "all+auto", "auto"):
        return text
    index = int(text)
    if not 0 <= index < model.num_outputs:
        raise ValueError(f"output index {index} is out of range: the model has "
                         f"{model.num_outputs} outputs (indices 0..{model.num_outputs - 1})")
    return index


def pick_outputs(model, final, which=None):
    """Final-stage outputs of one batch (`model.final_output(model(x))`, or `Predictor`'s
    result, which carries the auto output after the K' outputs when the model has a scorer)
    -> (B, K', H, W, 3) for "all", (B, K' + 1, H, W, 3) for "all+auto", else (B, H, W, 3).

    which: any `output_choice`.
    """
    final = keras.ops.convert_to_numpy(final)
    choice = output_choice(model, which)
    if model.single_output:
        return final
    if choice == "all":
        return final[:, :model.num_outputs]
    if choice in ("auto", "all+auto"):
        if final.shape[1] != model.num_outputs + 1:
            raise ValueError("the auto output needs the outputs of `predictor(model)`, which "
                             "carry the scoring branch's fusion (it reads the input image too)")
        return final if choice == "all+auto" else final[:, model.num_outputs]
    return final[:, choice]


def _next_power_of_two(n):
    return 1 << max(0, int(n) - 1).bit_length()


class Predictor:
    """The model's final-stage forward pass, compiled so that changing batch or image sizes do
    not retrace it: `Predictor(model)(images) -> (B, K', H, W, 3)` numpy, float32.

    - TensorFlow: one `tf.function` with a (None, None, None, 3) signature, traced once for every
      batch and size. Graph mode, not XLA: XLA would compile again for each shape.
    - JAX (and TF models with TLC, whose local pool needs a static size): XLA wants static
      shapes, so inputs are padded to buckets that leave the result unchanged: the batch to the
      next power of two (samples are independent) and H, W to `model.pad_multiple` with the
      model's own pad mode (the model pads there anyway). One compile per bucket.
    - torch: eager, nothing to trace.

    On TensorFlow the first calls run eagerly: tracing and optimising NAFNet-w32's forward graph
    takes ~4 s on 2 CPU cores, longer than deblurring a 256x256 image eagerly (0.9 s), while
    the graph runs large images ~1.3x faster. So the predictor runs eagerly until it has spent
    `eager_seconds` there, then compiles (a ski-rental rule: a one-off deblur never pays for a
    trace, and a long job pays at most `eager_seconds` * 0.3 for starting eagerly). 0 compiles
    on the first call.

    `traces` counts how often the forward pass was traced. Weights are read at each call, so
    the predictor follows training. `predictor(model)` keeps one per model.
    """

    def __init__(self, model, eager_seconds=None):
        self.model = model
        self.traces = 0
        self.eager_seconds = EAGER_SECONDS if eager_seconds is None else float(eager_seconds)
        self._eager_spent = 0.0
        self.backend = keras.backend.backend()
        self.shape_free = (self.backend == "tensorflow"
                           and getattr(model, "tlc_train_size", None) is None)
        if self.backend == "tensorflow":
            import tensorflow as tf

            signature = [tf.TensorSpec((None, None, None, 3), tf.float32)] if self.shape_free \
                else None
            self._compiled = tf.function(self._forward, input_signature=signature,
                                         jit_compile=False)
        elif self.backend == "jax":
            import jax

            self._compiled = jax.jit(self._stateless_forward)

    def _forward(self, images):
        self.traces += 1  # runs only while tracing
        return self._outputs(images)

    def _outputs(self, images):
        # With a scoring branch, its fused "auto" output rides along after the K' outputs.
        model = self.model
        if model.output_scorer is None:
            return model.final_output(model(images, training=False))
        final, auto = model.final_and_auto(images)
        return keras.ops.concatenate([final, keras.ops.cast(auto, final.dtype)[:, None]], axis=1)

    def _stateless_forward(self, trainable, non_trainable, images):
        self.traces += 1
        model = self.model
        mapping = [*zip(model.trainable_variables, trainable),
                   *zip(model.non_trainable_variables, non_trainable)]
        # One scope for the model and its scoring branch: both read the weights passed in.
        with keras.StatelessScope(state_mapping=mapping):
            return self._outputs(images)

    def __call__(self, images):
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected images of shape (batch, height, width, 3), got shape "
                             f"{images.shape}")
        batch, height, width = images.shape[:3]
        if self.backend == "torch":
            return keras.ops.convert_to_numpy(self._outputs(images))
        if self.backend == "tensorflow" and self._eager_spent < self.eager_seconds:
            start = time.perf_counter()
            final = keras.ops.convert_to_numpy(self._outputs(images))
            self._eager_spent += time.perf_counter() - start
            return final
        if not self.shape_free:
            images = keras.ops.convert_to_numpy(self.model.pad_input(images))
            padding = _next_power_of_two(batch) - batch
            if padding:
                images = np.concatenate([images, np.repeat(images[-1:], padding, axis=0)])
        if self.backend == "jax":
            final = self._compiled([v.value for v in self.model.trainable_variables],
                                   [v.value for v in self.model.non_trainable_variables], images)
        else:
            final = self._compiled(images)
        return keras.ops.convert_to_numpy(final)[:batch, ..., :height, :width, :]


def predictor(model):
    """The `Predictor` of `model`, made on first use and kept with the model."""
    existing = model.__dict__.get("_predictor")
    if existing is None:
        existing = Predictor(model)
        # Set around Keras' attribute tracking: the predictor is not part of the model's state.
        object.__setattr__(model, "_predictor", existing)
    return existing


def tile_starts(size, tile, overlap):
    """Start offsets of tiles of `tile` pixels covering `size` with at least `overlap` pixels
    shared by neighbours; the last tile is snapped to the end."""
    if tile >= size:
        return [0]
    stride = tile - overlap
    count = math.ceil((size - tile) / stride) + 1
    starts = [min(i * stride, size - tile) for i in range(count)]
    return sorted(set(starts))


def _edge_weights(length, overlap, first, last):
    """1-D blend weights of a tile: 1 inside; at an edge shared with a neighbour (not the image
    border), 0 over the outer `overlap // 4` pixels, which see zero padding instead of the
    neighbouring image, then a linear ramp up over the rest of the overlap. Neighbours' ramps
    sum to 1, so seams fade without steps, and pixels near a cut never count."""
    weights = np.ones(length, np.float32)
    if overlap <= 0:
        return weights
    margin = overlap // 4
    steps = overlap - 2 * margin
    profile = np.concatenate([np.zeros(margin, np.float32),
                              np.arange(1, steps + 1, dtype=np.float32) / (steps + 1)])
    if not first:
        weights[:len(profile)] = np.minimum(weights[:len(profile)], profile)
    if not last:
        weights[length - len(profile):] = np.minimum(weights[length - len(profile):],
                                                     profile[::-1])
    return weights


def _aligned(tile, overlap, multiple):
    """Tile size rounded down and overlap rounded up to multiples of the model's padding
    multiple, so that every tile starts on the network's downsampling grid."""
    tile = max(multiple, tile // multiple * multiple)
    overlap = -(-overlap // multiple) * multiple
    if overlap >= tile:
        raise ValueError(f"overlap {overlap} (rounded up to a multiple of {multiple}) must be "
                         f"smaller than the tile {tile} (rounded down to a multiple of "
                         f"{multiple}); use a larger tile or a smaller overlap")
    return tile, overlap


def is_grey(image, tolerance=GREY_TOLERANCE):
    """Whether every pixel of `image` ((H, W, 3) in [0, 1]) has its three channels within
    `tolerance` of each other."""
    return bool(np.ptp(np.asarray(image, np.float32), axis=-1).max() <= tolerance)


def restore(model, image, which=None, tile=None, overlap=32, batch_size=4, self_ensemble=1,
            keep_grey=True):
    """Deblurs one image.

    Args:
        model: a keras_mhdeblur model.
        image: (H, W, 3) float in [0, 1] (uint8 is scaled).
        which: the outputs to return (`output_choice`): None (the shipped output of a model
            with a selected output or scoring branch, else all), "shipped", "selected", "auto",
            "all", "all+auto" or an index.
        tile: None for the whole image at once (padding handles any size), or the tile size in
            pixels for large photos. The image is padded as the model pads it, and cut into tiles
            that overlap by `overlap` pixels (tile rounded down and overlap up to multiples of
            `model.pad_multiple`, so tiles sit on the network's downsampling grid); tiles are
            blended with weights that ignore the outer quarter of each overlap (see
            `_edge_weights`). A model whose receptive field is at most `overlap // 4` gives the
            whole-image result up to float rounding; NAFNet's channel attention pools globally,
            so its tiles differ slightly from the whole image.
        overlap: pixels shared by neighbouring tiles.
        batch_size: tiles per forward pass.
        self_ensemble: 1, or 2, 4 or 8 to restore that many flips and transposes of the image
            (`SELF_ENSEMBLE_SIZES`) and average the results, each turned back: the geometric
            self-ensemble of restoration papers (EDSR's "+"). Blur from a shaking camera has
            no preferred direction, so each copy is an equally good input, and their mean
            carries less of the model's own error (docs/presets.md, "Self-ensemble"). It
            costs n forward passes.
        keep_grey: a grey image (`is_grey`) comes back grey, each output the mean of its
            channels. A grey photo holds no colour, yet a network trained on colour photos
            tints the edges it sharpens (green and magenta blotches on the clock photo's rim,
            docs/presets.md); False returns the network's outputs as they are.

    Returns: (K', H, W, 3) or (H, W, 3) float32.
    """
    if self_ensemble not in SELF_ENSEMBLE_SIZES:
        raise ValueError(f"self_ensemble must be one of {SELF_ENSEMBLE_SIZES} (flips and "
                         f"transposes averaged), got {self_ensemble!r}")
    image = np.asarray(image)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    image = image.astype(np.float32)
    if keep_grey and is_grey(image):
        restored = restore(model, image, which, tile, overlap, batch_size, self_ensemble,
                           keep_grey=False)
        return np.repeat(restored.mean(axis=-1, keepdims=True), 3, axis=-1)
    if self_ensemble > 1:
        from keras_mhdeblur.data.augment import dihedral_transform, undo_dihedral_transform

        total = 0.0
        for state in range(self_ensemble):
            copy = np.ascontiguousarray(dihedral_transform(image, state))
            total = total + undo_dihedral_transform(
                restore(model, copy, which, tile, overlap, batch_size, keep_grey=False), state)
        return (total / self_ensemble).astype(np.float32)
    if tile is None:
        return pick_outputs(model, predictor(model)(image[None]), which)[0]
    if overlap < 0 or overlap >= tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    height, width = image.shape[:2]
    tile, overlap = _aligned(tile, overlap, model.pad_multiple)
    padded = keras.ops.convert_to_numpy(model.pad_input(image[None]))[0]
    padded_h, padded_w = padded.shape[:2]
    tile_h, tile_w = min(tile, padded_h), min(tile, padded_w)
    rows, columns = tile_starts(padded_h, tile_h, overlap), tile_starts(padded_w, tile_w, overlap)
    boxes = [(top, left) for top in rows for left in columns]
    result, weights = None, np.zeros((padded_h, padded_w, 1), np.float32)
    for first in range(0, len(boxes), batch_size):
        chunk = boxes[first:first + batch_size]
        tiles = np.stack([padded[t:t + tile_h, l:l + tile_w] for t, l in chunk])
        if len(boxes) > batch_size and len(chunk) < batch_size:
            # The last chunk keeps the batch shape, so it reuses the compiled tile batch.
            tiles = np.concatenate([tiles, np.repeat(tiles[-1:], batch_size - len(chunk), 0)])
        restored = pick_outputs(model, predictor(model)(tiles), which)[:len(chunk)]
        if result is None:
            result = np.zeros(restored.shape[1:-3] + (padded_h, padded_w, 3), np.float32)
        for (top, left), output in zip(chunk, restored):
            window = np.outer(
                _edge_weights(tile_h, overlap, top == rows[0], top == rows[-1]),
                _edge_weights(tile_w, overlap, left == columns[0], left == columns[-1]))[..., None]
            result[..., top:top + tile_h, left:left + tile_w, :] += output * window
            weights[top:top + tile_h, left:left + tile_w] += window
    return (result / weights)[..., :height, :width, :]


def spread_map(outputs):
    """Per-pixel disagreement between outputs: the standard deviation across outputs, averaged
    over RGB. (K', H, W, 3) -> (H, W); high where the heads propose different sharp images."""
    return np.asarray(outputs, np.float32).std(axis=0).mean(axis=-1)
