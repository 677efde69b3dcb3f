"""`learner.export`: episodes of other sizes than in training, and errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import ce, cluster_tasks, noisy_cluster_tasks, relu_mlp

import keras_meta as km


def served_and_predicted(meta, learner, x):
    """`adapt_and_predict` of the export and `learner.predict` on episode 0 of `x`."""
    out = meta.adapt_and_predict(x["support_x"][0], x["support_y"][0], x["query_x"][0])
    return out.numpy(), learner.predict({k: v[:1] for k, v in x.items()}, verbose=0)[0]


def test_maml_export_adapts_to_other_support_sizes_and_fewer_ways(tmp_path):
    learner = km.MAML(relu_mlp(8, 16, 5), inner_learning_rate=0.4, inner_steps=2)
    learner.compile(optimizer=keras.optimizers.Adam(1e-2), loss=ce())
    learner.fit(*cluster_tasks(8, seed=1, shots=1), batch_size=4, verbose=0)  # 5-way 1-shot
    learner.export(str(tmp_path / "meta"), verbose=False)
    meta = tf.saved_model.load(str(tmp_path / "meta"))
    for ways, shots, queries in [(5, 1, 5), (5, 3, 2), (3, 2, 4)]:
        x, _ = cluster_tasks(1, seed=2, ways=ways, shots=shots, queries=queries)
        served, predicted = served_and_predicted(meta, learner, x)
        assert served.shape == (ways * queries, 5)
        np.testing.assert_allclose(served, predicted, rtol=1e-5, atol=1e-5)


def test_protonet_export_adapts_to_other_numbers_of_ways_and_shots(tmp_path):
    learner = km.ProtoNet(relu_mlp())
    learner.compile(optimizer=keras.optimizers.Adam(1e-2))
    learner.fit(*noisy_cluster_tasks(8, seed=1), batch_size=4, verbose=0)  # 5-way 1-shot
    learner.export(str(tmp_path / "meta"), verbose=False)
    meta = tf.saved_model.load(str(tmp_path / "meta"))
    for ways, shots in [(3, 1), (7, 2)]:
        x, _ = noisy_cluster_tasks(1, seed=2, ways=ways, shots=shots)
        served, predicted = served_and_predicted(meta, learner, x)
        assert served.shape == (ways * 5, ways)
        np.testing.assert_allclose(served, predicted, rtol=1e-5, atol=1e-5)


def test_export_errors(tmp_path):
    unseen = km.MAML(relu_mlp(8, 16, 5), inner_learning_rate=0.4)
    unseen.compile(loss=ce())
    with pytest.raises(ValueError, match="has not seen an episode yet.*input_shape="):
        unseen.export(str(tmp_path / "a"), verbose=False)
    with pytest.raises(ValueError, match="format='tf_saved_model' only"):
        unseen.export(str(tmp_path / "b"), format="keras", verbose=False)
    uncompiled = km.MAML(relu_mlp(8, 16, 5), inner_learning_rate=0.4)
    with pytest.raises(RuntimeError, match="no loss yet"):
        uncompiled.export(str(tmp_path / "c"), input_shape=(8,), verbose=False)
    assert not any((tmp_path / name).exists() for name in "abc")

    # With input_shape=, a learner that has seen no episode exports and serves.
    unseen.export(str(tmp_path / "d"), input_shape=(8,), verbose=False)
    meta = tf.saved_model.load(str(tmp_path / "d"))
    x, _ = cluster_tasks(1, seed=3)
    served, predicted = served_and_predicted(meta, unseen, x)
    np.testing.assert_allclose(served, predicted, rtol=1e-5, atol=1e-5)

    # The served endpoint checks its inputs: the feature shape, the label
    # range of the model's outputs.
    sx, sy, qx = x["support_x"][0], x["support_y"][0], x["query_x"][0]
    with pytest.raises((ValueError, TypeError)):
        meta.adapt_and_predict(sx[:, :3], sy, qx)
    # The learner's own range check (before, TF's loss kernel on CPU only).
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels in `support_y` must be < 5"):
        meta.adapt_and_predict(sx, sy + 5, qx)


def test_protonet_export_needs_every_class_in_the_support_set(tmp_path):
    learner = km.ProtoNet(relu_mlp())  # adapts without a loss: no compile needed
    learner.export(str(tmp_path / "meta"), input_shape=(8,), verbose=False)
    meta = tf.saved_model.load(str(tmp_path / "meta"))
    x, _ = noisy_cluster_tasks(1, seed=4)
    sx, sy, qx = x["support_x"][0], x["support_y"][0], x["query_x"][0]
    assert meta.adapt_and_predict(sx, sy, qx).shape == (25, 5)
    missing = np.where(sy == 3, 0, sy)  # no example of class 3, but class 4
    with pytest.raises(tf.errors.InvalidArgumentError, match="needs a support example"):
        meta.adapt_and_predict(sx, missing, qx)
