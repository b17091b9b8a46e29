"""The Keras model every backbone subclasses: padding, multi-head output, default loss and
metrics, configuration.

A backbone implements `stage_residuals(image) -> (residuals, features)`: a list of
(B, Hp, Wp, 3K) residuals, one per stage in the official order, and the final stage's last
features (B, Hp, Wp, C), the input of its last convolution, on an image already padded to a
multiple of `pad_multiple`. This class does the rest once for all of them:

    image (B, H, W, 3) --pad_input--> stage_residuals() --crop--> MultiHeadOutput (+ image)
        --> (B, K', H, W, 3)

The features are the hook of the scoring branch (keras_mhdeblur.scoring), which reads them
through `outputs_and_features`; `call` leaves them out.

Single-stage models return that tensor; multi-stage models return a list in the official order
(or a dict keyed by stage name with `output_format="dict"`). Single-head models (`heads=1`,
`single_output=True`) return (B, H, W, 3).
"""

import keras
from keras import ops

from keras_mhdeblur import losses as losses_lib
from keras_mhdeblur import metrics as metrics_lib
from keras_mhdeblur import optimizers
from keras_mhdeblur.distribute import is_multi_worker
from keras_mhdeblur.heads import MultiHeadOutput, num_outputs


# How a model can pad its input to `pad_multiple` (the `pad_mode` argument).
PAD_MODES = ("constant", "reflect")


class MultiHeadRestorationModel(keras.Model):
    """Base class; see the module docstring. Subclasses set the class attributes below."""

    #: H and W are padded (bottom/right) to a multiple of this, and cropped back.
    pad_multiple = 16
    #: The official padding: "constant" (zeros, NAFNet/HINet) or "reflect" (Restormer/MPRNet
    #: test scripts). The `pad_mode` argument replaces it: a network trained on crops that
    #: never held a band of zeros restores little of a photo padded with one (the presets ship
    #: "reflect"; docs/presets.md, "Padding a photo").
    pad_mode = "constant"
    #: Names of the stage outputs, in the order `stage_residuals` returns them.
    stage_names = ("output",)
    #: The stage that is the restored image (metrics, inference and export use it).
    final_stage = "output"
    #: Official recipe for `official_optimizer` and the default compile optimizer.
    recipe = "nafnet"

    def __init__(self, heads=4, combine_heads=True, single_output=False, selected_output=None,
                 output_format="list", output_scorer=None, schedule_step=False, pad_mode=None,
                 **kwargs):
        super().__init__(**kwargs)
        if not isinstance(heads, int) or heads < 1:
            raise ValueError(f"heads must be an integer >= 1, got {heads!r}")
        if single_output and heads != 1:
            raise ValueError(f"single_output=True needs heads=1, got heads={heads}")
        if output_format not in ("list", "dict"):
            raise ValueError(f"output_format must be 'list' or 'dict', got {output_format!r}")
        self.set_pad_mode(pad_mode)
        self.heads = heads
        self.combine_heads = bool(combine_heads)
        self.single_output = bool(single_output)
        self.output_format = output_format
        self.num_outputs = num_outputs(heads, self.combine_heads)
        if selected_output is not None and not 0 <= int(selected_output) < self.num_outputs:
            raise ValueError(
                f"selected_output must be in [0, {self.num_outputs}), got {selected_output}")
        self.selected_output = None if selected_output is None else int(selected_output)
        # Outputs are float32 under mixed precision: the loss and metrics compare them with
        # 8-bit-accurate targets, which bfloat16's 8-bit mantissa cannot represent.
        self.head_output = MultiHeadOutput(heads, self.combine_heads, name="head_output",
                                           dtype="float32")
        # The optional branch that predicts which output wins (keras_mhdeblur.scoring, the
        # "auto" output); None for models without one, official weight files included.
        self.output_scorer_config = None if output_scorer is None else dict(output_scorer)
        self.output_scorer = None
        if output_scorer is not None:
            if self.num_outputs < 2:
                raise ValueError("output_scorer needs several outputs (heads > 1)")
            from keras_mhdeblur.scoring import OutputScorer

            self.output_scorer = OutputScorer(self.num_outputs, name="output_scorer",
                                              dtype="float32", **self.output_scorer_config)
        self._set_untracked(restoration_loss=None, restoration_metrics=[])
        self.loss_step = None
        if schedule_step:
            self._add_loss_step()

    # ---- the part each backbone writes ----------------------------------------------------
    def stage_residuals(self, image):
        """(B, Hp, Wp, 3) padded image -> (list of (B, Hp, Wp, 3K) residuals, one per stage;
        (B, Hp, Wp, C) features that the final stage's last convolution reads)."""
        raise NotImplementedError

    def default_loss(self):
        """The official loss of this backbone (used by `compile` when no loss is given)."""
        return losses_lib.MinOverHeads("psnr")

    @property
    def input_dtype(self):
        # Images stay float32 until the first convolution casts them, so that under mixed
        # precision the global residual adds the exact input.
        return "float32"

    # ---- forward ----------------------------------------------------------------------------
    def _build_with_dummy_input(self):
        """Creates every weight now, so `summary()`, `count_params()` and weight import work
        right after construction."""
        size = 2 * self.pad_multiple
        image = ops.zeros((1, size, size, 3))
        if self.output_scorer is not None:
            # Built first, on real features (their channel count is the backbone's): `call`
            # does not use the branch, and Keras warns about a model whose sublayers are
            # unbuilt after its first call.
            outputs, features = self.outputs_and_features(image)
            self.output_scorer(image, self.final_output(outputs), features)
        self(image)

    def build(self, input_shape):
        # Every weight is created by the eager call of `_build_with_dummy_input` (or the first
        # real call); Keras' default build would trace the whole network symbolically once
        # more, which doubles the construction time of the larger backbones.
        super().build(input_shape)

    def call(self, image):
        return self._restore(image, with_features=False)

    def outputs_and_features(self, image):
        """(B, H, W, 3) -> (the model's outputs, as `call` returns them; the final stage's last
        features (B, H, W, C), which the scoring branch reads)."""
        return self._restore(image, with_features=True)

    def _restore(self, image, with_features):
        if len(image.shape) != 4 or image.shape[-1] != 3:
            raise ValueError(
                f"{self.name} expects images of shape (batch, height, width, 3), NHWC RGB in "
                f"[0, 1]; got shape {tuple(image.shape)}.")
        height, width = ops.shape(image)[1], ops.shape(image)[2]
        residuals, features = self.stage_residuals(self.pad_input(image))
        outputs = [self.head_output(residual[:, :height, :width], image)
                   for residual in residuals]
        if self.single_output:
            outputs = [output[:, 0] for output in outputs]
        if len(outputs) == 1:
            outputs = outputs[0]
        elif self.output_format == "dict":
            outputs = dict(zip(self.stage_names, outputs))
        # Cropped only when asked: eagerly, a crop copies the full-resolution features.
        return (outputs, features[:, :height, :width]) if with_features else outputs

    def final_and_auto(self, image):
        """(B, H, W, 3) -> (final-stage outputs (B, K', H, W, 3), the auto output (B, H, W, 3):
        the scoring branch's fusion, or the selected output without a branch)."""
        from keras_mhdeblur.scoring import auto_output

        outputs, features = self.outputs_and_features(image)
        final = self.final_output(outputs)
        return final, auto_output(self, image, final, features)

    def set_pad_mode(self, pad_mode):
        """Pads with `pad_mode` from now on (one of `PAD_MODES`, or None for the official one),
        and says so in `get_config`: e.g. a model trained before the option existed, packed as
        a preset that pads by reflection. Returns the model."""
        if pad_mode not in (None,) + PAD_MODES:
            raise ValueError(f"pad_mode must be one of {', '.join(PAD_MODES)}, or None for "
                             f"{type(self).__name__}'s official {type(self).pad_mode!r}; got "
                             f"{pad_mode!r}")
        self.pad_mode_config = pad_mode
        self.pad_mode = type(self).pad_mode if pad_mode is None else pad_mode
        return self

    def pad_input(self, image):
        """(B, H, W, 3) -> (B, Hp, Wp, 3): padded at the bottom and right to multiples of
        `pad_multiple` with `pad_mode`, as the model pads its input (cropped back after)."""
        height, width = ops.shape(image)[1], ops.shape(image)[2]
        multiple = self.pad_multiple
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        if isinstance(pad_h, int) and isinstance(pad_w, int) and pad_h == 0 and pad_w == 0:
            return image
        mode = self.pad_mode
        static = isinstance(pad_h, int) and isinstance(pad_w, int)
        if mode == "reflect" and static and (pad_h >= height or pad_w >= width):
            mode = "constant"  # reflection needs a side longer than its padding (tiny images)
        padded = ops.pad(image, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode=mode)
        if static:
            return padded
        # Traced with a dynamic H or W (export), TF loses the static channel count through the
        # pad; TFLite convolutions need it, so restate the shape.
        batch = ops.shape(image)[0]
        return ops.reshape(padded, (batch, height + pad_h, width + pad_w, image.shape[-1]))

    def stage_outputs(self, outputs):
        """The model's outputs as a list in `stage_names` order."""
        if isinstance(outputs, dict):
            return [outputs[name] for name in self.stage_names]
        if isinstance(outputs, (list, tuple)):
            return list(outputs)
        return [outputs]

    def final_output(self, outputs):
        """The restored image from the model's outputs: (B, K', H, W, 3) or (B, H, W, 3)."""
        return self.stage_outputs(outputs)[self.stage_names.index(self.final_stage)]

    # ---- training ---------------------------------------------------------------------------
    def official_optimizer(self, total_steps=None):
        """This backbone's official optimiser and schedule (docs/method.md, "Training recipes")."""
        return optimizers.official_optimizer(self.recipe, total_steps)

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """Like `keras.Model.compile`, with defaults from the official recipe.

        optimizer "auto": the backbone's official optimiser at its peak learning rate (use
            `official_optimizer(total_steps)` for the cosine schedule).
        loss "auto" (or None): the backbone's official loss. Any loss is applied to every stage
            and summed over stages.
        metrics "auto": `MultiHeadPSNR` and `WinShare` on the final stage; a list of
            `keras.metrics.Metric` taking (y_true, final-stage prediction) otherwise.
        """
        if optimizer == "auto":
            optimizer = self.official_optimizer()
        if loss in ("auto", None):
            loss = self.default_loss()
        elif isinstance(loss, str):
            loss = losses_lib.MinOverHeads(loss)
        if metrics in ("auto", None):
            metrics = [metrics_lib.MultiHeadPSNR(self.num_outputs)]
            if self.num_outputs > 1:
                metrics.append(metrics_lib.WinShare(self.num_outputs))
        super().compile(optimizer=optimizer, loss=None, metrics=None, **kwargs)
        # Kept outside Keras' compiled loss/metrics: those want one loss per output and cannot
        # flatten dict-valued metrics; here the loss sums over stages and metrics read the
        # final stage.
        self._set_untracked(restoration_loss=loss, restoration_metrics=list(metrics))
        self._compile_config.config.update(loss=loss, metrics=list(metrics))
        if getattr(loss, "step_dependent", False):
            self._add_loss_step()

    def _add_loss_step(self):
        """The step an annealing loss schedule reads: a model variable counted in
        `compute_loss`, because on JAX the optimiser's own counter is not part of the state
        the loss is traced with (it would be frozen at trace time). It is saved with the
        weights, so a resumed run continues the schedule; it equals `optimizer.iterations`."""
        if self.loss_step is not None:
            return
        # Built models lock their state; the variable belongs to the training setup, so it is
        # added here rather than to every model (official weight files stay as they are). The
        # config records it (`schedule_step`), so a file loads with it, compiled or not.
        locked = self._tracker.locked
        self._tracker.unlock()
        try:
            self.loss_step = self.add_weight(shape=(), dtype="int64", initializer="zeros",
                                             trainable=False, name="loss_step",
                                             aggregation="only_first_replica")
        finally:
            if locked:
                self._tracker.lock()

    def make_train_function(self, force=False):
        # Without a distribution strategy Keras builds the optimiser inside the first trace of
        # the step; tf.function, having seen variables created, then traces the whole step a
        # second time. Built here, the step is traced once (a third of the first step's time).
        if self.built and self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
        return super().make_train_function(force)

    def compile_from_config(self, config):
        # Keras skips this for models with a custom compile(); ours takes the same arguments,
        # so a loaded model resumes with its optimiser (and its state), loss and metrics.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss_fn = self.restoration_loss or self.default_loss()
        step_dependent = getattr(loss_fn, "step_dependent", False)
        if step_dependent and self.loss_step is None:
            raise ValueError(f"{self.name}: the loss follows a schedule over steps; pass it to "
                             "compile() so that the model keeps the step for it")
        step = {"step": ops.convert_to_tensor(self.loss_step)} if step_dependent else {}
        total = None
        for prediction in self.stage_outputs(y_pred):
            stage_loss = loss_fn(y, prediction, sample_weight, **step)
            total = stage_loss if total is None else total + stage_loss
        if step_dependent and training:
            self.loss_step.assign_add(ops.ones((), "int64"))
        for extra in self.losses:
            total = total + ops.sum(ops.cast(extra, total.dtype))
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        final = self.final_output(y_pred)
        for metric in self.restoration_metrics:
            metric.update_state(y, final, sample_weight)
        return self.get_metrics_result()

    @property
    def metrics(self):
        return super().metrics + list(self.restoration_metrics)

    # ---- Keras 3 under TensorFlow's MultiWorkerMirroredStrategy -------------------------------
    # Keras reduces a whole structure of per-replica values in one strategy.reduce call, and the
    # step's metric scalars along axis 0: fine for MirroredStrategy, an error across processes
    # (tensorflow/tensorflow#72388). These two make the same reductions leaf by leaf and on
    # values with a leading axis; nothing changes for a single process.
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = getattr(self, "_distribute_strategy", None)
        if iterator is None or not is_multi_worker(strategy):
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            first = next(batches)
            data_batch = keras.tree.map_structure(
                lambda value: strategy.reduce("MEAN", value, axis=None), first)
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def train_step(self, *args):
        # (data) on TensorFlow, (state, data) on JAX, which never takes the branch.
        logs = super().train_step(*args)
        if is_multi_worker(getattr(self, "_distribute_strategy", None)):
            logs = {name: ops.expand_dims(value, 0) for name, value in logs.items()}
        return logs

    def _set_untracked(self, **attributes):
        # Keras would otherwise track these metrics as sublayer state and report them twice.
        for name, value in attributes.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_preset(cls, name_or_path):
        """A preset's model (keras_mhdeblur.presets): a shipped name or a preset folder; it
        must be of this class."""
        from keras_mhdeblur.presets import from_preset

        return from_preset(name_or_path, cls=None if cls is MultiHeadRestorationModel else cls)

    # ---- config -----------------------------------------------------------------------------
    def get_config(self):
        return {
            **super().get_config(),
            "heads": self.heads,
            "combine_heads": self.combine_heads,
            "selected_output": self.selected_output,
            "output_format": self.output_format,
            "output_scorer": self.output_scorer_config,
            "schedule_step": self.loss_step is not None,
            "pad_mode": self.pad_mode_config,
        }


class SingleHead:
    """Mixin for the official single-head model of a multi-head class:

        class NAFNet(SingleHead, NAFNetMH): ...

    takes the multi-head class's arguments without the head options and returns (B, H, W, 3)
    per stage."""

    def __init__(self, **kwargs):
        for fixed in ("heads", "combine_heads", "single_output", "selected_output"):
            kwargs.pop(fixed, None)
        super().__init__(heads=1, combine_heads=False, single_output=True, **kwargs)
