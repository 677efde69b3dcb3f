"""ProtoNet against numpy references; learning, persistence and export."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_meta as km
from keras_meta.learners.protonet import PrototypeClassifier, prototypes


def cluster_tasks(n, ways=5, shots=1, queries=5, dim=8, seed=0):
    """`n` few-shot episodes of Gaussian clusters with random class means.

    Only the first two features separate the classes; the others are large
    noise, so a nearest-prototype rule in input space is poor and the
    embedding has something to learn.
    """
    rng = np.random.default_rng(seed)
    means = np.zeros((n, ways, dim))
    means[..., :2] = rng.normal(0.0, 2.0, (n, ways, 2))
    noise_scale = np.full(dim, 3.0)
    noise_scale[:2] = 0.3

    def draw(k):
        y = np.tile(np.arange(ways), (n, k))
        y = np.stack([rng.permutation(row) for row in y])
        x = np.take_along_axis(means, y[..., None], 1)
        x = x + rng.normal(size=x.shape) * noise_scale
        return x.astype("float32"), y.astype("int32")

    sx, sy = draw(shots)
    qx, qy = draw(queries)
    return {"support_x": sx, "support_y": sy, "query_x": qx}, qy


def linear_embedding(kernel):
    net = keras.Sequential(
        [keras.Input((kernel.shape[0],)), keras.layers.Dense(kernel.shape[1], use_bias=False)]
    )
    net.layers[0].kernel.assign(kernel)
    return net


def mlp_embedding(dim=8, batchnorm=False):
    layers = [keras.Input((dim,)), keras.layers.Dense(32)]
    if batchnorm:
        layers.append(keras.layers.BatchNormalization())
    layers += [keras.layers.ReLU(), keras.layers.Dense(16)]
    return keras.Sequential(layers)


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


def np_cross_entropy(logits, y):
    logits = logits - logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean()


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


def small_episodes(seed=0, b=2):
    rng = np.random.default_rng(seed)
    x = {
        "support_x": rng.normal(size=(b, 6, 3)).astype("float32"),
        "support_y": np.array([[2, 0, 1, 1, 0, 2]] * b, "int32"),
        "query_x": rng.normal(size=(b, 4, 3)).astype("float32"),
    }
    return x, rng.integers(0, 3, (b, 4)).astype("int32")


# ---------------------------------------------------------------------------
# Logits and gradients.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "distance, scale", [("euclidean", None), ("euclidean", 0.5), ("cosine", 5.0)]
)
def test_logits_match_numpy(distance, scale):
    kernel = np.random.default_rng(1).normal(size=(3, 4)).astype("float32")
    x, _ = small_episodes()
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
    x, y = small_episodes(seed=3)
    learner = km.ProtoNet(
        linear_embedding(kernel), distance=distance, scale=2.0, learn_scale=learn_scale
    )
    learner.compile(optimizer=keras.optimizers.SGD(1.0))
    learner.train_on_batch(x, y)
    grad_kernel = kernel - learner.model.layers[0].kernel.numpy()

    k64, eps = kernel.astype("float64"), 1e-6
    ref = np.zeros_like(k64)
    for idx in np.ndindex(*k64.shape):
        up, down = k64.copy(), k64.copy()
        up[idx] += eps
        down[idx] -= eps
        ref[idx] = (
            np_meta_loss(up, x, y, distance, 2.0) - np_meta_loss(down, x, y, distance, 2.0)
        ) / (2 * eps)
    np.testing.assert_allclose(grad_kernel, ref, rtol=1e-3, atol=1e-4)
    if learn_scale:
        ref_scale = (
            np_meta_loss(k64, x, y, distance, 2.0 + eps)
            - np_meta_loss(k64, x, y, distance, 2.0 - eps)
        ) / (2 * eps)
        np.testing.assert_allclose(2.0 - learner.scale, ref_scale, rtol=1e-3, atol=1e-5)


def test_meta_training_embeds_support_and_query_as_one_batch():
    # As in Snell et al.'s code: BatchNorm statistics in meta-training cover
    # the support and the query set of the episode together.
    x, y = cluster_tasks(1, ways=3, shots=2, queries=2, seed=11)
    net = mlp_embedding(batchnorm=True)
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


# ---------------------------------------------------------------------------
# Learning.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("shots", [1, 5])
def test_learns_few_shot_clusters(shots):
    x, y = cluster_tasks(320, shots=shots, seed=1)
    x_test, y_test = cluster_tasks(100, shots=shots, seed=2)
    learner = km.ProtoNet(mlp_embedding())
    learner.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    _, before = learner.evaluate(x_test, y_test, batch_size=50, verbose=0)
    learner.fit(x, y, batch_size=16, epochs=3, verbose=0)
    _, after = learner.evaluate(x_test, y_test, batch_size=50, verbose=0)
    # Chance is 0.2.
    assert after > 0.6, (before, after)
    assert after > before + 0.2, (before, after)


def test_xla_with_static_ways_matches_graph_mode():
    x, y = cluster_tasks(32, seed=4)
    learner = km.ProtoNet(mlp_embedding(), ways=5)
    learner.compile(optimizer="adam", jit_compile=True)
    xla = learner.predict(x, batch_size=32, verbose=0)
    learner.compile(optimizer="adam", jit_compile=False)
    graph = learner.predict(x, batch_size=32, verbose=0)
    np.testing.assert_allclose(xla, graph, rtol=1e-4, atol=1e-4)


def test_infers_ways_per_batch_in_graph_mode():
    learner = km.ProtoNet(mlp_embedding())
    learner.compile(optimizer="adam")
    x3, y3 = cluster_tasks(4, ways=3, seed=5)
    x3["support_y"] = x3["support_y"].astype("int64")
    x5, _ = cluster_tasks(4, ways=5, seed=5)
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
    x, y = cluster_tasks(32, seed=7)
    learner = km.ProtoNet(
        mlp_embedding(batchnorm=True), distance="cosine", learn_scale=True, ways=5
    )
    learner.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    learner.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = str(tmp_path / "protonet.keras")
    learner.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, km.ProtoNet)
    config = {k: v for k, v in learner.get_config().items() if k != "model"}
    assert {k: loaded.get_config()[k] for k in config} == config
    batch = ({k: v[:8] for k, v in x.items()}, y[:8])
    learner.train_on_batch(*batch)
    loaded.train_on_batch(*batch)
    for a, b in zip(learner.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert loaded.scale == learner.scale


def test_saved_model_exports(tmp_path):
    x, y = cluster_tasks(32, seed=8)
    learner = km.ProtoNet(mlp_embedding(batchnorm=True), bn_mode="running")
    learner.compile(optimizer=keras.optimizers.Adam(1e-2))
    learner.fit(x, y, batch_size=16, epochs=1, verbose=0)
    episode = {k: v[:1] for k, v in x.items()}
    expected = learner.predict(episode, verbose=0)[0]

    adapted = learner.adapt(x["support_x"][0], x["support_y"][0])
    assert isinstance(adapted, keras.Model)
    np.testing.assert_allclose(
        adapted.predict(x["query_x"][0], verbose=0), expected, rtol=1e-5, atol=1e-5
    )
    adapted.export(str(tmp_path / "adapted"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "adapted"))
    np.testing.assert_allclose(
        served.serve(x["query_x"][0]).numpy(),
        adapted.predict(x["query_x"][0], verbose=0),
        rtol=1e-6,
        atol=1e-6,
    )

    learner.export(str(tmp_path / "meta"), verbose=False)
    meta = tf.saved_model.load(str(tmp_path / "meta"))
    out = meta.adapt_and_predict(x["support_x"][0], x["support_y"][0], x["query_x"][0])
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)

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
    net = mlp_embedding()
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
    learner = km.ProtoNet(mlp_embedding(), ways=5)
    learner.compile(optimizer="adam")
    x, y = cluster_tasks(2, seed=9)
    with pytest.raises(ValueError, match="takes no `steps`"):
        learner.adapt(x["support_x"][0], x["support_y"][0], steps=1)
    with pytest.raises(ValueError, match="classifier"):
        learner.adapt(x["support_x"][0], x["support_y"][0][:, None] * 1.0)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        learner.adapt(x["support_x"][0], x["support_y"][0] + 1)
    missing = np.where(x["support_y"][0] == 3, 0, x["support_y"][0])
    with pytest.raises(ValueError, match=r"none of the classes \[3\]"):
        learner.adapt(x["support_x"][0], missing)
    inferred = km.ProtoNet(mlp_embedding())
    inferred.compile(optimizer="adam")
    with pytest.raises(tf.errors.InvalidArgumentError, match="support set"):
        inferred.fit(x, y + 1, verbose=0)
