"""keras_meta.distribute in one process: argument checks, the split of the
episode stream under MirroredStrategy (two logical CPUs, see conftest.py),
and an exact resume from a backup. The two-worker runs are in
test_multi_worker.py."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import mirrored_strategy

import keras_meta as km
from keras_meta import distribute

SEED = 5


def stream(n_batches, batch, start=0):
    ds = km.data.sinusoid(shots=3, queries=4, seed=SEED).batch(batch).skip(start)
    return [y.numpy() for _, y in ds.take(n_batches)]


def test_make_strategy_rejects_an_unknown_name():
    with pytest.raises(ValueError, match=r"`name` must be one of .*received name='tpu'"):
        distribute.make_strategy("tpu")


def test_tf_config_errors_name_what_is_wrong(monkeypatch):
    # Checked before TensorFlow is asked for the strategy, so this runs in-process.
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG environment variable, which is not set"):
        distribute.make_strategy("multi-worker")
    for text, message in [
        ("{not json", "TF_CONFIG must be JSON"),
        ('{"cluster": {"worker": ["a:1"]}}', 'must have a "cluster" and a "task"'),
        ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "job 'ps'"),
        ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "'chief'"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', r"\[0, 1\)"),
    ]:
        monkeypatch.setenv("TF_CONFIG", text)
        with pytest.raises(ValueError, match=message):
            distribute.make_strategy("multi-worker")


def test_global_batch_size_must_divide_between_the_replicas():
    strategy = mirrored_strategy()
    with pytest.raises(ValueError, match=r"multiple of the number of replicas \(2.*=3\."):
        distribute.distribute_episodes(strategy, km.data.sinusoid(seed=0), 3)
    with pytest.raises(ValueError, match="global_batch_size"):
        distribute.distribute_episodes(strategy, km.data.sinusoid(seed=0), 0)
    with pytest.raises(ValueError, match="initial_step"):
        distribute.distribute_episodes(strategy, km.data.sinusoid(seed=0), 2, initial_step=-1)
    with pytest.raises(TypeError, match="`episodes` must be a callable"):
        distribute.distribute_episodes(strategy, [1, 2], 2)


def test_without_a_strategy_the_batches_are_the_stream():
    strategy = distribute.make_strategy("none")
    data = distribute.distribute_episodes(
        strategy, km.data.sinusoid(shots=3, queries=4, seed=SEED), 4
    )
    got = [y.numpy() for _, y in data.take(3)]
    for g, e in zip(got, stream(3, 4), strict=True):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("factory", [False, True])
def test_mirrored_replicas_split_each_global_batch(factory):
    strategy = mirrored_strategy()
    episodes = lambda: km.data.sinusoid(shots=3, queries=4, seed=SEED)  # noqa: E731
    data = distribute.distribute_episodes(
        strategy, episodes if factory else episodes(), 4, initial_step=2
    )
    expected = stream(3, 4, start=2)
    for step, (_, y) in zip(range(3), data):
        halves = [t.numpy() for t in strategy.experimental_local_results(y)]
        assert len(halves) == 2
        np.testing.assert_array_equal(np.concatenate(halves), expected[step])


def make_learner():
    keras.utils.set_random_seed(SEED)
    net = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(8, "tanh"), keras.layers.Dense(1)]
    )
    learner = km.MAML(net, inner_learning_rate=0.05, inner_steps=1)
    learner.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return learner


class StopAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("crash")


# Four traced learners: about 25 s.
@pytest.mark.slow
def test_resume_from_a_backup_ends_on_the_uninterrupted_weights(tmp_path):
    strategy = distribute.make_strategy("none")
    epochs, steps = 3, 2
    episodes = km.data.sinusoid(shots=3, queries=4, seed=SEED)

    def train(learner, backup, extra=()):
        start = distribute.resume_step(strategy, backup, steps)
        data = distribute.distribute_episodes(strategy, episodes, 2, initial_step=start)
        learner.fit(
            data, epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=[backup, *extra]
        )
        return start

    uninterrupted = make_learner()
    train(uninterrupted, distribute.worker_backup(strategy, tmp_path / "a"))

    backup_dir = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        train(make_learner(), distribute.worker_backup(strategy, backup_dir), [StopAt(2)])
    assert json.loads((backup_dir / "training_metadata.json").read_text())["epoch"] == 2
    resumed = make_learner()
    assert train(resumed, distribute.worker_backup(strategy, backup_dir)) == 2 * steps
    for a, b in zip(resumed.trainable_variables, uninterrupted.trainable_variables, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)

    # The comparison has power: resuming without the step offset ends elsewhere.
    with pytest.raises(KeyboardInterrupt):
        train(make_learner(), distribute.worker_backup(strategy, tmp_path / "c"), [StopAt(2)])
    wrong = make_learner()
    data = distribute.distribute_episodes(strategy, episodes, 2)
    wrong.fit(
        data,
        epochs=epochs,
        steps_per_epoch=steps,
        verbose=0,
        callbacks=[distribute.worker_backup(strategy, tmp_path / "c")],
    )
    difference = max(
        np.abs(a.numpy() - b.numpy()).max()
        for a, b in zip(wrong.trainable_variables, uninterrupted.trainable_variables)
    )
    assert difference > 1e-4


def test_resume_step_reports_an_unreadable_backup(tmp_path):
    strategy = distribute.make_strategy("none")
    backup = distribute.worker_backup(strategy, tmp_path)
    assert distribute.resume_step(strategy, backup, 10) == 0
    (tmp_path / "training_metadata.json").write_text('{"epo')
    with pytest.raises(ValueError, match=r"training_metadata.json is unreadable .*delete"):
        distribute.resume_step(strategy, backup, 10)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        distribute.resume_step(strategy, backup, 0)


def test_the_default_strategy_is_one_chief_worker():
    strategy = distribute.make_strategy("none")
    assert distribute.is_chief(strategy)
    assert distribute.worker_index(strategy) == 0
    assert tf.distribute.get_strategy() is strategy
