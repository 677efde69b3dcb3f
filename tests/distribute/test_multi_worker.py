"""Two workers of MultiWorkerMirroredStrategy on 127.0.0.1 against one process.

Each worker is a subprocess running _worker.py (a multi-worker strategy can
be made only once per process, before any other TensorFlow op), with its own
TF_CONFIG and CPU collectives over gRPC. The references are computed here,
without a strategy, from the initial weights that the workers wrote:

- one SGD(1.0) step on a global batch of 4 episodes split over the two
  workers moves the weights by minus the meta-gradient of the whole batch;
- the workers' episodes are disjoint and together are the one-process stream;
- evaluation split over the workers gives the one-process loss;
- a worker killed mid-epoch (and one whose last backup was cut short), then
  both restarted with the same command, resume from the last backup they
  share and end on the uninterrupted weights.

Each run starts two TensorFlow processes (about a minute on a shared 2-core
machine), so the tests are slow.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from helpers import free_ports, start_loopback_worker, stop_workers

HERE = pathlib.Path(__file__).resolve().parent
WORKER_SCRIPT = HERE / "_worker.py"
TIMEOUT = 420  # seconds for one run of the two workers

_spec = importlib.util.spec_from_file_location("_km_worker", WORKER_SCRIPT)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)

pytestmark = pytest.mark.slow


class Cluster:
    """Starts the two workers; `stop()` kills whatever is still running."""

    def __init__(self, out, ports):
        self.out, self.ports, self.procs = out, ports, []

    def start(self, mode, extra_env=None):
        extra_env = extra_env or {}
        command = [sys.executable, str(WORKER_SCRIPT), mode, str(self.out)]
        self.procs = []
        for index in range(len(self.ports)):
            log = self.out / f"log-{mode}-{index}-{len(os.listdir(self.out))}.txt"
            self.procs.append(
                start_loopback_worker(command, self.ports, index, log, extra_env.get(index))
            )

    def wait(self, index, timeout=TIMEOUT):
        try:
            return self.procs[index].wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"worker {index} still running after {timeout} s\n{self.logs()}")

    def stop(self):
        stop_workers(self.procs)

    def logs(self):
        return "\n".join(
            f"--- {path.name}\n{path.read_text()[-3000:]}"
            for path in sorted(self.out.glob("log-*"))
        )

    def check_success(self):
        codes = [self.wait(i) for i in range(len(self.procs))]
        assert codes == [0, 0], f"exit codes {codes}\n{self.logs()}"


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, free_ports(2))
    yield c
    c.stop()


def load(path):
    with np.load(path) as f:
        return [f[f"w{i}"] for i in range(len(f.files))]


def reference(initial, steps, **learner_args):
    """The learner trained here, without a strategy, from `initial`."""
    learner = worker.make_learner(**learner_args)
    for v, w in zip(learner.trainable_variables, initial, strict=True):
        v.assign(w)
    data = worker.episodes().batch(worker.GLOBAL_BATCH)
    learner.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    return [v.numpy() for v in learner.trainable_variables]


def assert_weights_close(got, expected, rtol=1e-5):
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol * np.abs(e).max())


def test_two_workers_step_on_the_global_batch_and_split_the_stream(cluster):
    cluster.start("step")
    cluster.check_success()
    out = cluster.out

    # (b) Each worker's replica got the contiguous half of each global batch.
    stream = [y.numpy() for _, y in worker.episodes().batch(worker.GLOBAL_BATCH).take(3)]
    seen = [np.load(out / f"episodes-{i}.npy") for i in range(2)]
    half = worker.GLOBAL_BATCH // 2
    for step, batch in enumerate(stream):
        np.testing.assert_array_equal(seen[0][step], batch[:half])
        np.testing.assert_array_equal(seen[1][step], batch[half:])
    flat = [tuple(e.ravel()) for s in seen for e in s.reshape(-1, *s.shape[2:])]
    assert len(set(flat)) == len(flat) == 3 * worker.GLOBAL_BATCH

    # (a) One SGD(1.0) step: the weight change is minus the global meta-gradient.
    initial = load(out / "initial-0.npz")
    for i in (0, 1):  # both workers start and end on the same weights
        assert_weights_close(load(out / f"initial-{i}.npz"), initial, rtol=0)
    final = [load(out / f"final-{i}.npz") for i in (0, 1)]
    assert_weights_close(final[1], final[0], rtol=0)
    expected = reference(initial, steps=1)
    got_gradient = [a - b for a, b in zip(initial, final[0])]
    expected_gradient = [a - b for a, b in zip(initial, expected)]
    assert_weights_close(got_gradient, expected_gradient)

    # Evaluation on 8 episodes split over the workers: the one-process loss.
    learner = worker.make_learner()
    for v, w in zip(learner.trainable_variables, final[0]):
        v.assign(w)
    expected_loss = learner.evaluate(
        worker.validation_episodes().batch(worker.GLOBAL_BATCH), verbose=0
    )
    for i in (0, 1):
        got = json.loads((out / f"evaluate-{i}.json").read_text())["loss"]
        np.testing.assert_allclose(got, expected_loss, rtol=1e-5)

    # The comparison has power: one worker's half alone gives another gradient.
    learner = worker.make_learner()
    for v, w in zip(learner.trainable_variables, initial):
        v.assign(w)
    x, y = next(iter(worker.episodes().batch(worker.GLOBAL_BATCH)))
    learner.train_on_batch({k: v[:half] for k, v in x.items()}, y[:half])
    half_gradient = [a - v.numpy() for a, v in zip(initial, learner.trainable_variables)]
    difference = max(np.abs(a - b).max() for a, b in zip(half_gradient, expected_gradient))
    assert difference > 1e-3 * max(np.abs(g).max() for g in expected_gradient)


def test_a_killed_worker_resumes_from_the_last_backup(cluster):
    out = cluster.out
    kill_after = worker.STEPS * 2 + 1  # first batch of the third epoch
    cluster.start("train", extra_env={1: {"KM_TEST_EXIT_AFTER_BATCHES": str(kill_after)}})
    assert cluster.wait(1) == worker.EXIT_CODE, cluster.logs()
    # Worker 0 waits on its dead peer in the next all-reduce: end it, as a
    # scheduler would before restarting the job.
    cluster.stop()
    for i in (0, 1):
        path = out / "backup" / f"worker-{i}" / "training_metadata.json"
        metadata = json.loads(path.read_text())
        assert metadata["epoch"] == 2, metadata
    assert not list(out.glob("final-*"))

    # Worker 1 also crashed while writing that backup (Keras had copied its
    # epoch-1 backup to *.bkp and written half the weights): the workers must
    # agree to resume from epoch 1, worker 0 from its previous backup.
    one = out / "backup" / "worker-1"
    weights = (one / "latest.weights.h5").read_bytes()
    (one / "latest.weights.h5").write_bytes(weights[: len(weights) // 2])
    (one / "training_metadata.json").write_text((one / "training_metadata.json.bkp").read_text())

    cluster.start("train")  # the same command, without the fault
    cluster.check_success()
    runs = [json.loads((out / f"run-{i}.json").read_text()) for i in (0, 1)]
    assert runs == [{"start": worker.STEPS, "epochs_run": worker.EPOCHS - 1}] * 2
    assert not (out / "backup" / "worker-0").exists()  # removed at the end of training

    initial = load(out / "initial-0.npz")
    final = [load(out / f"final-{i}.npz") for i in (0, 1)]
    assert_weights_close(final[1], final[0], rtol=0)
    total = worker.EPOCHS * worker.STEPS
    expected = reference(initial, steps=total, learning_rate=0.01, adam=True)
    assert_weights_close(final[0], expected)

    # The comparison has power: a resume that restarted the episode stream
    # (or did not restore Adam's moments) would end elsewhere.
    restarted = reference(
        reference(initial, steps=worker.STEPS, learning_rate=0.01, adam=True),
        steps=total - worker.STEPS,
        learning_rate=0.01,
        adam=True,
    )
    difference = max(np.abs(a - b).max() for a, b in zip(restarted, expected))
    assert difference > 1e-3 * max(np.abs(e).max() for e in expected)
