"""An output without an oracle: a light branch that predicts, per patch, which output wins.

The best-overall figure of a multi-head model needs the ground truth to pick the output. The
scoring branch (after Letzelter et al., "Resilient Multiple Choice Learning", NeurIPS 2023)
learns that choice from the blurry input alone. It reads, with the gradient stopped (so it never
changes what the backbone learns), the candidates, the backbone's last features, or both
(`inputs`):

    "candidates", per output o:  [input, output_o, output_o - mean of outputs]  (9 channels)
        -> conv 3x3 -> ReLU -> 3 x (conv 3x3, stride 2 -> ReLU) -> conv 1x1 -> logit
    "features":  the final stage's last features (B, H, W, C), what the heads are a linear
        function of, computed from the whole image's context
        -> conv 3x3 -> ReLU -> 3 x (conv 3x3, stride 2 -> ReLU) -> conv 1x1 -> K' logits
    "both": the sum of the two
    -> (B, K', H / p, W / p) logits (patch size p = 8), + a learned bias per output

The candidate path's convolutions are shared by the outputs (a score says "this candidate looks
right here"), the per-output bias carries what the heads specialise on globally. Every backbone
hands its features over (`outputs_and_features`), so the branch is backbone-agnostic. Training
target: the per-patch winner (the output with the smallest MSE against the target in each
p x p patch), cross-entropy on the logits (`patch_winners`, `ScorerTrainer`).

`which="auto"` (inference, evaluation, export) fuses the outputs by the scores: the per-patch
softmax is upsampled smoothly to pixels and weighs the outputs (`fusion="soft"`), or the
per-patch argmax is upsampled the same way (`fusion="pick"`, smooth transitions instead of
seams). Models without a scorer fall back to their selected output.

    model = with_output_scorer(trained_model)                # backbone weights copied
    fit_scorer(model, dataset, steps=300)                    # backbone frozen
    restore(model, image, which="auto")
"""

import keras
from keras import ops

from keras_mhdeblur.losses import psnr_error

FUSIONS = ("soft", "pick")
INPUTS = ("candidates", "features", "both")


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class OutputScorer(keras.layers.Layer):
    """Per-patch scores of every output; see the module doc.

    Call with `(image, outputs, features)`: image (B, H, W, 3), outputs (B, K', H, W, 3),
    features (B, H, W, C) the backbone's last features (`model.outputs_and_features`; not read
    with inputs="candidates"). Returns logits (B, K', ceil(H / p), ceil(W / p)) in float32.

    Args:
        outputs: K'.
        patch_size: p, a power of two (the branch downsamples by it).
        width: channels of the convolutions.
        fusion: "soft" (weights from the softmax) or "pick" (the per-patch argmax) for `fuse`.
        inputs: what the branch reads: "candidates", "features" or "both" (module doc).
    """

    #: Not part of the official networks: weight import from PyTorch skips it.
    is_official = False

    def __init__(self, outputs, patch_size=8, width=16, fusion="soft", inputs="candidates",
                 **kwargs):
        super().__init__(**kwargs)
        patch_size = int(patch_size)
        if patch_size < 1 or patch_size & (patch_size - 1):
            raise ValueError(f"patch_size must be a power of two, got {patch_size}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {INPUTS}, got {inputs!r}")
        self.num_outputs = int(outputs)
        self.patch_size = patch_size
        self.width = int(width)
        self.fusion = fusion
        self.inputs = inputs
        # Attribute names as in files saved before the feature path existed, so they load.
        if self.reads_candidates:
            self.stem, self.downs, self.logit = self._make_path(1, "")
        if self.reads_features:
            self.feature_stem, self.feature_downs, self.feature_logit = self._make_path(
                self.num_outputs, "feature_")

    @property
    def reads_candidates(self):
        return self.inputs in ("candidates", "both")

    @property
    def reads_features(self):
        return self.inputs in ("features", "both")

    @property
    def candidate_path(self):
        return [self.stem, *self.downs, self.logit] if self.reads_candidates else None

    @property
    def feature_path(self):
        return ([self.feature_stem, *self.feature_downs, self.feature_logit]
                if self.reads_features else None)

    def _make_path(self, logits, prefix):
        """conv 3x3 -> ReLU, log2(p) x (conv 3x3 stride 2 -> ReLU), conv 1x1 to `logits`."""
        stem = keras.layers.Conv2D(self.width, 3, padding="same", activation="relu",
                                   name=f"{prefix}stem")
        downs = [keras.layers.Conv2D(self.width, 3, strides=2, padding="same",
                                     activation="relu", name=f"{prefix}down_{index}")
                 for index in range(self.patch_size.bit_length() - 1)]
        return stem, downs, keras.layers.Conv2D(logits, 1, name=f"{prefix}logit")

    def build(self, image_shape, outputs_shape=None, features_shape=None):
        paths = []
        if self.reads_candidates:
            paths.append((self.candidate_path, 9))
        if self.reads_features:
            if features_shape is None or features_shape[-1] is None:
                raise ValueError(f"{self.name} reads the backbone's features: build it by a "
                                 "call with them (model.outputs_and_features)")
            paths.append((self.feature_path, int(features_shape[-1])))
        for path, channels in paths:
            shape = (None, None, None, channels)
            for layer in path:
                layer.build(shape)
                shape = (None, None, None, self.width)
        self.output_bias = self.add_weight(shape=(self.num_outputs,), initializer="zeros",
                                           name="output_bias")
        super().build(image_shape)

    @staticmethod
    def _run(path, x):
        for layer in path:
            x = layer(x)
        return x

    def call(self, image, outputs, features=None):
        outputs = ops.stop_gradient(ops.cast(outputs, self.compute_dtype))
        image = ops.cast(image, self.compute_dtype)
        shape = ops.shape(outputs)
        batch, count, height, width = shape[0], shape[1], shape[2], shape[3]
        logits = None
        if self.reads_candidates:
            mean = ops.mean(outputs, axis=1, keepdims=True)
            tiled = ops.broadcast_to(ops.expand_dims(image, 1), ops.shape(outputs))
            stacked = ops.concatenate([tiled, outputs, outputs - mean], axis=-1)
            x = self._run(self.candidate_path,
                          ops.reshape(stacked, (batch * count, height, width, 9)))
            grid = ops.shape(x)
            logits = ops.reshape(ops.cast(x[..., 0], "float32"),
                                 (batch, count, grid[1], grid[2]))
        if self.reads_features:
            if features is None:
                raise ValueError(f"{self.name} reads the backbone's last features; call it "
                                 "with them (model.outputs_and_features)")
            features = ops.stop_gradient(ops.cast(features, self.compute_dtype))
            x = ops.transpose(ops.cast(self._run(self.feature_path, features), "float32"),
                              (0, 3, 1, 2))
            logits = x if logits is None else logits + x
        return logits + ops.reshape(ops.cast(self.output_bias, "float32"), (1, count, 1, 1))

    def weights_per_pixel(self, logits, height, width, fusion=None):
        """(B, K', h, w) logits -> (B, K', H, W) fusion weights that sum to 1 over outputs
        (`fusion` overrides the layer's)."""
        if (fusion or self.fusion) == "pick":
            probabilities = ops.one_hot(ops.argmax(logits, axis=1), self.num_outputs, axis=1,
                                        dtype="float32")
        else:
            probabilities = ops.softmax(logits, axis=1)
        p = self.patch_size
        grid = ops.shape(probabilities)
        batch, count, rows, columns = grid[0], grid[1], grid[2], grid[3]
        # Nearest upsampling (broadcast + reshape: any size, builtin TFLite ops), then a p x p
        # box filter: together a linear ramp between patch centres instead of steps at patch
        # borders. Renormalising over outputs undoes the filter's fall-off at image borders.
        nearest = ops.broadcast_to(ops.reshape(probabilities, (batch, count, rows, 1, columns, 1)),
                                   (batch, count, rows, p, columns, p))
        nearest = ops.reshape(nearest, (batch, count, rows * p, columns * p))
        box = ops.full((p, p, self.num_outputs, 1), 1.0 / (p * p), dtype="float32")
        smooth = ops.depthwise_conv(ops.transpose(nearest, (0, 2, 3, 1)), box, padding="same")
        smooth = smooth[:, :height, :width]
        smooth = smooth / ops.maximum(ops.sum(smooth, axis=-1, keepdims=True), 1e-12)
        return ops.transpose(smooth, (0, 3, 1, 2))

    def fuse(self, image, outputs, features=None, fusion=None):
        """(B, H, W, 3), (B, K', H, W, 3), (B, H, W, C) features -> (B, H, W, 3): the outputs
        weighed by the scores."""
        return self.fuse_with_logits(outputs, self(image, outputs, features), fusion)

    def fuse_with_logits(self, outputs, logits, fusion=None):
        """`fuse` with the scores already computed: (B, K', H, W, 3), (B, K', h, w)."""
        height, width = ops.shape(outputs)[2], ops.shape(outputs)[3]
        weights = self.weights_per_pixel(logits, height, width, fusion)
        outputs = ops.cast(outputs, "float32")
        return ops.sum(outputs * ops.expand_dims(weights, -1), axis=1)

    def compute_output_shape(self, image_shape, outputs_shape=None, features_shape=None):
        b, h, w = image_shape[0], image_shape[1], image_shape[2]
        p = self.patch_size
        grid = lambda n: None if n is None else -(-n // p)  # noqa: E731
        return (b, self.num_outputs, grid(h), grid(w))

    def get_config(self):
        return {**super().get_config(), "outputs": self.num_outputs,
                "patch_size": self.patch_size, "width": self.width, "fusion": self.fusion,
                "inputs": self.inputs}


def patch_winners(outputs, target, patch_size):
    """The scorer's training target: (B, K', H, W, 3), (B, H, W, 3) -> (B, h, w) int32 index of
    the output with the smallest MSE in each patch_size x patch_size patch (H and W multiples of
    the patch size)."""
    outputs = ops.cast(outputs, "float32")
    target = ops.cast(target, "float32")
    shape = ops.shape(outputs)
    batch, count, height, width = shape[0], shape[1], shape[2], shape[3]
    error = ops.mean(ops.square(outputs - target[:, None]), axis=-1)
    p = patch_size
    error = ops.reshape(error, (batch, count, height // p, p, width // p, p))
    return ops.cast(ops.argmin(ops.mean(error, axis=(3, 5)), axis=1), "int32")


def scorer_loss(logits, winners):
    """Mean cross-entropy of (B, K', h, w) logits against (B, h, w) winner indices."""
    logits = ops.transpose(logits, (0, 2, 3, 1))
    losses = keras.losses.sparse_categorical_crossentropy(winners, logits, from_logits=True)
    return ops.mean(losses)


def with_output_scorer(model, patch_size=8, width=16, fusion="soft", inputs="candidates"):
    """A copy of a trained multi-head `model` with a new (untrained) scoring branch reading
    `inputs` ("candidates", "features" or "both"); the backbone's weights are copied, so
    official weights imported into `model` stay as they are."""
    if model.single_output or model.num_outputs < 2:
        raise ValueError(f"{model.name} has a single output; a scoring branch picks among "
                         "several")
    config = model.get_config()
    config["output_scorer"] = {"patch_size": int(patch_size), "width": int(width),
                               "fusion": fusion, "inputs": inputs}
    scored = type(model).from_config(config)
    def backbone_weights(network):
        scorer = network.output_scorer
        skip = {id(v) for v in (scorer.weights if scorer is not None else [])}
        step = getattr(network, "loss_step", None)
        if step is not None:
            skip.add(id(step))
        return [v for v in network.weights if id(v) not in skip]

    backbone, source = backbone_weights(scored), backbone_weights(model)
    if len(backbone) != len(source):
        raise ValueError(f"{model.name}: could not match the backbone's weights ({len(source)} "
                         f"against {len(backbone)})")
    for target, value in zip(backbone, source):
        target.assign(ops.convert_to_numpy(value))  # a copy: JAX may donate the source
    scored.selected_output = model.selected_output
    return scored


OBJECTIVES = ("winner", "fusion")


class ScorerTrainer(keras.Model):
    """Trains a model's scoring branch with the backbone frozen: `fit` on (blurry, sharp)
    batches whose H and W are multiples of the scorer's patch size.

    objective: "winner" (cross-entropy on the per-patch winner) or "fusion" (the PSNR loss of
        the fused output itself, which is what "auto" ships; docs/heads.md compares them).
    """

    def __init__(self, model, objective="winner", **kwargs):
        super().__init__(**kwargs)
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.objective = objective
        if model.output_scorer is None:
            raise ValueError(f"{model.name} has no scoring branch; add one with "
                             "with_output_scorer(model)")
        self.restoration_model = model

    def call(self, image):
        model = self.restoration_model
        outputs, features = model.outputs_and_features(image)
        outputs = ops.stop_gradient(model.final_output(outputs))
        return outputs, model.output_scorer(image, outputs, ops.stop_gradient(features))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        outputs, logits = y_pred
        scorer = self.restoration_model.output_scorer
        if self.objective == "fusion":
            fused = scorer.fuse_with_logits(outputs, logits, "soft")
            return ops.mean(psnr_error(ops.cast(y, "float32"), fused[:, None]))
        return scorer_loss(logits, patch_winners(outputs, y, scorer.patch_size))


def fit_scorer(model, dataset, steps, learning_rate=1e-3, objective="winner", verbose=0):
    """Trains `model.output_scorer` for `steps` batches of `dataset` ((blurry, sharp) batches)
    with Adam and a cosine schedule, on `objective` (see `ScorerTrainer`); every other weight
    stays as it is. Returns the history."""
    trainable = {layer.name: layer.trainable for layer in model.layers}
    for layer in model.layers:
        layer.trainable = layer is model.output_scorer
    try:
        trainer = ScorerTrainer(model, objective)
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, int(steps))
        trainer.compile(optimizer=keras.optimizers.Adam(schedule))
        history = trainer.fit(dataset, steps_per_epoch=int(steps), epochs=1, verbose=verbose)
    finally:
        for layer in model.layers:
            layer.trainable = trainable[layer.name]
    return history


def auto_output(model, image, outputs, features=None):
    """The "auto" output of one batch: the scorer's fusion when the model has a scorer, else
    the selected output (else output 0). (B, H, W, 3), (B, K', H, W, 3), the backbone's
    features (B, H, W, C) (`model.outputs_and_features`) -> (B, H, W, 3)."""
    scorer = model.output_scorer
    if scorer is not None:
        return scorer.fuse(image, outputs, features)
    index = 0 if model.selected_output is None else model.selected_output
    return outputs[:, index]
