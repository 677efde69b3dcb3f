"""Tests of km.evaluate, the MetaEvaluation callback and the plots."""

import csv
import glob
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import ce, np_cross_entropy, np_softmax

import keras_meta as km
from keras_meta.callbacks import MetaEvaluation, ScalarLogger, tensorboard_installed
from keras_meta.evaluation import confidence_interval
from keras_meta.plots import plot_history, read_history

WAYS, SHOTS, QUERIES, DIM = 3, 2, 4, 5
ALPHA = 0.5


def _classification_data(seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(12, DIM))
    y = np.repeat(np.arange(12), 8)
    x = (centers[y] + 0.7 * rng.normal(size=(len(y), DIM))).astype("float32")
    return x, y


def _linear_maml(num_outputs, loss, metrics, eval_inner_steps=1):
    net = keras.Sequential([keras.Input((DIM,)), keras.layers.Dense(num_outputs, name="linear")])
    learner = km.MAML(
        net,
        inner_learning_rate=ALPHA,
        inner_steps=1,
        eval_inner_steps=eval_inner_steps,
    )
    learner.compile(optimizer="sgd", loss=loss, metrics=metrics)
    return learner


def _numpy_classification_episode(w, b, x, y):
    """One inner SGD step of a linear softmax classifier, then query metrics."""
    sx, sy, qx = (x[k].astype(np.float64) for k in ("support_x", "support_y", "query_x"))
    sy = x["support_y"]
    onehot = np.eye(WAYS)[sy]
    residual = np_softmax(sx @ w + b) - onehot
    w = w - ALPHA * sx.T @ residual / len(sx)
    b = b - ALPHA * residual.mean(axis=0)
    logits = qx @ w + b
    loss = np_cross_entropy(logits, y)
    accuracy = (logits.argmax(-1) == y).mean()
    return loss, accuracy


def _linear_classifier(eval_inner_steps=1):
    return _linear_maml(WAYS, ce(), ["accuracy"], eval_inner_steps=eval_inner_steps)


def _classifier_and_episodes(seed, num_episodes):
    """A linear MAML classifier and `num_episodes` test episodes."""
    x, y = _classification_data()
    episodes = km.data.episodes(
        x, y, ways=WAYS, shots=SHOTS, queries=QUERIES, seed=seed, num_episodes=num_episodes
    )
    return _linear_classifier(), episodes


def test_classification_matches_hand_computation():
    learner, episodes = _classifier_and_episodes(seed=3, num_episodes=40)
    w, b = (v.numpy().astype(np.float64) for v in learner.model.weights)

    results = km.evaluate(learner, episodes, num_episodes=40, return_per_episode=True)

    expected = np.array(
        [_numpy_classification_episode(w, b, ex, ey) for ex, ey in episodes.as_numpy_iterator()]
    )
    losses, accuracies = expected[:, 0], expected[:, 1]
    np.testing.assert_allclose(results["per_episode"]["loss"], losses, rtol=1e-4)
    np.testing.assert_allclose(results["per_episode"]["accuracy"], accuracies, atol=1e-6)
    # Mean and CI by hand: 1.96 * population std / sqrt(n).
    assert results["accuracy"] == pytest.approx(accuracies.mean(), abs=1e-6)
    assert results["accuracy_ci95"] == pytest.approx(
        1.96 * accuracies.std() / math.sqrt(40), abs=1e-6
    )
    assert results["loss"] == pytest.approx(losses.mean(), rel=1e-4)
    assert results["loss_ci95"] == pytest.approx(1.96 * losses.std() / math.sqrt(40), rel=1e-3)
    assert results["num_episodes"] == 40
    assert results["bn_mode"] == "transductive"
    assert results["inner_steps"] == 1
    # Per-episode accuracies vary, so the CI is a real spread.
    assert results["accuracy_ci95"] > 0


def test_regression_matches_hand_computation():
    episodes = km.data.linear_regression(dim=DIM, shots=6, queries=7, seed=0, num_episodes=30)
    learner = _linear_maml(1, "mse", ["mae"])
    w, b = (v.numpy().astype(np.float64) for v in learner.model.weights)
    expected = []
    for x, qy in episodes.as_numpy_iterator():
        sx, sy, qx = x["support_x"], x["support_y"], x["query_x"]
        r = sx @ w + b - sy
        w1 = w - ALPHA * 2 * sx.T @ r / r.size
        b1 = b - ALPHA * 2 * r.mean(axis=0)
        err = qx @ w1 + b1 - qy
        expected.append(((err**2).mean(), np.abs(err).mean()))
    expected = np.array(expected)

    results = km.evaluate(learner, episodes, num_episodes=30)

    for i, name in enumerate(["loss", "mae"]):
        assert results[name] == pytest.approx(expected[:, i].mean(), rel=1e-4)
        assert results[name + "_ci95"] == pytest.approx(
            1.96 * expected[:, i].std() / math.sqrt(30), rel=1e-3
        )


@pytest.fixture
def classifier_and_episodes():
    return _classifier_and_episodes(seed=5, num_episodes=24)


def test_batched_input_and_batch_size_give_the_same_results(classifier_and_episodes):
    learner, episodes = classifier_and_episodes
    single = km.evaluate(learner, episodes, num_episodes=24, batch_size=16)
    batched = km.evaluate(learner, episodes.batch(5), num_episodes=24, batch_size=7)
    for key in ("loss", "loss_ci95", "accuracy", "accuracy_ci95"):
        assert batched[key] == pytest.approx(single[key], rel=1e-6)
    # The same mean as Keras's own evaluate over the same episodes.
    keras_results = learner.evaluate(episodes.batch(24), verbose=0, return_dict=True)
    assert single["accuracy"] == pytest.approx(keras_results["accuracy"], abs=1e-6)
    assert single["loss"] == pytest.approx(keras_results["loss"], rel=1e-5)


def test_too_few_episodes_is_an_error(classifier_and_episodes):
    learner, episodes = classifier_and_episodes
    with pytest.raises(ValueError, match="24 episodes, fewer than num_episodes=25"):
        km.evaluate(learner, episodes, num_episodes=25)
    # Unknown cardinality: found out while iterating.
    filtered = episodes.filter(lambda x, y: True)
    with pytest.raises(ValueError, match="yielded only 24 episodes"):
        km.evaluate(learner, filtered, num_episodes=25)
    with pytest.raises(ValueError, match="num_episodes"):
        km.evaluate(learner, episodes, num_episodes=0)


def test_overrides_timing_and_uncompiled_learner(classifier_and_episodes):
    learner, episodes = classifier_and_episodes
    three = km.evaluate(
        learner,
        episodes,
        num_episodes=24,
        inner_steps=3,
        bn_mode="running",
        time_adaptation=True,
    )
    assert three["inner_steps"] == 3 and three["bn_mode"] == "running"
    assert three["adaptation_seconds"] > 0
    # The overrides are temporary.
    assert learner.eval_inner_steps == 1 and learner.bn_mode == "transductive"
    reference = _linear_classifier(eval_inner_steps=3)
    reference.set_weights(learner.get_weights())
    expected = km.evaluate(reference, episodes, num_episodes=24)
    assert three["loss"] == pytest.approx(expected["loss"], rel=1e-6)

    net = keras.Sequential([keras.Input((DIM,)), keras.layers.Dense(WAYS)])
    with pytest.raises(RuntimeError, match="compile"):
        km.evaluate(km.MAML(net), episodes, num_episodes=4)


def test_confidence_interval():
    mean, half = confidence_interval([0.0, 1.0, 0.0, 1.0])
    assert (mean, half) == (0.5, pytest.approx(0.49))
    with pytest.raises(ValueError):
        confidence_interval([])


def _event_tags(folder):
    tags = {}
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for raw in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(raw.numpy())
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


def test_meta_evaluation_callback_logs_everywhere(tmp_path, classifier_and_episodes):
    learner, val = classifier_and_episodes
    x, y = _classification_data(seed=1)
    train = km.data.episodes(x, y, ways=WAYS, shots=SHOTS, queries=QUERIES, seed=0)
    callbacks = [
        MetaEvaluation(val, num_episodes=12, log_dir=tmp_path / "me"),
        keras.callbacks.CSVLogger(str(tmp_path / "history.csv")),
        ScalarLogger(tmp_path / "tb"),
    ]
    if tensorboard_installed():
        callbacks.append(keras.callbacks.TensorBoard(str(tmp_path / "keras_tb"), write_graph=False))
    history = learner.fit(
        train.batch(4),
        epochs=2,
        steps_per_epoch=3,
        callbacks=callbacks,
        verbose=0,
        shuffle=False,
    )

    for key in ("val_loss", "val_accuracy", "val_accuracy_ci95", "val_loss_ci95"):
        assert len(history.history[key]) == 2
    expected = km.evaluate(learner, val, num_episodes=12)
    assert history.history["val_accuracy"][-1] == pytest.approx(expected["accuracy"])
    with open(tmp_path / "history.csv") as f:
        header = next(csv.reader(f))
    assert "val_accuracy_ci95" in header
    assert _event_tags(tmp_path / "me" / "meta_evaluation")["meta_evaluation/accuracy"] == [0, 1]
    assert _event_tags(tmp_path / "tb" / "validation")["epoch_accuracy_ci95"] == [0, 1]
    assert "epoch_loss" in _event_tags(tmp_path / "tb" / "train")
    if tensorboard_installed():
        tags = _event_tags(tmp_path / "keras_tb" / "validation")
        assert "epoch_accuracy_ci95" in tags

    plot_history(tmp_path / "history.csv", tmp_path / "curves.png", steps_per_epoch=3)
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert read_history(tmp_path / "history.csv")["epoch"] == [0.0, 1.0]


def test_meta_evaluation_frequency(classifier_and_episodes):
    learner, val = classifier_and_episodes
    x, y = _classification_data(seed=1)
    train = km.data.episodes(x, y, ways=WAYS, shots=SHOTS, queries=QUERIES, seed=0)
    history = learner.fit(
        train.batch(2),
        epochs=3,
        steps_per_epoch=1,
        verbose=0,
        shuffle=False,
        callbacks=[MetaEvaluation(val, num_episodes=4, frequency=2)],
    )
    # Evaluated at epoch 2 and at the last epoch (3), not at epoch 1.
    assert "val_loss" in history.history
    assert len(history.history["val_loss"]) == 2
    with pytest.raises(TypeError, match="Unknown arguments"):
        MetaEvaluation(val, num_episodes=4, episodes_per_batch=3)
