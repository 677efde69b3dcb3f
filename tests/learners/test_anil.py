"""ANIL: only the head adapts; meta-gradient against a float64 reference
written with raw TensorFlow ops (no Keras, no keras_meta)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    assert_exports_serve,
    assert_learns_cluster_tasks,
    assert_resumes_identically,
    ce,
    cluster_tasks,
    dense_net,
    episode_list,
    mlp_forward,
    reference_meta_loss,
    save_and_load,
    sparse_ce,
)

import keras_meta as km


def classifier():
    return dense_net(8, 5, (32,), names=["body", "head"])


# ---------------------------------------------------------------------------
# Inner loop and meta-gradient.
# ---------------------------------------------------------------------------
def test_adapt_changes_only_the_head():
    x, y = cluster_tasks(1, seed=0, shots=2)
    model = classifier()
    learner = km.ANIL(model, head="head", inner_learning_rate=0.5, inner_steps=3)
    learner.compile(optimizer="adam", loss=ce())
    adapted = learner.adapt(x["support_x"][0], x["support_y"][0])
    for original, new in zip(model.get_layer("body").weights, adapted.get_layer("body").weights):
        np.testing.assert_array_equal(original.numpy(), new.numpy())
    for original, new in zip(model.get_layer("head").weights, adapted.get_layer("head").weights):
        assert np.abs(original.numpy() - new.numpy()).max() > 1e-3


@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradient_matches_reference(float64, first_order):
    rng = np.random.default_rng(1)
    model = dense_net(4, 3, (6, 6), ("tanh", "relu"), names=[None, None, "classifier"])
    learner = km.ANIL(model, "classifier", 0.3, 2, first_order=first_order)
    learner.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss=ce())
    b, ways, shots = 2, 3, 2
    labels = np.tile(np.arange(ways).repeat(shots), (b, 1)).astype("int32")
    x = {
        "support_x": rng.normal(size=(b, ways * shots, 4)),
        "support_y": labels,
        "query_x": rng.normal(size=(b, ways * shots, 4)),
    }
    episodes = episode_list(x, labels)
    w = [tf.constant(v.numpy()) for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        tape.watch(w)
        # The reference adapts only the head, w[4] and w[5].
        loss = reference_meta_loss(
            mlp_forward, sparse_ce, w, episodes, 0.3, 2, first_order, adapted=[4, 5]
        )
    expected = tape.gradient(loss, w)

    before = [v.numpy().copy() for v in model.trainable_variables]
    learner.train_on_batch(x, labels)
    got = [b_ - v.numpy() for b_, v in zip(before, model.trainable_variables)]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e.numpy(), rtol=1e-9, atol=1e-12)
    # The body is meta-trained through the head's adaptation.
    assert np.abs(got[0]).max() > 1e-6


# ---------------------------------------------------------------------------
# Learning, persistence, export.
# ---------------------------------------------------------------------------
def test_anil_learns_round_trips_and_exports(tmp_path):
    learner = km.ANIL(classifier(), head=["head"], inner_learning_rate=0.5, inner_steps=1)
    learner.compile(optimizer=keras.optimizers.Adam(3e-3), loss=ce(), metrics=["accuracy"])
    assert_learns_cluster_tasks(learner)

    loaded = save_and_load(learner, tmp_path / "anil.keras")
    assert isinstance(loaded, km.ANIL)
    assert loaded.head == ["head"]
    assert "adapt_layers" not in loaded.get_config()
    x, y = cluster_tasks(4, seed=2)
    assert_resumes_identically(learner, loaded, x, y)
    assert_exports_serve(learner, x, tmp_path)


@pytest.mark.parametrize(
    "head, kwargs, error, match",
    [
        (None, {}, ValueError, "`head` to be a layer name"),
        ([], {}, ValueError, "`head` to be a layer name"),
        ([3], {}, ValueError, "`head` to be a layer name"),
        ("nope", {}, ValueError, "names layers \\['nope'\\]"),
        ("head", {"adapt_layers": ["body"]}, TypeError, "as `head`, not `adapt_layers`"),
        ("head", {"inner_steps": 0}, ValueError, "`inner_steps` must be an integer >= 1"),
    ],
)
def test_argument_validation(head, kwargs, error, match):
    with pytest.raises(error, match=match):
        km.ANIL(classifier(), head, **kwargs)


def test_predicate_head_works_but_does_not_serialise():
    learner = km.ANIL(classifier(), head=lambda layer: layer.name == "head")
    assert learner.adapted_mask() == [False, False, True, True]
    with pytest.raises(ValueError, match="predicate cannot be serialised"):
        learner.get_config()
