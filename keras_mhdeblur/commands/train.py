"""`mhdeblur train`: train or resume a run (keras_mhdeblur.training does the work)."""

import argparse
import json
import os
import sys
from pathlib import Path

from keras_mhdeblur.commands import CommandError, reports_errors
from keras_mhdeblur.commands.arguments import key_values

# Options of the run itself, not of the model or the data: they never go into config.json.
RUN_OPTIONS = ("out", "resume", "overwrite", "stop_at", "config", "pipeline", "data_workers")
# How this process joins the others: flags only (never in config files or config.json).
CLUSTER_OPTIONS = ("workers", "coordinator", "num_processes", "process_id", "peer_timeout")


def register(subparsers):
    from keras_mhdeblur.commands.arguments import positive_int

    parser = subparsers.add_parser(
        "train", help="train (or resume) a multi-head model; checkpoints, best on validation",
        description="Train a model from a named config on paired folders or synthetic blur. "
        "Defaults follow the official NAFNet-width32 GoPro recipe (AdamW, cosine schedule, batch "
        "32, 256 crops, 200k steps); use --width/--override, --crop, --batch and --steps for "
        "small runs. Settings can also come from --config FILE (YAML or JSON, the same keys as "
        "the flags with underscores); flags override the file.",
        argument_default=argparse.SUPPRESS)
    add = parser.add_argument
    add("--out", required=True, metavar="RUN_DIR", help="run folder (checkpoints, logs, models)")
    add("--config", metavar="FILE", help="YAML or JSON file of settings")
    add("--resume", action="store_true", help="continue the run in RUN_DIR where it stopped")
    add("--overwrite", action="store_true", help="start again in a RUN_DIR that holds a run")
    add("--stop-at", type=positive_int, metavar="STEP",
        help="stop this session at STEP (checkpointed); continue later with --resume")
    model = parser.add_argument_group("model")
    model.add_argument("--model", metavar="NAME", help="named config (default nafnet-w32)")
    model.add_argument("--heads", type=positive_int, help="K output heads; 1 = single-head baseline "
                       "(default 4)")
    model.add_argument("--no-combine", dest="combine_heads", action="store_false",
                       help="K outputs instead of K(K+1)/2 (no head combination)")
    model.add_argument("--width", type=positive_int, help="override the config's width")
    model.add_argument("--init-from", metavar="MODEL",
                       help="fine-tune: start from this preset (name or folder) or .keras file; "
                       "the architecture flags come from it, except more NAFNet blocks per level "
                       "(--override enc_blocks=...: the new ones start as the identity)")
    model.add_argument("--override", action="append", metavar="KEY=VALUE",
                       help="constructor argument (JSON value or comma list), e.g. "
                       "enc_blocks=1,1 (repeatable)")
    data = parser.add_argument_group("data")
    data.add_argument("--data", metavar="DIR", help="paired training images (find_pairs layouts)")
    data.add_argument("--split", help="split of --data, e.g. train (GoPro)")
    data.add_argument("--synthetic", action="store_true",
                      help="train on built-in synthetic motion blur (no download)")
    data.add_argument("--synthetic-label", choices=("middle", "random"),
                      help="sharp label of synthetic pairs: the middle sub-frame (GoPro) or a "
                      "random one (ambiguous; default middle)")
    data.add_argument("--source", metavar="DIR", help="sharp images for --synthetic: a folder, or "
                      "builtin (default) / builtin:train (without the held-out photos)")
    data.add_argument("--val-data", metavar="DIR", help="validation pairs (best checkpoint)")
    data.add_argument("--val-split", help="split of --val-data, e.g. test")
    data.add_argument("--val-synthetic", type=int, metavar="N",
                      help="validate on N held-out synthetic pairs")
    data.add_argument("--pipeline", choices=("auto", "tf.data", "pydataset"),
                      help="how batches are made: tf.data, or keras.utils.PyDataset in worker "
                      "processes (no TensorFlow needed); default auto: tf.data where TensorFlow "
                      "is installed. Synthetic pairs are the same either way")
    data.add_argument("--data-workers", type=positive_int, metavar="N",
                      help="worker processes of --pipeline pydataset (default: the cores but one, "
                      "up to 16)")
    data.add_argument("--crop", type=positive_int, help="training crop size (default 256)")
    data.add_argument("--batch", type=positive_int, help="global batch size (default 32)")
    loop = parser.add_argument_group("schedule")
    loop.add_argument("--steps", type=positive_int, help="training steps (default 200000)")
    loop.add_argument("--val-every", type=positive_int, help="validate every N steps, at the next "
                      "checkpoint (default 5000)")
    loop.add_argument("--checkpoint-every", type=positive_int, help="steps between checkpoints "
                      "(default 1000)")
    loop.add_argument("--keep", type=positive_int, help="checkpoints kept (default 3)")
    loop.add_argument("--seed", type=int, help="seed (default 42)")
    loop.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    loop.add_argument("--mixed-precision", choices=("mixed_bfloat16", "mixed_float16"))
    loop.add_argument("--jit-compile", action=argparse.BooleanOptionalAction,
                      help="XLA on or off (default: Keras decides)")
    loop.add_argument("--devices", type=positive_int, help="data-parallel over N devices")
    heads = parser.add_argument_group(
        "winner assignment (default: the official hard winner-takes-all; see docs/heads.md)")
    heads.add_argument("--recommended-heads", action="store_true",
                       help="the recommended assignment: annealed winner-takes-all from 2 dB "
                       "over the first half of the run (the flags below override it)")
    heads.add_argument("--temperature", type=float, metavar="T0",
                       help="annealed winner-takes-all: soft-min temperature at step 0, in the "
                       "loss's units (dB for the PSNR loss)")
    heads.add_argument("--anneal-steps", type=positive_int, metavar="N",
                       help="steps over which the temperature falls to 0 (default: half of "
                       "--steps); the official loss from then on")
    heads.add_argument("--relaxation", type=float, metavar="EPS",
                       help="relaxed winner-takes-all: weight EPS shared by the losers")
    heads.add_argument("--anchor", type=float, metavar="W",
                       help="anchored winner-takes-all: output 0 (the first head) also learns "
                       "from every pair, with weight W on top of the assignment, so that one "
                       "output has learnt as a single head does (docs/heads.md)")
    processes = parser.add_argument_group(
        "several processes or hosts (docs/distributed.md); every process runs the same command "
        "with its own --process-id, process 0 writes the run folder")
    processes.add_argument("--workers", metavar="HOST:PORT,...",
                           help="every process's address, process 0 first (TensorFlow needs "
                           "them all; default: TF_CONFIG)")
    processes.add_argument("--coordinator", metavar="HOST:PORT",
                           help="JAX: where the processes meet (process 0); with "
                           "--num-processes (default: JAX_COORDINATOR_ADDRESS)")
    processes.add_argument("--num-processes", type=positive_int, metavar="N",
                           help="processes in the training (with --coordinator)")
    processes.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    processes.add_argument("--peer-timeout", type=positive_int, metavar="SECONDS",
                           help="a process silent this long counts as dead and the others stop "
                           "(default 60)")
    parser.set_defaults(func=train_command)


def read_config_file(path):
    """Settings from a YAML or JSON file (a mapping; keys may use dashes)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise CommandError(f"--config {path}: cannot be read ({error.strerror})") from None
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text)
    except Exception as error:
        raise CommandError(f"--config {path}: not valid {path.suffix.lstrip('.') or 'YAML'} "
                           f"({error})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise CommandError(f"--config {path}: expected a mapping of settings, got "
                           f"{type(values).__name__}")
    values = {str(key).replace("-", "_"): value for key, value in values.items()}
    if "no_combine" in values:
        values["combine_heads"] = not values.pop("no_combine")
    return values


def resolve(args):
    """(TrainConfig, run options) from defaults, the stored run (on resume), --config and flags,
    in that order of precedence (last wins)."""
    from keras_mhdeblur.training import RunDirectory, TrainConfig

    flags = vars(args).copy()
    flags.pop("func", None)
    flags.pop("command", None)
    if "override" in flags:
        flags["overrides"] = key_values(flags.pop("override"))
    file_values = read_config_file(flags["config"]) if "config" in flags else {}
    if flags.pop("recommended_heads", False) or file_values.pop("recommended_heads", False):
        # Expanded here, so config.json records the values themselves.
        from keras_mhdeblur.training import RECOMMENDED_HEADS

        file_values = {**RECOMMENDED_HEADS, **file_values}
    options = {name: file_values.pop(name, None) for name in RUN_OPTIONS}
    options.update({name: flags.pop(name) for name in RUN_OPTIONS if name in flags})
    if options["out"] is None:
        raise CommandError("--out RUN_DIR is required")
    values = {}
    run = RunDirectory(options["out"])
    if options["resume"] and not run.never_trained():  # (a never-trained one starts afresh)
        values = run.read_config()
    requested = {**file_values, **flags}
    overrides = {**values.get("overrides", {}), **file_values.get("overrides", {}),
                 **flags.get("overrides", {})}
    values.update(requested)
    if overrides or "overrides" in values:
        values["overrides"] = overrides
    if values.get("init_from") and not options["resume"]:
        values.update(_architecture_from(values["init_from"], requested))
    where = "settings" if not options["config"] else f"--config {options['config']} and flags"
    return TrainConfig.from_dict(values, where), options


ARCHITECTURE_SETTINGS = ("model", "heads", "combine_heads", "width", "overrides")


def _architecture_from(init_from, requested):
    """The architecture settings of the --init-from model; explicit ones must agree with it."""
    from keras_mhdeblur.models.surgery import BLOCK_COUNTS, is_deeper
    from keras_mhdeblur.training import architecture_of, load_initial_model

    model = load_initial_model(init_from)
    architecture = {"width": None, **architecture_of(model)}
    if architecture["heads"] == 1 and requested.get("heads", 1) > 1:
        # A single head grows into K heads (training.initialise_from); they may combine.
        architecture["heads"] = requested["heads"]
        architecture["combine_heads"] = requested.get("combine_heads", True)
    # A setting agrees when the model has that value, even where it is the config's default
    # (a recipe may spell out dec_blocks=[1, 1, 1, 1], which architecture_of leaves out).
    actual = json.loads(json.dumps(model.get_config(), default=str))
    plain = {name: json.loads(json.dumps(value)) for name, value in requested.items()}
    conflicts = []
    for name in ARCHITECTURE_SETTINGS:
        if name not in requested:
            continue
        if name == "overrides":
            differing = {key: value for key, value in plain[name].items()
                         if actual.get(key) != value}
            # More blocks per level than the model has: its blocks are kept and the new ones
            # start as the identity (models.surgery.deepened).
            deeper = {key: value for key, value in differing.items() if key in BLOCK_COUNTS
                      and key in actual and is_deeper(value, actual[key])}
            architecture["overrides"] = {**architecture["overrides"], **deeper}
            differing = {key: value for key, value in differing.items() if key not in deeper}
            if differing:
                conflicts.append(f"overrides {differing!r} (it has "
                                 f"{ {key: actual.get(key) for key in differing}!r})")
        elif name == "combine_heads" and getattr(model, "heads", None) == 1:
            continue  # one head has nothing to combine: --no-combine and a recipe's true agree
        elif name == "width" and plain[name] is not None:
            if plain[name] != actual.get("width"):
                conflicts.append(f"width={requested[name]!r} (it has {actual.get('width')!r})")
        elif plain[name] != architecture[name]:
            conflicts.append(f"{name}={requested[name]!r} (it has {architecture[name]!r})")
    if conflicts:
        raise CommandError(f"--init-from {init_from} fixes the architecture; drop "
                           f"{', '.join(conflicts)}")
    return architecture


def join_cluster(args):
    """The `Cluster` of the process flags (removed from `args`), joined before anything else
    runs: the engines fix their collectives when they first compute."""
    from keras_mhdeblur.distribute import Cluster, ClusterError, connect

    given = {name: vars(args).pop(name) for name in CLUSTER_OPTIONS if name in vars(args)}
    try:
        cluster = Cluster.resolve(**given)
        connect(cluster)
    except ClusterError as error:
        raise CommandError(str(error)) from None
    return cluster


@reports_errors("train")
def train_command(args):
    from keras_mhdeblur.training import PeersLost, train

    cluster = join_cluster(args)
    config, options = resolve(args)
    try:
        train(config, options["out"], resume=bool(options["resume"]),
              overwrite=bool(options["overwrite"]), stop_at=options["stop_at"], cluster=cluster,
              pipeline=options["pipeline"] or "auto", data_workers=options["data_workers"])
    except PeersLost as error:
        print(f"mhdeblur train: error: {error}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        # A normal exit would run the engine's shutdown, which waits for the dead process and
        # then aborts (JAX); the run folder is already consistent, so leave at once.
        os._exit(1)
    except KeyboardInterrupt:
        from keras_mhdeblur.training import RunDirectory

        found = RunDirectory(options["out"]).checkpoints()
        last = f"the last checkpoint is {found[-1][1]} (step {found[-1][0]})" if found else \
            "no checkpoint was written yet"
        print(f"mhdeblur train: interrupted; {last}. Continue with: mhdeblur train --out "
              f"{options['out']} --resume", file=sys.stderr)
        return 130
    return 0
