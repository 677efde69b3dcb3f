"""`learner.adapt(..., batch_norm=...)`: the adapted model predicts what the learner does.

The reference for each choice is the learner's own prediction on the same
episode (`learner.predict`), and, for the support statistics, the batch
moments of the BatchNorm's input recomputed in numpy.
"""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import ce

import keras_meta as km
from keras_meta.adapted import TransductiveModel


def conv_net(outputs=3):
    return keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv2D(4, 3, strides=2, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            keras.layers.Dense(outputs, name="head"),
        ]
    )


LEARNERS = {
    "maml": lambda bn: km.MAML(conv_net(), 0.3, inner_steps=2, bn_mode=bn),
    "anil": lambda bn: km.ANIL(conv_net(), head="head", inner_learning_rate=0.3, bn_mode=bn),
    "reptile": lambda bn: km.Reptile(conv_net(), 0.1, inner_steps=2, bn_mode=bn),
    "meta_sgd": lambda bn: km.MetaSGD(conv_net(), 0.1, bn_mode=bn),
    "protonet": lambda bn: km.ProtoNet(conv_net(5), bn_mode=bn),
    "r2d2": lambda bn: km.R2D2(conv_net(5), bn_mode=bn),
}


def episode(seed=0, queries=9):
    rng = np.random.default_rng(seed)
    sx = rng.normal(size=(6, 6, 6, 1)).astype("float32")
    sy = np.array([0, 1, 2, 0, 1, 2], "int32")
    qx = rng.normal(size=(queries, 6, 6, 1)).astype("float32")
    return sx, sy, qx


def make_learner(name, bn_mode):
    learner = LEARNERS[name](bn_mode)
    learner.compile(optimizer="sgd", loss=ce())
    # Moving statistics far from the batch statistics, so that a model that
    # used the wrong ones would be seen.
    for v in learner.model.non_trainable_variables:
        v.assign(v + 0.5)
    return learner


def learner_predict(learner, sx, sy, qx):
    x = {"support_x": sx[None], "support_y": sy[None], "query_x": qx[None]}
    return learner.predict(x, verbose=0)[0]


@pytest.mark.parametrize("name", sorted(LEARNERS))
@pytest.mark.parametrize("bn_mode", ["transductive", "running"])
def test_default_adapted_model_predicts_as_the_learner(name, bn_mode):
    learner = make_learner(name, bn_mode)
    # More queries than Keras's default predict batch (32).
    sx, sy, qx = episode(queries=40)
    adapted = learner.adapt(sx, sy)
    assert isinstance(adapted, TransductiveModel) == (bn_mode == "transductive")
    np.testing.assert_allclose(
        adapted.predict(qx, verbose=0), learner_predict(learner, sx, sy, qx), atol=2e-5
    )
    # The learner is unchanged.
    np.testing.assert_allclose(learner.model.non_trainable_variables[0].numpy(), 0.5)


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_support_statistics_model_is_the_learner_on_its_support_set(name):
    learner = make_learner(name, "transductive")
    sx, sy, qx = episode()
    adapted = learner.adapt(sx, sy, batch_norm="support")
    # On a query batch equal to the support set the learner normalises with
    # exactly the statistics that the model stores.
    np.testing.assert_allclose(
        adapted.predict(sx, verbose=0), learner_predict(learner, sx, sy, sx), atol=2e-5
    )
    # ... and the model is a per-example inference model.
    np.testing.assert_allclose(
        adapted.predict(qx[:1], verbose=0), adapted.predict(qx, verbose=0)[:1], atol=1e-5
    )


@pytest.mark.parametrize("name", ["maml", "protonet"])
def test_transductive_adapted_model_normalises_with_its_batch(name):
    learner = make_learner(name, "transductive")
    sx, sy, qx = episode()
    adapted = learner.adapt(sx, sy, batch_norm="transductive")
    expected = learner_predict(learner, sx, sy, qx)
    np.testing.assert_allclose(np.asarray(adapted(qx)), expected, atol=2e-5)
    # Batches given explicitly are normalised each on their own.
    halves = adapted.predict(qx, batch_size=5, verbose=0)
    np.testing.assert_allclose(halves[:5], np.asarray(adapted(qx[:5])), atol=2e-5)
    assert not np.allclose(halves, expected, atol=1e-3)
    # Nothing is updated by calls.
    before = [v.numpy() for v in adapted.non_trainable_variables]
    adapted(qx, training=True)
    for a, v in zip(before, adapted.non_trainable_variables):
        np.testing.assert_array_equal(a, v.numpy())


@pytest.mark.parametrize("name", ["maml", "protonet"])
def test_running_adapted_model_of_a_transductive_learner_uses_the_moving_statistics(name):
    learner = make_learner(name, "transductive")
    sx, sy, qx = episode()
    adapted = learner.adapt(sx, sy, batch_norm="running")
    for a, b in zip(adapted.non_trainable_variables, learner.model.non_trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_support_statistics_are_the_batch_moments_at_the_adapted_weights():
    net = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4), keras.layers.BatchNormalization(),
         keras.layers.Dense(3)]
    )
    learner = km.MAML(net, 0.3, inner_steps=1)
    learner.compile(optimizer="sgd", loss=ce())
    sx, sy = np.random.default_rng(1).normal(size=(6, 3)).astype("float32"), np.arange(6) % 3
    adapted = learner.adapt(sx, sy.astype("int32"), batch_norm="support")
    dense, bn = adapted.layers[0], adapted.layers[1]
    h = sx.astype("float64") @ dense.kernel.numpy() + dense.bias.numpy()
    np.testing.assert_allclose(bn.moving_mean.numpy(), h.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), h.var(0), rtol=1e-4, atol=1e-6)
    # The adapted kernel is not the meta-learned one: the statistics are
    # those of the adapted weights.
    assert not np.allclose(dense.kernel.numpy(), learner.model.layers[0].kernel.numpy())


@pytest.mark.parametrize("name", ["maml", "protonet"])
@pytest.mark.parametrize("batch_norm", ["support", "transductive"])
def test_adapted_savedmodel_and_keras_file_predict_as_the_keras_model(tmp_path, name, batch_norm):
    learner = make_learner(name, "transductive")
    sx, sy, qx = episode(queries=40)
    adapted = learner.adapt(sx, sy, batch_norm=batch_norm)
    expected = adapted.predict(qx, verbose=0)
    adapted.export(str(tmp_path / "adapted"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "adapted"))
    np.testing.assert_allclose(served.serve(qx).numpy(), expected, atol=1e-5)
    adapted.save(tmp_path / "adapted.keras")
    loaded = keras.saving.load_model(tmp_path / "adapted.keras")
    np.testing.assert_allclose(loaded.predict(qx, verbose=0), expected, atol=1e-5)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("name", ["maml", "protonet"])
def test_adapting_many_tasks_traces_predict_once(name):
    learner = make_learner(name, "transductive")
    records = _Records()
    tf.get_logger().addHandler(records)
    try:
        for seed in range(10):
            sx, sy, qx = episode(seed, queries=9 + seed % 3)
            adapted = learner.adapt(sx, sy)
            out = adapted.predict(qx, verbose=0)
            np.testing.assert_allclose(out, np.asarray(adapted(qx)), atol=1e-5)
    finally:
        tf.get_logger().removeHandler(records)
    assert not [m for m in records.messages if "retracing" in m], records.messages


def test_adapted_models_of_different_tasks_are_independent():
    learner = make_learner("maml", "transductive")
    a = learner.adapt(*episode(0)[:2])
    sx, sy, qx = episode(1)
    b = learner.adapt(sx, sy)
    before = a.predict(qx, verbose=0)
    assert not np.allclose(before, b.predict(qx, verbose=0))
    np.testing.assert_allclose(a.predict(qx, verbose=0), before)


def test_batch_norm_argument_is_checked():
    learner = make_learner("maml", "transductive")
    sx, sy, _ = episode()
    with pytest.raises(ValueError, match="batch_norm.*'support'.*received batch_norm='moving'"):
        learner.adapt(sx, sy, batch_norm="moving")
