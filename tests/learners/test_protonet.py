"""ProtoNet against numpy references; learning, persistence and export."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    assert_exports_serve,
    assert_learns_noisy_clusters,
    assert_matches_central_differences,
    assert_same_config,
    linear_embedding,
    noisy_cluster_tasks,
    np_cross_entropy,
    relu_mlp,
    save_and_load,
    small_episodes,
)

import keras_meta as km
from keras_meta.learners.protonet import PrototypeClassifier, prototypes

# Support labels of `small_episodes`, in no particular order.
SUPPORT_Y = [2, 0, 1, 1, 0, 2]


# ---------------------------------------------------------------------------
# Independent numpy references.
# ---------------------------------------------------------------------------
def np_logits(kernel, sx, sy, qx, distance="euclidean", scale=1.0):
    s, q = sx @ kernel, qx @ kernel
    ways = sy.max() + 1
    protos = np.stack([s[sy == c].mean(0) for c in range(ways)])
    if distance == "euclidean":
        return -scale * ((q[:, None, :] - protos[None]) ** 2).sum(-1)
    qn = q / np.linalg.norm(q, axis=-1, keepdims=True)
    pn = protos / np.linalg.norm(protos, axis=-1, keepdims=True)
    return scale * qn @ pn.T


def np_meta_loss(kernel, x, y, distance, scale):
    return np.mean(
        [
            np_cross_entropy(
                np_logits(
                    kernel, x["support_x"][b], x["support_y"][b], x["query_x"][b], distance, scale
                ),
                y[b],
            )
            for b in range(len(y))
        ]
    )


# ---------------------------------------------------------------------------
# Logits and gradients.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "distance, scale", [("euclidean", None), ("euclidean", 0.5), ("cosine", 5.0)]
)
def test_logits_match_numpy(distance, scale):
    kernel = np.random.default_rng(1).normal(size=(3, 4)).astype("float32")
    x, _ = small_episodes(support_labels=SUPPORT_Y)
    learner = km.ProtoNet(linear_embedding(kernel), distance=distance, scale=scale)
    learner.compile(optimizer="sgd")
    expected_scale = scale if scale is not None else 1.0
    preds = learner.predict(x, verbose=0)
    assert preds.shape == (2, 4, 3)
    for b in range(2):
        ref = np_logits(
            kernel, x["support_x"][b], x["support_y"][b], x["query_x"][b], distance, expected_scale
        )
        np.testing.assert_allclose(preds[b], ref, rtol=1e-5, atol=1e-5)
    adapted = learner.adapt(x["support_x"][0], x["support_y"][0])
    np.testing.assert_allclose(
        adapted.predict(x["query_x"][0], verbose=0), preds[0], rtol=1e-5, atol=1e-5
    )


def test_prototypes_are_class_means():
    emb = np.array([[0.0, 0.0], [2.0, 4.0], [5.0, 5.0], [1.0, 1.0]], "float32")
    protos = prototypes(emb, np.array([0, 0, 1, 2]), 3)
    np.testing.assert_allclose(protos, [[1.0, 2.0], [5.0, 5.0], [1.0, 1.0]])


@pytest.mark.parametrize("distance, learn_scale", [("euclidean", False), ("cosine", True)])
def test_meta_gradient_matches_finite_differences(distance, learn_scale):
    # With SGD(1.0), one train_on_batch moves each weight by minus the
    # gradient of the mean query loss over the B episodes.
    kernel = np.random.default_rng(2).normal(size=(3, 4)).astype("float32") * 0.5
    x, y = small_episodes(seed=3, support_labels=SUPPORT_Y)
    learner = km.ProtoNet(
        linear_embedding(kernel), distance=distance, scale=2.0, learn_scale=learn_scale
    )
    learner.compile(optimizer=keras.optimizers.SGD(1.0))
    learner.train_on_batch(x, y)
    grad_kernel = kernel - learner.model.layers[0].kernel.numpy()

    k64 = kernel.astype("float64")
    assert_matches_central_differences(
        lambda v: np_meta_loss(v[0], x, y, distance, 2.0),
        [k64],
        [grad_kernel],
        rtol=1e-3,
        atol=1e-4,
    )
    if learn_scale:
        assert_matches_central_differences(
            lambda v: np_meta_loss(k64, x, y, distance, v[0]),
            [2.0],
            [2.0 - learner.scale],
            rtol=1e-3,
            atol=1e-5,
        )


def test_meta_training_embeds_support_and_query_as_one_batch():
    # As in Snell et al.'s code: BatchNorm statistics in meta-training cover
    # the support and the query set of the episode together.
    x, y = noisy_cluster_tasks(1, ways=3, shots=2, queries=2, seed=11)
    net = relu_mlp(batchnorm=True)
    learner = km.ProtoNet(net)
    learner.compile(optimizer="sgd")
    learner.predict(x, verbose=0)
    episode = learner._unpack(x, y).episode(0)
    loss, logits, _ = learner.episode_loss(episode, learner.model_state())
    both = np.concatenate([x["support_x"][0], x["query_x"][0]])
    emb = net(both, training=True).numpy()
    identity = np.eye(emb.shape[1], dtype="float32")
    ref = np_logits(identity, emb[:6], x["support_y"][0], emb[6:])
    np.testing.assert_allclose(logits.numpy(), ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(float(loss), np_cross_entropy(ref, y[0]), rtol=1e-4)


def test_transductive_evaluation_fits_the_head_on_the_support_batch_alone():
    # In transductive evaluation BatchNorm normalises the support set with its
    # own statistics and the query set with its own, so the prototypes do
    # not depend on the query batch.
    x, _ = noisy_cluster_tasks(1, ways=3, shots=2, queries=3, seed=12)
    net = relu_mlp(batchnorm=True)
    learner = km.ProtoNet(net)
    learner.compile(optimizer="sgd")
    preds = learner.predict(x, verbose=0)[0]
    sx, sy, qx = x["support_x"][0], x["support_y"][0], x["query_x"][0]
    identity = np.eye(16, dtype="float32")
    query = net(qx, training=True).numpy()
    expected = np_logits(identity, net(sx, training=True).numpy(), sy, query)
    np.testing.assert_allclose(preds, expected, rtol=1e-4, atol=1e-4)
    # Prototypes from the support and query sets embedded as one batch (as in
    # meta-training) are told apart.
    joint = net(np.concatenate([sx, qx]), training=True).numpy()[: len(sx)]
    assert np.abs(np_logits(identity, joint, sy, query) - preds).max() > 1e-2


def test_regularisation_losses_enter_the_meta_loss():
    # The embedding's weight penalties are part of the one (query) loss: fit
    # reports them and differentiates them (SGD(1.0): the step is minus the
    # gradient).
    kernel = np.random.default_rng(4).normal(size=(3, 4)).astype("float32") * 0.5
    x, y = small_episodes(seed=5, support_labels=SUPPORT_Y)
    net = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, use_bias=False, kernel_regularizer=keras.regularizers.L2(0.3)),
        ]
    )
    net.layers[0].kernel.assign(kernel)
    learner = km.ProtoNet(net)
    learner.compile(optimizer=keras.optimizers.SGD(1.0))
    logs = learner.train_on_batch(x, y, return_dict=True)
    grad_kernel = kernel - net.layers[0].kernel.numpy()

    def loss(k):
        return np_meta_loss(k, x, y, "euclidean", 1.0) + 0.3 * (k**2).sum()

    k64 = kernel.astype("float64")
    np.testing.assert_allclose(logs["loss"], loss(k64), rtol=1e-5)
    assert_matches_central_differences(
        lambda v: loss(v[0]), [k64], [grad_kernel], rtol=1e-3, atol=1e-4
    )
    # The penalty's gradient (0.6 * kernel) is far above that tolerance.
    assert np.abs(0.6 * k64).max() > 0.1


# ---------------------------------------------------------------------------
# Learning.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("shots", [1, 5])
def test_learns_few_shot_clusters(shots):
    assert_learns_noisy_clusters(km.ProtoNet, shots)


def test_xla_with_static_ways_matches_graph_mode():
    x, y = noisy_cluster_tasks(32, seed=4)
    learner = km.ProtoNet(relu_mlp(), ways=5)
    learner.compile(optimizer="adam", jit_compile=True)
    xla = learner.predict(x, batch_size=32, verbose=0)
    learner.compile(optimizer="adam", jit_compile=False)
    graph = learner.predict(x, batch_size=32, verbose=0)
    np.testing.assert_allclose(xla, graph, rtol=1e-4, atol=1e-4)


def test_infers_ways_per_batch_in_graph_mode():
    learner = km.ProtoNet(relu_mlp())
    learner.compile(optimizer="adam")
    x3, y3 = noisy_cluster_tasks(4, ways=3, seed=5)
    x3["support_y"] = x3["support_y"].astype("int64")
    x5, _ = noisy_cluster_tasks(4, ways=5, seed=5)
    assert learner.predict(x3, verbose=0).shape == (4, 15, 3)
    assert learner.predict(x5, verbose=0).shape == (4, 25, 5)
    learner.fit(x3, y3, batch_size=4, verbose=0)


def test_conv_embedding_is_flattened():
    rng = np.random.default_rng(6)
    net = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, activation="relu")])
    learner = km.ProtoNet(net)
    learner.compile(optimizer="adam")
    x = {
        "support_x": rng.normal(size=(2, 6, 6, 6, 1)).astype("float32"),
        "support_y": np.tile(np.arange(3).repeat(2), (2, 1)).astype("int32"),
        "query_x": rng.normal(size=(2, 3, 6, 6, 1)).astype("float32"),
    }
    learner.fit(x, np.tile(np.arange(3), (2, 1)), verbose=0)
    preds = learner.predict(x, verbose=0)
    adapted = learner.adapt(x["support_x"][1], x["support_y"][1])
    np.testing.assert_allclose(
        adapted.predict(x["query_x"][1], verbose=0), preds[1], rtol=1e-4, atol=1e-4
    )


# ---------------------------------------------------------------------------
# Persistence and export.
# ---------------------------------------------------------------------------
def test_keras_round_trip_resumes_exactly(tmp_path):
    x, y = noisy_cluster_tasks(32, seed=7)
    learner = km.ProtoNet(relu_mlp(batchnorm=True), distance="cosine", learn_scale=True, ways=5)
    learner.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    learner.fit(x, y, batch_size=16, epochs=1, verbose=0)
    loaded = save_and_load(learner, str(tmp_path / "protonet.keras"))
    assert isinstance(loaded, km.ProtoNet)
    assert_same_config(learner, loaded)
    batch = ({k: v[:8] for k, v in x.items()}, y[:8])
    learner.train_on_batch(*batch)
    loaded.train_on_batch(*batch)
    for a, b in zip(learner.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert loaded.scale == learner.scale


def test_saved_model_exports(tmp_path):
    x, y = noisy_cluster_tasks(32, seed=8)
    learner = km.ProtoNet(relu_mlp(batchnorm=True), bn_mode="running")
    learner.compile(optimizer=keras.optimizers.Adam(1e-2))
    learner.fit(x, y, batch_size=16, epochs=1, verbose=0)
    episode = {k: v[:1] for k, v in x.items()}
    expected = learner.predict(episode, verbose=0)[0]

    adapted, _ = assert_exports_serve(
        learner, x, tmp_path, expected, rtol=1e-5, atol=1e-5, serve_tol=(1e-6, 1e-6)
    )
    assert isinstance(adapted, keras.Model)
    np.testing.assert_allclose(
        adapted.predict(x["query_x"][0], verbose=0), expected, rtol=1e-5, atol=1e-5
    )

    # The adapted model itself also round-trips through .keras.
    adapted.save(str(tmp_path / "adapted.keras"))
    reloaded = keras.models.load_model(str(tmp_path / "adapted.keras"))
    assert isinstance(reloaded.layers[-1], PrototypeClassifier)
    np.testing.assert_allclose(
        reloaded.predict(x["query_x"][0], verbose=0), expected, rtol=1e-5, atol=1e-5
    )


# ---------------------------------------------------------------------------
# Errors.
# ---------------------------------------------------------------------------
def test_bad_arguments():
    net = relu_mlp()
    with pytest.raises(ValueError, match="distance"):
        km.ProtoNet(net, distance="manhattan")
    with pytest.raises(ValueError, match="scale"):
        km.ProtoNet(net, scale=0.0)
    with pytest.raises(TypeError, match="learn_scale"):
        km.ProtoNet(net, learn_scale="yes")
    with pytest.raises(ValueError, match="ways"):
        km.ProtoNet(net, ways=1)
    with pytest.raises(TypeError, match="keras.Model"):
        km.ProtoNet(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="XLA"):
        km.ProtoNet(net).compile(optimizer="adam", jit_compile=True)


def test_bad_episodes():
    learner = km.ProtoNet(relu_mlp(), ways=5)
    learner.compile(optimizer="adam")
    x, y = noisy_cluster_tasks(2, seed=9)
    with pytest.raises(ValueError, match="takes no `steps`"):
        learner.adapt(x["support_x"][0], x["support_y"][0], steps=1)
    with pytest.raises(ValueError, match="classifier"):
        learner.adapt(x["support_x"][0], x["support_y"][0][:, None] * 1.0)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        learner.adapt(x["support_x"][0], x["support_y"][0] + 1)
    missing = np.where(x["support_y"][0] == 3, 0, x["support_y"][0])
    with pytest.raises(ValueError, match=r"none of the classes \[3\]"):
        learner.adapt(x["support_x"][0], missing)
    inferred = km.ProtoNet(relu_mlp())
    inferred.compile(optimizer="adam")
    with pytest.raises(tf.errors.InvalidArgumentError, match="support set"):
        inferred.fit(x, y + 1, verbose=0)
