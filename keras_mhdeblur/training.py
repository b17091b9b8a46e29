"""Training runs: a run folder with atomic checkpoints, the best model on validation, exact resume.

    config = TrainConfig(model="nafnet-w32", heads=4, synthetic=True, crop=64, batch=8, steps=600)
    result = train(config, "runs/mh")                 # or train(config, "runs/mh", resume=True)

A run folder holds:

    config.json                  the resolved `TrainConfig` (what `--resume` must match)
    state.json                   step, checkpoints, best validation score, validation history
    checkpoints/step-NNNNNNN.keras   the last `keep` checkpoints (weights + optimiser state)
    best.keras                   the checkpoint with the best best-overall PSNR on validation
    model.keras                  the final model
    logs/                        TensorBoard (keras.callbacks.TensorBoard)
    compile_cache/               JAX only: compiled XLA programs, so `--resume` skips the
                                 first-step compile (unless JAX already has a cache folder)
    train.lock                   while a training runs: its pid and host (`utils.locks`); a
                                 second training on the folder refuses

Every file is written to a temporary name and renamed (`os.replace`), so Ctrl-C or SIGKILL at any
moment leaves the last checkpoint intact. Resuming loads the newest checkpoint (weights and the
optimiser with its iteration count, hence the learning-rate schedule, which is a function of it)
and restarts the data stream at the first unseen sample (synthetic pairs by index, folders via
`training_dataset(start_step=...)`), so an interrupted-and-resumed run ends with the weights of an
uninterrupted one.

Across several processes (`train(..., cluster=...)`, docs/distributed.md) every process reads
its own part of each global batch and takes the same steps; only process 0 writes these files.

A Keras "epoch" here is one checkpoint interval (`checkpoint_every` steps); validation runs at
the first checkpoint at or after every `val_every` steps, and at the end.
"""

import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

from keras_mhdeblur import optimizers
from keras_mhdeblur.heads import expand_single_head
from keras_mhdeblur.saving import load_model, save_model
from keras_mhdeblur.utils.files import is_temporary, write_json
from keras_mhdeblur.utils.locks import FolderInUse, folder_lock
from keras_mhdeblur.utils.progress import fit_verbosity

CHECKPOINT_NAME = re.compile(r"^step-(\d+)\.keras$")
#: Seed offsets that keep held-out synthetic pairs apart from the training stream (seed + 0).
VALIDATION_SEED_OFFSET = 1_000_003
TEST_SEED_OFFSET = 2_000_003
#: Settings that may change when a run is resumed; everything else must match config.json.
RESUMABLE_CHANGES = frozenset({"devices", "keep", "val_every"})
PRECISIONS = ("mixed_bfloat16", "mixed_float16")
#: Input pipelines of `training_data` (`resolve_pipeline`).
PIPELINES = ("auto", "tf.data", "pydataset")
#: The recommended winner assignment (`mhdeblur train --recommended-heads`; docs/heads.md):
#: annealed winner-takes-all from 2 dB down to the official loss over the first half of the run.
RECOMMENDED_HEADS = {"temperature": 2.0}
LABELS = ("middle", "random")
#: The key of config.json that describes the network in words (`TrainConfig.architecture`).
DERIVED_ARCHITECTURE = "architecture"


class RunError(ValueError):
    """A training run that cannot start or resume as asked; the message says why and what to do."""


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run: the flags of `mhdeblur train` and the keys of its
    --config file. Defaults are the official NAFNet-width32 GoPro recipe
    (docs/method.md, "Training recipes").

    Attributes:
        model: a named config (`keras_mhdeblur.NAMED_CONFIGS`).
        heads: K; 1 for the single-head baseline.
        combine_heads: K(K+1)/2 outputs (docs/method.md, "Head combination").
        width: overrides the config's width (small runs).
        overrides: other constructor arguments, e.g. {"enc_blocks": [1, 1]}.
        data, split: paired-image folder for `find_pairs` (and its split).
        synthetic: train on the built-in synthetic blur stream instead of `data`.
        synthetic_label: "middle" (GoPro) or "random" sub-frame as the sharp label
            (docs/method.md, "Small-scale runs").
        synthetic_blur: settings of the synthetic blur (`data.BlurSettings` fields other than
            the label: blur_pixels, noise_sigma, jpeg_quality, highlight_gain, ...); {} for the
            defaults.
        source: folder of sharp images for synthetic blur, or "builtin" (default),
            "builtin:train" (the built-in images without the held-out photos).
        source_options: arguments of that source (`data.synthetic.SOURCE_OPTIONS`), e.g.
            {"dead_leaves_count": 64}; {} for its defaults.
        val_data, val_split: validation folder; val_synthetic: else N held-out synthetic pairs.
        crop: training crop size (square); batch: global batch; steps: training iterations.
        val_every, checkpoint_every, keep: validation interval, checkpoint interval (steps) and
            how many recent checkpoints to keep.
        seed: initialisation, data order and augmentation.
        lr: peak learning rate (the recipe's schedule shape is kept); None: the recipe's.
        mixed_precision: None, "mixed_bfloat16" or "mixed_float16".
        jit_compile: XLA; None lets Keras decide ("auto").
        devices: data-parallel over this many devices; None: one device.
        temperature, anneal_steps: annealed winner-takes-all (`MinOverHeads`): soft-min
            temperature T0 in the loss's units (dB for PSNR), falling linearly to 0 over
            `anneal_steps` steps (None: over the first half of `steps`). 0: the official loss.
        relaxation: relaxed winner-takes-all, eps on the losers. 0: the official loss.
        anchor: anchored winner-takes-all, the weight of output 0's error on every sample, on
            top of the assignment (`MinOverHeads`); needs K > 1. 0: the official loss.
        init_from: fine-tune: start from this model's weights (a preset name or folder, or a
            .keras file) instead of a fresh initialisation. The architecture settings (model,
            heads, combine_heads, width, overrides) must describe it: `architecture_of` gives
            them, and `mhdeblur train --init-from` fills them in. A single-head model may
            grow into K > 1 heads (`initialise_from`).
    """

    model: str = "nafnet-w32"
    heads: int = 4
    combine_heads: bool = True
    width: int | None = None
    overrides: dict = dataclasses.field(default_factory=dict)
    data: str | None = None
    split: str | None = None
    synthetic: bool = False
    synthetic_label: str = "middle"
    synthetic_blur: dict = dataclasses.field(default_factory=dict)
    source: str | None = None
    source_options: dict = dataclasses.field(default_factory=dict)
    val_data: str | None = None
    val_split: str | None = None
    val_synthetic: int = 0
    crop: int = 256
    batch: int = 32
    steps: int = 200_000
    val_every: int = 5000
    checkpoint_every: int = 1000
    keep: int = 3
    seed: int = 42
    lr: float | None = None
    mixed_precision: str | None = None
    jit_compile: bool | None = None
    devices: int | None = None
    temperature: float = 0.0
    anneal_steps: int | None = None
    relaxation: float = 0.0
    anchor: float = 0.0
    init_from: str | None = None

    @classmethod
    def from_dict(cls, values, where="config"):
        """A config from a dict (keys may use dashes; config.json's derived "architecture" is
        ignored); unknown keys raise `RunError`."""
        known = {field.name for field in dataclasses.fields(cls)}
        values = {str(key).replace("-", "_"): value for key, value in dict(values).items()
                  if key != DERIVED_ARCHITECTURE}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RunError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: "
                           f"{', '.join(sorted(known))}")
        config = cls(**values)
        config.validate(where)
        return config

    def to_dict(self):
        return _plain(dataclasses.asdict(self))

    def validate(self, where="config"):
        from keras_mhdeblur.models import NAMED_CONFIGS

        def fail(message):
            raise RunError(f"{where}: {message}")

        if self.model not in NAMED_CONFIGS:
            fail(f"model {self.model!r} is not a named config; expected one of "
                 f"{', '.join(sorted(NAMED_CONFIGS))}")
        for name in ("heads", "crop", "batch", "steps", "val_every", "checkpoint_every", "keep"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(f"{name} must be a positive integer, got {value!r}")
        if self.width is not None and (not isinstance(self.width, int) or self.width < 1):
            fail(f"width must be a positive integer, got {self.width!r}")
        if not isinstance(self.overrides, dict):
            fail(f"overrides must be a mapping of constructor arguments, got {self.overrides!r}")
        if self.synthetic == (self.data is not None):
            fail("give exactly one training source: --data DIR (paired folders) or --synthetic")
        if self.synthetic_label not in LABELS:
            fail(f"synthetic_label must be one of {LABELS}, got {self.synthetic_label!r}")
        if not isinstance(self.synthetic_blur, dict):
            fail(f"synthetic_blur must be a mapping of blur settings, got {self.synthetic_blur!r}")
        from keras_mhdeblur.data import BlurSettings

        blur_fields = {field.name for field in dataclasses.fields(BlurSettings)} - {"label"}
        unknown = sorted(set(self.synthetic_blur) - blur_fields)
        if unknown:
            fail(f"synthetic_blur: unknown setting(s) {', '.join(unknown)}; known: "
                 f"{', '.join(sorted(blur_fields))}")
        try:
            BlurSettings(**self.synthetic_blur)
        except (TypeError, ValueError) as error:
            fail(f"synthetic_blur: {error}")
        from keras_mhdeblur.data.synthetic import check_source_options

        if not isinstance(self.source_options, dict):
            fail(f"source_options must be a mapping of source arguments, got "
                 f"{self.source_options!r}")
        if self.source_options and not self.synthetic:
            fail("source_options apply to --synthetic training only")
        try:
            check_source_options(self.source, self.source_options)
        except ValueError as error:
            fail(str(error))
        if self.val_data is not None and self.val_synthetic:
            fail("give at most one validation source: --val-data DIR or --val-synthetic N")
        if not isinstance(self.val_synthetic, int) or self.val_synthetic < 0:
            fail(f"val_synthetic must be a count >= 0, got {self.val_synthetic!r}")
        if self.mixed_precision not in (None, *PRECISIONS):
            fail(f"mixed_precision must be one of {PRECISIONS} (or absent), got "
                 f"{self.mixed_precision!r}")
        if self.lr is not None and not float(self.lr) > 0:
            fail(f"lr must be positive, got {self.lr!r}")
        if self.devices is not None and (not isinstance(self.devices, int) or self.devices < 1):
            fail(f"devices must be a positive integer, got {self.devices!r}")
        if not isinstance(self.temperature, (int, float)) or self.temperature < 0:
            fail(f"temperature must be a number >= 0, got {self.temperature!r}")
        if self.anneal_steps is not None and (not isinstance(self.anneal_steps, int)
                                              or self.anneal_steps < 1):
            fail(f"anneal_steps must be a positive integer, got {self.anneal_steps!r}")
        if self.anneal_steps is not None and not self.temperature:
            fail("anneal_steps needs a temperature > 0 (--temperature)")
        if not isinstance(self.relaxation, (int, float)) or not 0 <= self.relaxation < 1:
            fail(f"relaxation must be in [0, 1), got {self.relaxation!r}")
        if self.temperature and self.relaxation:
            fail("choose one winner assignment: --temperature (annealed) or --relaxation "
                 "(relaxed), not both")
        if (not isinstance(self.anchor, (int, float)) or isinstance(self.anchor, bool)
                or not self.anchor >= 0):
            fail(f"anchor must be a number >= 0, got {self.anchor!r}")
        if self.anchor and self.heads == 1:
            fail("anchor needs several heads (--heads K > 1): a single head already learns "
                 "from every pair")

    def architecture(self):
        """The network in words, e.g. "nafnet-w32 with width=12, enc_blocks=[1, 1], K=4 +
        combination": a named config's own width or blocks may be overridden, and the name
        alone would hide it."""
        changed = [f"{name}={value}" for name, value in self.model_arguments().items()]
        heads = "single head" if self.heads == 1 else \
            f"K={self.heads}" + (" + combination" if self.combine_heads else "")
        return self.model + (f" with {', '.join(changed)}" if changed else "") + f", {heads}"

    def model_arguments(self):
        """Constructor overrides for `build_model`."""
        arguments = dict(self.overrides)
        if self.width is not None:
            arguments["width"] = self.width
        return arguments

    @property
    def has_validation(self):
        return self.val_data is not None or self.val_synthetic > 0


def _plain(value):
    """Tuples -> lists, recursively, so configs compare equal to their JSON round trip."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def config_differences(stored, requested):
    """Settings in `requested` (a dict of explicitly given values) that differ from the stored
    config and may not change on resume: [(name, stored value, requested value)]."""
    stored, requested = _plain(stored), _plain(requested)
    return [(name, stored.get(name), value) for name, value in requested.items()
            if name not in RESUMABLE_CHANGES and stored.get(name) != value]


# ---- the run folder ---------------------------------------------------------------------------
class RunDirectory:
    """The files of one run (see the module doc)."""

    def __init__(self, path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.state_path = self.path / "state.json"
        self.checkpoint_dir = self.path / "checkpoints"
        self.best_path = self.path / "best.keras"
        self.final_path = self.path / "model.keras"
        self.log_dir = self.path / "logs"
        self.compile_cache_dir = self.path / "compile_cache"
        #: Held by the training that uses the folder (`utils.locks`); gone when it ends.
        self.lock_path = self.path / "train.lock"

    def run_files(self):
        return [self.config_path, self.state_path, self.checkpoint_dir, self.best_path,
                self.final_path, self.log_dir, self.compile_cache_dir]

    def holds_run(self):
        """True once the run has trained (a checkpoint or a finished model). A folder with only
        config.json, from a start that failed before its first checkpoint (a missing --data
        folder, Ctrl-C during the first steps), holds nothing to lose and is reused."""
        return bool(self.checkpoints()) or self.final_path.exists() or self.best_path.exists()

    def never_trained(self):
        """True for a folder whose start wrote config.json and then failed before its first
        checkpoint: it is started afresh, even with --resume."""
        return self.config_path.exists() and not self.holds_run()

    def remove_temporaries(self):
        """Deletes leftovers of writes cut short by a crash or SIGKILL."""
        for folder in (self.path, self.checkpoint_dir):
            if folder.is_dir():
                for path in folder.iterdir():
                    if path.is_file() and is_temporary(path):
                        path.unlink()

    def checkpoints(self):
        """[(step, path)] of the checkpoints present, oldest first."""
        if not self.checkpoint_dir.is_dir():
            return []
        found = []
        for path in self.checkpoint_dir.iterdir():
            match = CHECKPOINT_NAME.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def checkpoint_path(self, step):
        return self.checkpoint_dir / f"step-{step:07d}.keras"

    def write_config(self, config):
        """config.json: the `TrainConfig`, led by its architecture in words (for readers; it
        is derived, so `TrainConfig.from_dict` drops it)."""
        write_json(self.config_path, {DERIVED_ARCHITECTURE: config.architecture(),
                                      **config.to_dict()})

    def read_config(self):
        """The stored settings (a dict of `TrainConfig` fields)."""
        try:
            return json.loads(self.config_path.read_text())
        except FileNotFoundError:
            raise RunError(f"{self.path}: no run to resume (no config.json); start one without "
                           "--resume") from None
        except json.JSONDecodeError as error:
            raise RunError(f"{self.config_path}: damaged ({error}); start a new run with "
                           "--overwrite") from None

    def read_state(self):
        if not self.state_path.exists():
            return {}
        try:
            return json.loads(self.state_path.read_text())
        except json.JSONDecodeError:
            return {}  # rewritten at the next checkpoint; checkpoints themselves are the truth

    def write_state(self, state):
        write_json(self.state_path, state)

    def prepare_new(self, config, overwrite=False):
        """Creates the folder for a new run and writes config.json; refuses to replace a run
        (or a folder with other files) unless `overwrite`."""
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"{self.path}: exists and is not a folder; choose another --out")
        if self.path.is_dir() and not overwrite:
            if self.holds_run():
                raise RunError(f"{self.path}: already holds a training run; pass --resume to "
                               "continue it or --overwrite to start again (its checkpoints are "
                               "deleted)")
            leftovers = {self.config_path, self.state_path, self.checkpoint_dir, self.log_dir,
                         self.compile_cache_dir, self.lock_path}
            if any(path not in leftovers and not is_temporary(path)
                   for path in self.path.iterdir()):
                raise RunError(f"{self.path}: folder is not empty; choose a new or empty --out, "
                               "or pass --overwrite")
        if overwrite or self.path.is_dir():  # a run that never trained starts again cleanly
            for path in self.run_files():
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
            self.remove_temporaries()
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.write_config(config)


# ---- model, data, validation ------------------------------------------------------------------
def build_training_model(config):
    """A fresh, compiled model for `config`: the recipe's optimiser and cosine schedule over
    `config.steps` (peak `config.lr` if given), the backbone's official loss, default metrics."""
    from keras_mhdeblur.models import build_model

    model = build_model(config.model, heads=config.heads, combine_heads=config.combine_heads,
                        **config.model_arguments())
    if config.init_from is not None:
        initialise_from(model, config)
    schedule = optimizers.official_schedule(model.recipe, config.steps, config.lr)
    optimizer = optimizers.official_optimizer(model.recipe, learning_rate=schedule)
    model.compile(optimizer=optimizer, loss=training_loss(model, config),
                  jit_compile="auto" if config.jit_compile is None else config.jit_compile)
    return model


# Constructor arguments that are not the architecture: how outputs are read, and training state.
_NOT_ARCHITECTURE = ("name", "trainable", "dtype", "heads", "combine_heads", "selected_output",
                     "output_format", "output_scorer", "schedule_step", "tlc_train_size",
                     "single_output")


def architecture_of(model):
    """The TrainConfig settings {model, heads, combine_heads, width, overrides} that build
    `model`'s architecture (a named config whose class it is, plus the arguments that differ)."""
    import inspect

    from keras_mhdeblur.models import NAMED_CONFIGS

    stored = _plain(model.get_config())
    for name, (multi_head_class, single_head_class, defaults) in NAMED_CONFIGS.items():
        single = type(model) is single_head_class
        if not single and type(model) is not multi_head_class:
            continue
        # The single-head classes pass their arguments on: the multi-head signature has them.
        signature = inspect.signature(multi_head_class.__init__).parameters
        class_defaults = {key: _plain(parameter.default) for key, parameter in signature.items()
                          if parameter.default is not inspect.Parameter.empty}
        expected = {**class_defaults, **_plain(defaults)}
        differing = {key: value for key, value in stored.items()
                     if key not in _NOT_ARCHITECTURE and value != expected.get(key)}
        values = {"model": name, "heads": 1 if single else int(stored["heads"]),
                  "combine_heads": True if single else bool(stored["combine_heads"])}
        if "width" in differing:
            values["width"] = differing.pop("width")
        values["overrides"] = differing
        return values
    raise RunError(f"{type(model).__name__} is not the class of any named config "
                   f"({', '.join(NAMED_CONFIGS)}); --init-from needs one")


def load_initial_model(init_from):
    """The model `init_from` names (preset name or folder, or model file), uncompiled."""
    return load_model(init_from, compile=False)


def initialise_from(model, config):
    """Copies the weights of `config.init_from` into the freshly built `model` (same
    architecture; a scoring branch of the source is not carried over: train a new one, and
    neither is the step of its annealing schedule: the new run's schedule starts at 0).

    A single-head source grows into the run's K heads (`heads.expand_single_head`): output 0
    starts as the single head, heads 1.. as perturbed copies (seeded by the run's seed). A
    NAFNet source grows into a run with more blocks per level (`models.surgery.deepened`): the
    new blocks start as the identity."""
    source = deepened_to(load_initial_model(config.init_from), config)
    grows_heads = getattr(source, "heads", None) == 1 and config.heads > 1
    check_model_matches(source, dataclasses.replace(config, heads=1) if grows_heads else config,
                        config.init_from)
    scorer = getattr(source, "output_scorer", None)
    left_out = {id(w) for w in scorer.weights} if scorer is not None else set()
    if getattr(source, "loss_step", None) is not None:
        left_out.add(id(source.loss_step))
    backbone = [w for w in source.weights if id(w) not in left_out]
    if len(backbone) != len(model.weights):
        raise RunError(f"--init-from {config.init_from}: has {len(backbone)} weight tensors, the "
                       f"model to train has {len(model.weights)}; the architectures differ")
    rng = np.random.default_rng(config.seed)
    for target, value in zip(model.weights, backbone):
        if tuple(target.shape) != tuple(value.shape):
            grown = expand_single_head(keras.ops.convert_to_numpy(value), tuple(target.shape),
                                       config.heads, rng=rng) if grows_heads else None
            if grown is None:
                raise RunError(f"--init-from {config.init_from}: weight {value.path} has shape "
                               f"{tuple(value.shape)}, the model to train expects "
                               f"{tuple(target.shape)}")
            value = grown
        target.assign(value)


def deepened_to(source, config):
    """`source`, with more blocks per level where `config`'s architecture has more."""
    from keras_mhdeblur.models import NAMED_CONFIGS
    from keras_mhdeblur.models.surgery import BLOCK_COUNTS, deepened, is_deeper

    stored = _plain(source.get_config())
    wanted = _plain({**NAMED_CONFIGS[config.model][2], **config.model_arguments()})
    counts = {name: wanted[name] for name in BLOCK_COUNTS
              if name in stored and name in wanted and wanted[name] != stored[name]
              and is_deeper(wanted[name], stored[name])}
    return deepened(source, **counts) if counts else source


def training_loss(model, config):
    """The backbone's official loss, with the run's winner assignment (annealed or relaxed) and
    anchor."""
    from keras_mhdeblur.losses import with_assignment

    loss = model.default_loss()
    if not config.temperature and not config.relaxation and not config.anchor:
        return loss
    anneal_steps = None
    if config.temperature:
        anneal_steps = config.anneal_steps or max(1, config.steps // 2)
    return with_assignment(loss, temperature=float(config.temperature),
                           anneal_steps=anneal_steps, relaxation=float(config.relaxation),
                           anchor=float(config.anchor))


def check_model_matches(model, config, path):
    """Raises `RunError` when a loaded checkpoint's architecture differs from `config`."""
    from keras_mhdeblur.models import NAMED_CONFIGS

    multi_head_class, single_head_class, defaults = NAMED_CONFIGS[config.model]
    expected_class = single_head_class if config.heads == 1 else multi_head_class
    stored = _plain(model.get_config())
    problems = []
    if type(model) is not expected_class:
        problems.append(f"backbone {type(model).__name__} (expected {expected_class.__name__} "
                        f"for --model {config.model} --heads {config.heads})")
    if config.heads != 1:
        for name in ("heads", "combine_heads"):
            if stored.get(name) != getattr(config, name):
                problems.append(f"{name}={stored.get(name)} (expected {getattr(config, name)})")
    for name, value in _plain({**defaults, **config.model_arguments()}).items():
        if name in stored and stored[name] != value:
            problems.append(f"{name}={stored[name]} (expected {value})")
    if problems:
        raise RunError(f"{path}: checkpoint does not match the run's settings: "
                       f"{'; '.join(problems)}")


def synthetic_stream(config, seed_offset=0):
    """The run's `SyntheticPairs` (training: offset 0; held-out sets: other offsets)."""
    from keras_mhdeblur.data import SyntheticPairs

    return SyntheticPairs(config.crop, seed=config.seed + seed_offset, source=config.source,
                          label=config.synthetic_label, source_options=config.source_options,
                          **config.synthetic_blur)


def resolve_pipeline(pipeline="auto"):
    """The input pipeline `training_data` builds: "tf.data" or "pydataset" ("auto": tf.data
    where TensorFlow is installed, else `keras.utils.PyDataset`, e.g. JAX on a GPU machine
    without TensorFlow)."""
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be one of {', '.join(PIPELINES)}; got {pipeline!r}")
    if pipeline == "auto":
        return "tf.data" if importlib.util.find_spec("tensorflow") is not None else "pydataset"
    return pipeline


def default_data_workers():
    """Worker processes of the PyDataset pipeline: every core but the one that drives the
    training, up to 16."""
    return max(1, min(16, (os.cpu_count() or 2) - 1))


def training_data(config, start_step=0, shard=None, pipeline="auto", workers=None):
    """Batches (blurry, sharp) from step `start_step` on (samples before it skipped).

    Synthetic pairs are the same on both pipelines (pair i depends on the seed and i alone);
    folders of pairs are augmented with different random draws on each (`data/augment.py`),
    and each pipeline resumes its own stream exactly.

    Args:
        shard: (process_index, process_count): only this process's part of every batch
            (`data.pipeline.own_part`), so that the parts of all processes are the
            single-process batches, whatever the process count (tf.data only).
        pipeline: "auto", "tf.data" or "pydataset" (`resolve_pipeline`).
        workers: worker processes of the PyDataset pipeline (default
            `default_data_workers()`); 1 makes the batches in the training process.

    Returns:
        a tf.data.Dataset, or an endless `data.StreamBatches` (batch i: step start_step + i).
    """
    if resolve_pipeline(pipeline) == "pydataset":
        if shard is not None:
            raise ValueError("training across processes reads its batches with tf.data; "
                             "install TensorFlow or use --pipeline tf.data")
        return _training_pydataset(config, start_step, workers or default_data_workers())
    if config.synthetic:
        from keras_mhdeblur.data import synthetic_dataset

        return synthetic_dataset(synthetic_stream(config), config.batch,
                                 start_index=start_step * config.batch, shard=shard)
    from keras_mhdeblur.data import find_pairs, training_dataset

    pairs = find_pairs(config.data, split=config.split)
    return training_dataset(pairs, config.batch, config.crop, config.seed, start_step=start_step,
                            shard=shard)


def _training_pydataset(config, start_step, workers):
    from keras_mhdeblur.data import (PairedPyDataset, StreamBatches, SyntheticBatches,
                                     find_pairs)

    first_sample = start_step * config.batch
    if config.synthetic:
        # Built once here: the forked workers share the source's photos and dead leaves.
        stream = synthetic_stream(config).prepare()
        make_batch = SyntheticBatches(stream, config.batch, first_sample)
    else:
        pairs = find_pairs(config.data, split=config.split)
        # One endless "epoch": batch i of it is step start_step + i of the run.
        make_batch = PairedPyDataset(pairs, config.batch, config.crop, config.seed,
                                     steps_per_epoch=2**40, start_sample=first_sample).__getitem__
    return StreamBatches(make_batch, processes=workers)


class HeldOutPairs:
    """(name, blurry, sharp) pairs that can be iterated many times: a folder (read each time) or
    held-out synthetic pairs (generated once)."""

    def __init__(self, folder=None, split=None, synthetic=None, count=0):
        from keras_mhdeblur.data import find_pairs

        self._pair_set = None
        self._arrays = None
        if folder is not None:
            self._pair_set = find_pairs(folder, split=split)
            self._pair_set.check()
        else:
            blurry, sharp = synthetic.arrays(count)
            self._arrays = [(f"{index:06d}", b, s)
                            for index, (b, s) in enumerate(zip(blurry, sharp))]

    def __len__(self):
        return len(self._pair_set) if self._pair_set is not None else len(self._arrays)

    def __iter__(self):
        if self._pair_set is not None:
            from keras_mhdeblur.data import iter_evaluation_pairs

            return iter_evaluation_pairs(self._pair_set, verify=False)
        return iter(self._arrays)


def validation_pairs(config):
    """The run's validation pairs, or None."""
    if config.val_data is not None:
        return HeldOutPairs(config.val_data, config.val_split)
    if config.val_synthetic:
        return HeldOutPairs(synthetic=synthetic_stream(config, VALIDATION_SEED_OFFSET),
                            count=config.val_synthetic)
    return None


def validation_record(step, summary):
    return {"step": step, "best_overall_psnr": summary["best_overall_psnr"],
            "worst_psnr": summary["worst_psnr"], "best_single_head": summary["best_single_head"],
            "best_single_head_psnr": summary["best_single_head_psnr"],
            "per_output_psnr": summary["per_output_psnr"], "wins_psnr": summary["wins_psnr"]}


# ---- callbacks --------------------------------------------------------------------------------
class RunCheckpoints(keras.callbacks.Callback):
    """Counts steps, stops at `stop_step`, and at every epoch end (= checkpoint interval)
    validates when due, saves best.keras when the best-overall PSNR improves, writes a
    checkpoint, prunes old ones and updates state.json, all atomically."""

    def __init__(self, run, config, start_step, stop_step, validation, state, scratch=None):
        super().__init__()
        self.run, self.config, self.validation = run, config, validation
        self.step, self.stop_step = start_step, stop_step
        self.state = state
        self.last_validated = state.get("last_validated_step", 0)
        # Processes other than the chief (scratch: a private folder) take every step the chief
        # takes, validation and saving included: on JAX both are collective computations. Their
        # files go to scratch and are thrown away.
        self.scratch = scratch

    def save_to(self, path):
        """Saves the model to `path` (the chief) or to the scratch folder (the others)."""
        save_model(self.model, path if self.scratch is None else self.scratch / path.name)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step >= self.stop_step:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        from keras_mhdeblur.evaluation import evaluate_model

        step, config = self.step, self.config
        self.save_to(self.run.checkpoint_path(step))
        due = step // config.val_every > self.last_validated // config.val_every
        if self.validation is not None and (due or step == config.steps):
            summary = evaluate_model(self.model, self.validation, compute_ssim=False).summary()
            self.last_validated = step
            record = validation_record(step, summary)
            self.state.setdefault("validation", []).append(record)
            if logs is not None:
                logs.update(val_psnr_best=summary["best_overall_psnr"],
                            val_psnr_worst=summary["worst_psnr"],
                            val_psnr_single_head=summary["best_single_head_psnr"])
            best = self.state.get("best")
            if best is None or summary["best_overall_psnr"] > best["best_overall_psnr"]:
                self.save_to(self.run.best_path)
                self.state["best"] = record
        self.state.update(step=step, last_validated_step=self.last_validated)
        if self.scratch is not None:
            return
        kept = self.run.checkpoints()
        for _, path in kept[:-config.keep]:
            path.unlink(missing_ok=True)
        self.state["checkpoints"] = [path.name for _, path in self.run.checkpoints()]
        self.run.write_state(self.state)


class StepTensorBoard(keras.callbacks.TensorBoard):
    """TensorBoard whose batch and epoch summaries are indexed by the global training step, so a
    resumed run continues the curves where they stopped."""

    def __init__(self, log_dir, initial_step, **kwargs):
        super().__init__(log_dir, profile_batch=0, **kwargs)
        self.initial_step = initial_step

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        # Keras restarts its batch counter at 0 on every fit.
        self._global_train_batch = self.initial_step

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(self._global_train_batch, logs)


def log_callbacks(run, start_step, checkpoint_every, log=print):
    """TensorBoard logs in run/logs (when TensorFlow and the `tensorboard` package are installed:
    tf.summary needs both) and always a CSV of the per-checkpoint metrics, run/logs/metrics.csv."""
    run.log_dir.mkdir(parents=True, exist_ok=True)
    callbacks = [keras.callbacks.CSVLogger(str(run.log_dir / "metrics.csv"),
                                           append=start_step > 0)]
    missing = [name for name in ("tensorflow", "tensorboard")
               if importlib.util.find_spec(name) is None]
    if missing:
        log(f"TensorBoard logs off: {' and '.join(missing)} not installed (tf.summary needs "
            "both); metrics go to logs/metrics.csv")
    else:
        callbacks.append(StepTensorBoard(str(run.log_dir), start_step,
                                         update_freq=max(1, min(100, checkpoint_every // 10))))
    return callbacks


# ---- the run ----------------------------------------------------------------------------------
@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    run_dir: Path
    step: int
    finished: bool
    best: dict | None
    resumed_from: int


@contextlib.contextmanager
def _dtype_policy(name):
    previous = keras.config.dtype_policy()
    if name:
        keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _use_compile_cache(folder):
    """On JAX, keeps compiled XLA programs in `folder`, so that a resumed run loads its train
    step instead of compiling it again (tens of seconds for NAFNet on a GPU). A cache folder the
    user configured (JAX_COMPILATION_CACHE_DIR) wins. JAX fixes its cache at the first compile of
    the process, so this takes effect in the command line, where training comes first."""
    if keras.backend.backend() != "jax":
        return
    import jax

    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(folder))


def _distribution(devices, cluster):
    from keras_mhdeblur.distribute import available_devices, connect, data_parallel, replicas

    if cluster.distributed:
        if devices is not None:
            raise RunError(f"devices={devices} (--devices) is for one process; with several "
                           "processes each uses all its own devices (choose them with "
                           "CUDA_VISIBLE_DEVICES)")
        connect(cluster)
        return data_parallel(cluster=cluster), replicas(cluster)
    if devices is None:
        return contextlib.nullcontext(), 1
    names = available_devices()
    if devices > len(names):
        raise RunError(f"devices={devices} (--devices) asked for, but this machine has "
                       f"{len(names)}: {', '.join(names)}")
    return data_parallel(devices), devices


def check_batch_split(config, cluster, replica_count):
    """Raises `RunError` unless the global batch splits evenly over processes and devices."""
    for count, what in ((cluster.num_processes, "processes"), (replica_count, "devices")):
        if config.batch % count:
            raise RunError(f"batch {config.batch} (--batch, the global batch) cannot be split "
                           f"evenly over {count} {what}; use a multiple of {count}")


class PeersLost(RunError):
    """A training across processes whose peers stopped answering (one died or hangs)."""


#: How the engines word a collective whose peers are gone (JAX raises gloo's failures as plain
#: ValueErrors).
_PEER_FAILURE_WORDS = ("gloo", "unavailable", "heartbeat", "connection reset", "deadline_exceeded",
                       "collective ops is aborted", "socket closed")


def _is_peer_failure(error):
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if isinstance(error, (tf.errors.UnavailableError, tf.errors.AbortedError,
                              tf.errors.DeadlineExceededError, tf.errors.CancelledError)):
            return True
    text = str(error).lower()
    return isinstance(error, (RuntimeError, ValueError)) and any(
        word in text for word in _PEER_FAILURE_WORDS)


def train(config, run_dir, *, resume=False, overwrite=False, stop_at=None, verbose="auto",
          log=print, callbacks=(), cluster=None, pipeline="auto", data_workers=None):
    """Trains (or resumes) a run in `run_dir`; see the module doc for the files written.

    Args:
        config: `TrainConfig`. On resume it must equal the stored config.json except for
            `RESUMABLE_CHANGES` (resolve it with `config_differences` first for a friendly
            message; a mismatch here raises `RunError`).
        run_dir: the run folder.
        resume: continue from the newest checkpoint.
        overwrite: start again in a folder that holds a run (its files are deleted).
        stop_at: stop this session at this step (a checkpoint is written there); resume later.
        verbose: Keras `fit` verbosity; "auto": a redrawn bar on a terminal, one line per
            checkpoint interval in a log file (`utils.progress.fit_verbosity`).
        log: where progress lines go.
        callbacks: more Keras callbacks for `fit` (after the run's own; an epoch is one
            checkpoint interval).
        cluster: `distribute.Cluster` to train across several processes (every process calls
            `train` with the same arguments; the run folder must be the same folder for all,
            e.g. on a shared file system). Process 0 writes the run; the others only read it
            to resume. None: one process.
        pipeline: how batches are made, "auto", "tf.data" or "pydataset" (`training_data`;
            the same synthetic pairs either way, so not part of the config).
        data_workers: worker processes of the PyDataset pipeline.

    Returns:
        `TrainResult`.
    """
    from keras_mhdeblur.distribute import Cluster

    config.validate()
    cluster = cluster or Cluster()
    # Joins the other processes (before anything computes) and checks the devices, before any
    # file is written.
    distribution, replica_count = _distribution(config.devices, cluster)
    check_batch_split(config, cluster, replica_count)
    run = RunDirectory(run_dir)
    if not cluster.is_chief:
        with tempfile.TemporaryDirectory(prefix="mhdeblur-process-") as scratch:
            return _train(config, run, resume, overwrite, stop_at, 0, lambda *_: None,
                          callbacks, cluster, distribution, Path(scratch),
                          (pipeline, data_workers))
    if run.path.exists() and not run.path.is_dir():
        raise RunError(f"{run.path}: exists and is not a folder; choose another --out")
    created = not run.path.exists()
    try:
        with folder_lock(run.lock_path, "training run") as left_by:
            if left_by:
                log(f"{run.path}: taking over the lock of a training that ended without "
                    f"releasing it ({left_by})")
            return _train(config, run, resume, overwrite, stop_at, verbose, log, callbacks,
                          cluster, distribution, None, (pipeline, data_workers))
    except FolderInUse as error:
        raise RunError(str(error)) from None
    finally:
        if created and run.path.is_dir() and not any(run.path.iterdir()):
            run.path.rmdir()  # the lock's folder, when nothing else was written


def _train(config, run, resume, overwrite, stop_at, verbose, log, callbacks, cluster,
           distribution, scratch, data_options):
    if resume and run.never_trained():
        log(f"{run.path}: the earlier start wrote no checkpoint; starting the run afresh")
        resume = False
    state, start_step, checkpoint = {}, 0, None
    if resume:
        stored = TrainConfig.from_dict(run.read_config(), str(run.config_path))
        differences = config_differences(stored.to_dict(), config.to_dict())
        if differences:
            raise RunError(_describe_differences(run, differences))
        found = run.checkpoints()
        if found:
            start_step, checkpoint = found[-1]
            # Forget what happened after the checkpoint: those steps are trained again (and give
            # the same results, so best.keras is rewritten if it came from them).
            state = run.read_state()
            history = [record for record in state.get("validation", [])
                       if record["step"] <= start_step]
            state["validation"] = history
            state["best"] = max(history, key=lambda r: r["best_overall_psnr"], default=None)
            state["last_validated_step"] = max((r["step"] for r in history), default=0)
            state["finished"] = False
    # The data is opened before anything is written, so a wrong --data leaves no run behind.
    shard = (cluster.process_id, cluster.num_processes) if cluster.distributed else None
    local_batch = config.batch // cluster.num_processes
    pipeline, data_workers = data_options
    dataset = training_data(config, start_step, shard, pipeline, data_workers)
    validation = validation_pairs(config)
    if scratch is None:  # only the chief writes to the run folder
        if resume:
            run.write_config(config)  # resumable changes (keep, ...) recorded
            run.remove_temporaries()
        else:
            run.prepare_new(config, overwrite)

    stop_step = config.steps if stop_at is None else min(int(stop_at), config.steps)
    if scratch is None:
        _use_compile_cache(run.compile_cache_dir)
    keras.utils.set_random_seed(config.seed)
    with _dtype_policy(config.mixed_precision), distribution:
        if checkpoint is not None:
            model = load_model(checkpoint, compile=True)
            check_model_matches(model, config, checkpoint)
            restored = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
            if restored != start_step:
                raise RunError(f"{checkpoint}: optimiser state is at step {restored}, but the "
                               f"file name says {start_step}; the checkpoint is not from this run")
            log(f"resuming {run.path} from step {start_step} ({checkpoint.name})")
        else:
            model = build_training_model(config)
        if start_step >= stop_step:
            done = start_step >= config.steps
            log(f"{run.path}: already at step {start_step}" + (f" of {config.steps}" if done else
                f", past --stop-at {stop_step}") + "; nothing to do")
            return TrainResult(model, run.path, start_step, done, state.get("best"), start_step)

        every = config.checkpoint_every
        checkpoints = RunCheckpoints(run, config, start_step, stop_step, validation, state,
                                     scratch)
        own = [checkpoints] if scratch is not None else \
            [checkpoints, *log_callbacks(run, start_step, every, log)]
        callbacks = [*own, *callbacks]
        log(f"{type(model).__name__} ({config.architecture()}): {model.count_params():,} "
            f"parameters, {model.num_outputs} output(s); steps {start_step}..{stop_step} of "
            f"{config.steps}, batch {config.batch}, crop {config.crop}, checkpoint every {every} "
            f"steps -> {run.path}" + (f"; {cluster.num_processes} processes, batch "
                                      f"{local_batch} each" if cluster.distributed else ""))
        if cluster.distributed:
            from keras_mhdeblur.distribute import distributed_batches

            dataset = distributed_batches(dataset, local_batch, cluster)
        try:
            model.fit(dataset, epochs=math.ceil(config.steps / every), steps_per_epoch=every,
                      initial_epoch=start_step // every, callbacks=callbacks,
                      verbose=fit_verbosity(verbose), shuffle=False)
        except Exception as error:
            if not cluster.distributed or not _is_peer_failure(error):
                raise
            found = run.checkpoints()
            last = (f"the last checkpoint is {found[-1][1]} (step {found[-1][0]})" if found
                    else "no checkpoint was written yet")
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise PeersLost(f"{cluster.describe()}: lost the other processes at step "
                           f"{checkpoints.step} ({type(error).__name__}: {first_line[:300]}); "
                           f"{last}. Relaunch every process with --resume") from None
        finally:
            if hasattr(dataset, "close"):  # the PyDataset pipeline's worker processes
                dataset.close()
    step, state = checkpoints.step, checkpoints.state
    finished = step >= config.steps
    if finished:
        checkpoints.save_to(run.final_path)
        if scratch is None:
            state["finished"] = True
            run.write_state(state)
        log(f"finished at step {step}: {run.final_path}")
    else:
        log(f"stopped at step {step}; continue with --resume")
    best = state.get("best")
    if best:
        log(f"best on validation: {best['best_overall_psnr']:.3f} dB best-overall PSNR at step "
            f"{best['step']} ({run.best_path})")
    return TrainResult(model, run.path, step, finished, best, start_step)


def _describe_differences(run, differences):
    lines = [f"{run.path} was started with other settings (stored in {run.config_path}); "
             "resume needs the same ones:"]
    for name, stored, requested in differences:
        lines.append(f"  {name}: run has {stored!r}, now given {requested!r}")
    lines.append("Drop those flags to resume as started, or start a new run (another --out, or "
                 "--overwrite).")
    return "\n".join(lines)
