"""Data-parallel training on the engines' own machinery (no home-made parallelism).

One process, several devices:

    with keras_mhdeblur.distribute.data_parallel(devices=2):
        model = keras_mhdeblur.NAFNetMH(heads=4)
        model.compile(optimizer=model.official_optimizer(total_steps))
        model.fit(dataset_with_global_batch, ...)   # inside: JAX reads the distribution here

TensorFlow: `tf.distribute.MirroredStrategy` over the local GPUs (or CPUs when there are none). JAX: `keras.distribution.DataParallel` over `jax.devices()`.
The batch given to `fit` is the global batch (per-device batch x devices), as the official
configs count it (NAFNet-w32: 4 GPUs x 8 = 32).

Several processes (hosts), every one running the same command with its own process id:

    cluster = Cluster.resolve(workers=["host0:12345", "host1:12345"], process_id=0)
    connect(cluster)                                  # first, before any TF/JAX computation
    with data_parallel(cluster=cluster):
        ...build and compile...
        model.fit(distributed_batches(local_dataset, local_batch, cluster), ...)

TensorFlow: `tf.distribute.MultiWorkerMirroredStrategy` (workers from TF_CONFIG, which `connect`
writes from the flags when they are given). JAX: `jax.distributed.initialize` (coordinator =
process 0) and `keras.distribution.DataParallel` over every process's devices, with CPU
collectives through gloo. Each process feeds only its own part of every global batch;
`training.py` cuts the data so that the parts of all processes, in process
order, are the single-process batch (docs/distributed.md).

Losses average over the global batch on both engines, so one data-parallel step equals one
single-device step on the same batch; the tests check it with real processes.
"""

import contextlib
import dataclasses
import json
import os
import socket

import keras

#: Seconds after which the engines declare a silent process dead (JAX's heartbeat timeout; TF's
#: MultiWorkerMirroredStrategy checks its peers' health on its own, every few seconds).
PEER_TIMEOUT = 60


class ClusterError(ValueError):
    """Process settings that cannot work; the message names the flag or variable."""


def _address(text, where):
    host, separator, port = str(text).rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"{where}: expected HOST:PORT (e.g. 10.0.0.1:12345), got {text!r}")
    return f"{host}:{int(port)}"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The processes of one training: how many, which one this is, where they meet.

    Attributes:
        num_processes: processes in the training (1: a plain single-process run).
        process_id: this process, 0..num_processes-1; process 0 is the chief, the only one that
            writes to the run folder.
        coordinator: HOST:PORT where the processes meet (process 0 listens there).
        workers: HOST:PORT of every process in order (TensorFlow needs them all; JAX only the
            coordinator, the first).
        peer_timeout: seconds after which a silent process counts as dead.
    """

    num_processes: int = 1
    process_id: int = 0
    coordinator: str | None = None
    workers: tuple | None = None
    peer_timeout: int = PEER_TIMEOUT

    @property
    def distributed(self):
        return self.num_processes > 1

    @property
    def is_chief(self):
        return self.process_id == 0

    def describe(self):
        return (f"process {self.process_id} of {self.num_processes}"
                + (f" (coordinator {self.coordinator})" if self.coordinator else ""))

    @classmethod
    def resolve(cls, workers=None, coordinator=None, num_processes=None, process_id=None,
                peer_timeout=None, environ=None):
        """The cluster from flags, else from the engines' own variables (TF_CONFIG;
        JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID), else a single process.

        Args:
            workers: every process's HOST:PORT, in process order (list or comma-separated text).
            coordinator, num_processes: the meeting point and the count (JAX style; TF then
                needs `workers` or TF_CONFIG).
            process_id: this process's index.
        """
        environ = os.environ if environ is None else environ
        timeout = PEER_TIMEOUT if peer_timeout is None else int(peer_timeout)
        if timeout < 1:
            raise ClusterError(f"--peer-timeout must be a positive number of seconds, got "
                               f"{peer_timeout!r}")
        if isinstance(workers, str):
            workers = [part for part in workers.split(",") if part.strip()]
        flags_given = any(value is not None for value in (workers, coordinator, num_processes,
                                                          process_id))
        if not flags_given:
            if environ.get("TF_CONFIG") and keras.backend.backend() == "tensorflow":
                return cls._from_tf_config(environ["TF_CONFIG"], timeout)
            if environ.get("JAX_COORDINATOR_ADDRESS"):
                coordinator = environ["JAX_COORDINATOR_ADDRESS"]
                num_processes = _integer(environ.get("JAX_NUM_PROCESSES"), "JAX_NUM_PROCESSES")
                process_id = _integer(environ.get("JAX_PROCESS_ID"), "JAX_PROCESS_ID")
            else:
                return cls(peer_timeout=timeout)
        if workers is not None:
            workers = tuple(_address(worker, "--workers") for worker in workers)
            if not workers:
                raise ClusterError("--workers: expected a comma-separated list of HOST:PORT")
            if num_processes is not None and num_processes != len(workers):
                raise ClusterError(f"--num-processes {num_processes} but --workers lists "
                                   f"{len(workers)} processes")
            if coordinator is not None and _address(coordinator, "--coordinator") != workers[0]:
                raise ClusterError("--coordinator must be the first of --workers (process 0), "
                                   "or left out")
            num_processes, coordinator = len(workers), workers[0]
        if num_processes is None or process_id is None or coordinator is None:
            raise ClusterError("several processes need --process-id and either --workers "
                               "HOST:PORT,... or --coordinator HOST:PORT --num-processes N")
        if num_processes < 1:
            raise ClusterError(f"--num-processes must be at least 1, got {num_processes}")
        if not 0 <= process_id < num_processes:
            raise ClusterError(f"--process-id must be in 0..{num_processes - 1}, got {process_id}")
        return cls(num_processes, process_id, _address(coordinator, "--coordinator"), workers,
                   timeout)

    @classmethod
    def _from_tf_config(cls, text, timeout):
        try:
            config = json.loads(text)
            task = config["task"]
            names = [name for name in ("chief", "worker") if config["cluster"].get(name)]
            ordered = [address for name in names for address in config["cluster"][name]]
            offset = 0 if task["type"] == "chief" or "chief" not in names else \
                len(config["cluster"]["chief"])
            index = offset + int(task["index"])
        except (ValueError, KeyError, TypeError) as error:
            raise ClusterError(f"TF_CONFIG: expected {{\"cluster\": {{\"worker\": [HOST:PORT, "
                               f"...]}}, \"task\": {{\"type\": \"worker\", \"index\": I}}}}, "
                               f"could not read it ({error!r})") from None
        if not 0 <= index < len(ordered):
            raise ClusterError(f"TF_CONFIG: task index {task['index']} is not in the cluster")
        return cls(len(ordered), index, ordered[0], tuple(ordered), timeout)


def _integer(text, name):
    try:
        return int(text)
    except (TypeError, ValueError):
        raise ClusterError(f"{name}: expected an integer, got {text!r}") from None


def local_workers(count):
    """`count` HOST:PORT addresses on 127.0.0.1 with ports free now: `--workers` for several
    processes on one machine (tests, benchmarks, trying it out)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{sock.getsockname()[1]}" for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# ---- joining the other processes (once per process, before any computation) ------------------
_connected = {}


def connect(cluster):
    """Joins the cluster's other processes; call it first, before TF or JAX computes anything
    (both engines fix their collectives at start-up). Returns once every process is there.
    Safe to call again with the same cluster; a single-process cluster does nothing."""
    if not cluster.distributed:
        return
    if "cluster" in _connected:
        if _connected["cluster"] != cluster:
            raise ClusterError(f"this process already joined {_connected['cluster'].describe()}")
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        _connected["strategy"] = _tf_multi_worker(cluster)
    elif backend == "jax":
        _jax_initialize(cluster)
    else:
        raise ClusterError(f"training across processes is not wired for the {backend} backend; "
                           "use TensorFlow or JAX")
    _connected["cluster"] = cluster


def _tf_multi_worker(cluster):
    import tensorflow as tf

    if cluster.workers is None:
        raise ClusterError("TensorFlow needs the address of every process: pass --workers "
                           "HOST:PORT,... (process 0 first) or set TF_CONFIG")
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": list(cluster.workers)},
        "task": {"type": "worker", "index": cluster.process_id}})
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        raise ClusterError(f"cannot join the other processes: {error} (TensorFlow must not have "
                           "run anything in this process before)") from None


def _jax_initialize(cluster):
    import jax

    # CPU devices talk through gloo (the default CPU client has no cross-process collectives).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(cluster.coordinator, cluster.num_processes,
                                   cluster.process_id,
                                   heartbeat_timeout_seconds=cluster.peer_timeout)
    except RuntimeError as error:
        raise ClusterError(f"cannot join the other processes at {cluster.coordinator}: {error}"
                           ) from None


def multi_worker_strategy():
    """The `MultiWorkerMirroredStrategy` of this process (TensorFlow, after `connect`), or None."""
    return _connected.get("strategy")


def is_multi_worker(strategy):
    """True for a TF strategy whose replicas live in several processes."""
    return strategy is not None and getattr(strategy.extended, "_num_workers", 1) > 1


# ---- devices and the strategy ----------------------------------------------------------------
def available_devices():
    """Names of the devices data parallelism would use, accelerators first."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return [device.name for device in devices]
    return keras.distribution.list_devices()


def replicas(cluster=None):
    """How many replicas a global batch is split over (all processes' devices)."""
    if cluster is not None and cluster.distributed:
        strategy = multi_worker_strategy()
        if strategy is not None:
            return strategy.num_replicas_in_sync
        return len(keras.distribution.list_devices())
    return 1


@contextlib.contextmanager
def data_parallel(devices=None, cluster=None):
    """Builds, compiles and fits the model inside this context to train data-parallel.

    Args:
        devices: how many devices of this process (the first N of `available_devices()`), or
            None for all. With several processes every process uses all its devices.
        cluster: a connected `Cluster` of several processes, or None.
    """
    backend = keras.backend.backend()
    if cluster is not None and cluster.distributed:
        if backend == "tensorflow":
            with multi_worker_strategy().scope():
                yield
            return
        # Each process hands fit its own part of the batch (auto_shard_dataset=False): Keras
        # assembles the global batch from them.
        names = keras.distribution.list_devices()
        distribution = keras.distribution.DataParallel(devices=names, auto_shard_dataset=False)
        with _jax_distribution(distribution):
            yield
        return
    names = available_devices()
    if devices is not None:
        if devices < 1 or devices > len(names):
            raise ValueError(f"devices={devices} requested, but {len(names)} are available: "
                             f"{names}")
        names = names[:devices]
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.distribute.MirroredStrategy(names).scope():
            yield
    elif backend == "jax":
        with _jax_distribution(keras.distribution.DataParallel(devices=names)):
            yield
    else:
        raise NotImplementedError(f"data parallel training is not wired for the {backend} "
                                  "backend; use TensorFlow or JAX")


@contextlib.contextmanager
def _jax_distribution(distribution):
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(distribution)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def distributed_batches(dataset, local_batch, cluster):
    """What `fit` gets on several processes: this process's part of every global batch.

    Args:
        dataset: the tf.data dataset of this process's batches (each `local_batch` samples:
            the global batch divided by the process count).
        local_batch: samples per batch of that dataset.
        cluster: the connected `Cluster`.
    """
    strategy = multi_worker_strategy()
    if strategy is None:  # JAX: Keras assembles the global arrays from every process's part
        return dataset
    local_replicas = strategy.num_replicas_in_sync // cluster.num_processes
    if local_replicas > 1:  # this process's devices take consecutive slices of its part
        dataset = dataset.rebatch(local_batch // local_replicas)
    return strategy.distribute_datasets_from_function(lambda context: dataset)
