"""Training across real processes on this machine (127.0.0.1 only): TensorFlow's
MultiWorkerMirroredStrategy and JAX multi-process with gloo. One step equals the single-process
step on the same global batch; a short `mhdeblur train` run equals the single-process run (with
a resume in between, on TF with another process count); only process 0 writes; killing one
process stops the other with a clear error and `--resume` continues; a busy run folder refuses a
second training. Every launch has a time limit and kills what it started."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO_ROOT
from keras_mhdeblur.cli import main
from keras_mhdeblur.distribute import Cluster, ClusterError, local_workers
from keras_mhdeblur.utils.locks import FolderInUse, folder_lock

TINY = ["--synthetic", "--width", "8", "--override", "enc_blocks=1,1", "--override",
        "dec_blocks=1,1", "--crop", "32", "--batch", "4", "--heads", "2", "--no-jit-compile"]
BACKENDS = ["tensorflow", pytest.param("jax", marks=pytest.mark.slow)]
LIMIT = 300  # seconds for any launch


def environment(backend):
    return {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


class Processes:
    """`count` processes of one command, process i given `--workers ... --process-id i`."""

    def __init__(self, backend, command, count, folder):
        workers = ",".join(local_workers(count))
        self.logs = [Path(folder) / f"process-{i}.log" for i in range(count)]
        self.handles = []
        for i, log in enumerate(self.logs):
            flags = ["--workers", workers, "--process-id", str(i)] if count > 1 else []
            self.handles.append(subprocess.Popen(
                [*command, *flags], env=environment(backend), cwd=REPO_ROOT,
                stdout=log.open("w"), stderr=subprocess.STDOUT))

    def wait(self, limit=LIMIT):
        deadline = time.monotonic() + limit
        try:
            for handle in self.handles:
                handle.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"processes still running after {limit} s:\n{self.output()}")
        finally:
            self.kill()
        return [handle.returncode for handle in self.handles]

    def kill(self, index=None):
        for handle in self.handles if index is None else [self.handles[index]]:
            if handle.poll() is None:
                handle.send_signal(signal.SIGKILL)
                handle.wait()

    def output(self, index=None):
        logs = self.logs if index is None else [self.logs[index]]
        return "\n".join(f"--- {log.name}\n{log.read_text()[-4000:]}" for log in logs)


def train_command(out, *flags):
    return [sys.executable, "-m", "keras_mhdeblur", "train", "--out", str(out), *TINY, *flags]


def train(backend, out, count, *flags, folder=None):
    processes = Processes(backend, train_command(out, *flags), count, folder or Path(out).parent)
    codes = processes.wait()
    assert codes == [0] * count, processes.output()
    return processes


def weights(path):
    from keras_mhdeblur.saving import load_model

    return [np.asarray(w) for w in load_model(path, compile=False).get_weights()]


def metric_rows(run):
    """logs/metrics.csv as dicts of numbers (a value Keras wrote as "NA" is dropped)."""
    def number(value):
        try:
            return float(value)
        except ValueError:
            return None

    with open(Path(run) / "logs" / "metrics.csv") as handle:
        return [{name: number(value) for name, value in row.items() if number(value) is not None}
                for row in csv.DictReader(handle)]


def relative_difference(a, b):
    a = np.concatenate([w.ravel() for w in a])
    b = np.concatenate([w.ravel() for w in b])
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


# ---- one step -----------------------------------------------------------------------------
STEP = """
import json, sys
import numpy as np, keras, keras_mhdeblur
from keras_mhdeblur import distribute

count, process_id, workers, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
cluster = distribute.Cluster.resolve(workers=workers, process_id=process_id) if count > 1 \\
    else distribute.Cluster()
distribute.connect(cluster)
import tensorflow as tf

rng = np.random.default_rng(0)
sharp = rng.uniform(0.2, 0.8, size=(4, 16, 16, 3)).astype("float32")
blurry = (sharp + np.roll(sharp, 1, axis=2)) / 2
local = 4 // count
part = slice(process_id * local, (process_id + 1) * local)
keras.utils.set_random_seed(0)
# Everything inside the context, fit included: on JAX fit outside it would train each process
# on its own part alone.
with distribute.data_parallel(cluster=cluster):
    model = keras_mhdeblur.NAFNetMH(heads=2, width=8, enc_blocks=(1,), dec_blocks=(1,))
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    start = [np.array(w) for w in model.get_weights()]
    batches = tf.data.Dataset.from_tensors((blurry[part], sharp[part])).repeat()
    data = distribute.distributed_batches(batches, local, cluster) if count > 1 else batches
    loss = model.fit(data, steps_per_epoch=1, epochs=1, verbose=0).history["loss"][0]
if process_id == 0:
    np.savez(out, loss=loss, *[np.array(w) - s for w, s in zip(model.get_weights(), start)])
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_step_across_two_processes_equals_one_process_step(backend, tmp_path):
    script = tmp_path / "step.py"
    script.write_text(STEP)
    results = {}
    for count in (1, 2):
        workers = ",".join(local_workers(count))
        out = tmp_path / f"step-{count}.npz"
        handles = [subprocess.Popen([sys.executable, str(script), str(count), str(i), workers,
                                     str(out)], env=environment(backend), cwd=REPO_ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                   for i in range(count)]
        try:
            outputs = [handle.communicate(timeout=LIMIT)[0] for handle in handles]
        finally:
            for handle in handles:
                handle.kill()
        assert [h.returncode for h in handles] == [0] * count, "\n".join(outputs)[-6000:]
        stored = np.load(out)
        results[count] = (float(stored["loss"]), [stored[k] for k in stored.files if k != "loss"])
    (loss_1, change_1), (loss_2, change_2) = results[1], results[2]
    scale = max(float(np.abs(c).max()) for c in change_1)
    assert scale > 1e-3  # the step changed the weights
    assert abs(loss_1 - loss_2) < 1e-5 * abs(loss_1)
    assert max(float(np.abs(a - b).max()) for a, b in zip(change_1, change_2)) < 1e-5 * scale


# ---- a short run through the command line ---------------------------------------------------
def _run_files(run):
    return sorted(str(path.relative_to(run)) for path in Path(run).rglob("*")
                  if "logs" not in path.parts[len(Path(run).parts):] and
                  "compile_cache" not in path.parts)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_a_run_across_two_processes_equals_a_single_process_run(backend, tmp_path):
    schedule = ["--steps", "4", "--checkpoint-every", "1", "--val-every", "2",
                "--val-synthetic", "2", "--keep", "4"]
    single, multi = tmp_path / "single", tmp_path / "multi"
    train(backend, single, 1, *schedule)
    train(backend, multi, 2, *schedule, "--stop-at", "2", folder=tmp_path)
    # Resumed with the same process count on JAX, with one process on TF: the data is cut by
    # sample index, so any process count continues the same stream.
    processes = train(backend, multi, 2 if backend == "jax" else 1, "--resume", folder=tmp_path)

    a, b = metric_rows(single), metric_rows(multi)
    assert len(a) == len(b) == 4
    # Step 1 (one step per row): same weights, same global batch, so the loss and every metric
    # (per-output PSNR, win shares) reduced over the global batch are the single-process ones.
    assert a[0].keys() == b[0].keys() and {"psnr_0", "win_0"} <= a[0].keys()
    for name in a[0]:
        assert abs(a[0][name] - b[0][name]) < 1e-5 * abs(a[0][name]) + 1e-6, name
    tolerance = 1e-5 if backend == "jax" else 5e-3  # Adam's sign-like first steps amplify
    assert relative_difference(weights(single / "model.keras"),  # TF's summation-order noise
                               weights(multi / "model.keras")) < tolerance
    # Only process 0 wrote: the same files as the single-process run, one validation record per
    # validation, and the other process printed nothing of the run.
    assert _run_files(single) == _run_files(multi)
    state = json.loads((multi / "state.json").read_text())
    assert [record["step"] for record in state["validation"]] == [2, 4]
    if len(processes.logs) > 1:
        assert "finished" not in processes.logs[1].read_text()
        assert "finished at step 4" in processes.logs[0].read_text()


# ---- a process dies ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_killing_one_process_stops_the_other_and_resume_continues(backend, tmp_path):
    run = tmp_path / "run"
    processes = Processes(backend, train_command(run, "--steps", "1000", "--checkpoint-every",
                                                 "2", "--keep", "2", "--peer-timeout", "10"),
                          2, tmp_path)
    try:
        deadline = time.monotonic() + LIMIT
        while not (run / "checkpoints" / "step-0000004.keras").exists():
            assert time.monotonic() < deadline, processes.output()
            assert all(h.poll() is None for h in processes.handles), processes.output()
            time.sleep(0.2)
        processes.kill(1)
        killed = time.monotonic()
        processes.handles[0].wait(timeout=120)
        stopped_after = time.monotonic() - killed
    finally:
        processes.kill()
    output = processes.output(0)
    assert processes.handles[0].returncode == 1, output
    assert "lost the other processes" in output and "--resume" in output, output
    assert stopped_after < 60
    last = max(int(p.stem.split("-")[1]) for p in (run / "checkpoints").glob("step-*.keras"))
    assert weights(run / "checkpoints" / f"step-{last:07d}.keras")  # the last one loads
    train(backend, run, 2, "--resume", "--stop-at", str(last + 2), folder=tmp_path)
    state = json.loads((run / "state.json").read_text())
    assert state["step"] == last + 2


# ---- a busy folder ----------------------------------------------------------------------------
HOLD = """
import sys, time
from keras_mhdeblur.utils.locks import folder_lock
with folder_lock(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(120)
"""


def test_a_second_training_on_a_busy_folder_refuses_and_a_dead_ones_lock_is_taken_over(
        tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run / "train.lock")],
                              stdout=subprocess.PIPE, text=True, env=environment("tensorflow"))
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert main(["train", "--out", str(run), *TINY, "--steps", "1"]) == 1
        message = capsys.readouterr().err
        assert f"in use by pid {holder.pid}" in message and "train.lock" in message, message
        assert not (run / "config.json").exists()  # nothing written
    finally:
        holder.kill()
        holder.wait()
    # SIGKILL left the lock file behind; the kernel's lock went with the process.
    assert (run / "train.lock").exists()
    with folder_lock(run / "train.lock") as left_by:
        assert left_by.startswith(f"pid {holder.pid} on ")
        with pytest.raises(FolderInUse, match="in use by pid"):
            with folder_lock(run / "train.lock"):
                pass
    assert not (run / "train.lock").exists()


# ---- settings -----------------------------------------------------------------------------
def test_cluster_settings_from_flags_and_the_engines_variables():
    cluster = Cluster.resolve(workers="10.0.0.1:1234,10.0.0.2:1234", process_id=1, environ={})
    assert (cluster.num_processes, cluster.process_id, cluster.coordinator) == \
        (2, 1, "10.0.0.1:1234")
    assert cluster.distributed and not cluster.is_chief
    tf_config = json.dumps({"cluster": {"worker": ["a:1", "b:2", "c:3"]},
                            "task": {"type": "worker", "index": 2}})
    assert Cluster.resolve(environ={"TF_CONFIG": tf_config}).process_id == 2
    jax_vars = {"JAX_COORDINATOR_ADDRESS": "a:9", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert Cluster.resolve(environ=jax_vars) == Cluster(4, 3, "a:9", None)
    assert not Cluster.resolve(environ={}).distributed


@pytest.mark.parametrize("flags, message", [
    ({"workers": "a:1,b"}, "--workers: expected HOST:PORT"),
    ({"workers": "a:1,b:2"}, "--process-id"),
    ({"workers": "a:1,b:2", "process_id": 2}, r"--process-id must be in 0\.\.1"),
    ({"workers": "a:1,b:2", "num_processes": 3, "process_id": 0}, "--num-processes 3 but"),
    ({"coordinator": "a:1", "process_id": 0}, "--num-processes"),
    ({"workers": "a:1,b:2", "process_id": 0, "peer_timeout": 0}, "--peer-timeout"),
])
def test_cluster_settings_that_cannot_work_are_named(flags, message):
    with pytest.raises(ClusterError, match=message):
        Cluster.resolve(environ={}, **flags)


def test_a_global_batch_that_does_not_split_over_the_processes_is_refused():
    from keras_mhdeblur.training import RunError, TrainConfig, check_batch_split

    config = TrainConfig(synthetic=True, batch=4)
    check_batch_split(config, Cluster(2, 0, "a:1"), 2)
    with pytest.raises(RunError, match="batch 4 .* cannot be split evenly over 3 processes"):
        check_batch_split(config, Cluster(3, 0, "a:1"), 3)
    with pytest.raises(RunError, match="over 8 devices; use a multiple of 8"):
        check_batch_split(config, Cluster(2, 0, "a:1"), 8)


# ---- the data each process reads -----------------------------------------------------------
@pytest.mark.parametrize("source", ["synthetic", "folder"])
def test_the_parts_of_all_processes_are_the_single_process_batches(source, tmp_path):
    """Any process count, from any start step: process i's batch is the i-th slice of the
    single-process batch, and every process makes only its own samples."""
    from keras_mhdeblur.data import SyntheticPairs, synthetic_dataset, training_dataset
    from keras_mhdeblur.data.pipeline import own_part

    if source == "synthetic":
        stream = SyntheticPairs(16, seed=3)

        def batches(start, shard):
            return synthetic_dataset(stream, 4, start_index=start * 4, shard=shard)
    else:
        from helpers import blurred_pairs
        from keras_mhdeblur.data import find_pairs
        from keras_mhdeblur.data.io import write_png

        for index, (blurry, sharp) in enumerate(zip(*blurred_pairs(6, 24))):
            write_png(tmp_path / "blur" / f"{index}.png", blurry)
            write_png(tmp_path / "sharp" / f"{index}.png", sharp)
        pairs = find_pairs(tmp_path)

        def batches(start, shard):
            return training_dataset(pairs, 4, 16, seed=1, start_step=start, shard=shard,
                                    verify=False)
    whole = [b for b, _ in batches(1, None).take(3).as_numpy_iterator()]
    for count in (2, 4):
        parts = [[b for b, _ in batches(1, (i, count)).take(3).as_numpy_iterator()]
                 for i in range(count)]
        for step, batch in enumerate(whole):
            np.testing.assert_array_equal(np.concatenate([part[step] for part in parts]), batch)
    with pytest.raises(ValueError, match="batch 4 cannot be split evenly over 3 processes"):
        own_part(None, 4, (0, 3))
