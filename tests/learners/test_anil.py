"""ANIL: only the head adapts; meta-gradient against a float64 reference
written with raw TensorFlow ops (no Keras, no keras_meta)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_meta as km


def ce():
    # Built per test: a Loss takes the float dtype current at construction.
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture
def float64():
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx("float32")


def cluster_tasks(n, seed, ways=5, shots=1, queries=5, dim=8, informative=4):
    """N-way K-shot tasks with per-episode class means in `informative` dims."""
    rng = np.random.default_rng(seed)
    sy = np.tile(np.repeat(np.arange(ways), shots), (n, 1))
    qy = np.tile(np.repeat(np.arange(ways), queries), (n, 1))
    means = np.zeros((n, ways, dim))
    means[..., :informative] = rng.normal(size=(n, ways, informative)) * 2.0

    def draw(y):
        x = np.take_along_axis(means, y[..., None].repeat(dim, -1), 1)
        noise = rng.normal(size=x.shape)
        noise[..., :informative] *= 0.3
        noise[..., informative:] *= 1.5
        return (x + noise).astype("float32")

    x = {"support_x": draw(sy), "support_y": sy.astype("int32"), "query_x": draw(qy)}
    return x, qy.astype("int32")


def classifier():
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(32, "relu", name="body"),
            keras.layers.Dense(5, name="head"),
        ]
    )


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


def mlp(w, x):
    h = tf.nn.tanh(x @ w[0] + w[1])
    h = tf.nn.relu(h @ w[2] + w[3])
    return h @ w[4] + w[5]


def sparse_ce(y, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))


def reference_meta_loss(w, episodes, lr, steps, first_order):
    """Mean query loss after `steps` SGD steps on the head (w[4], w[5])."""
    total = 0.0
    for sx, sy, qx, qy in episodes:
        head = [w[4], w[5]]
        for _ in range(steps):
            with tf.GradientTape() as tape:
                tape.watch(head)
                inner = sparse_ce(sy, mlp(w[:4] + head, sx))
            grads = tape.gradient(inner, head)
            if first_order:
                grads = [tf.stop_gradient(g) for g in grads]
            head = [p - lr * g for p, g in zip(head, grads)]
        total += sparse_ce(qy, mlp(w[:4] + head, qx))
    return total / len(episodes)


@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradient_matches_reference(float64, first_order):
    rng = np.random.default_rng(1)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6, "tanh"),
            keras.layers.Dense(6, "relu"),
            keras.layers.Dense(3, name="classifier"),
        ]
    )
    learner = km.ANIL(model, "classifier", 0.3, 2, first_order=first_order)
    learner.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss=ce())
    b, ways, shots = 2, 3, 2
    labels = np.tile(np.arange(ways).repeat(shots), (b, 1)).astype("int32")
    x = {
        "support_x": rng.normal(size=(b, ways * shots, 4)),
        "support_y": labels,
        "query_x": rng.normal(size=(b, ways * shots, 4)),
    }
    episodes = [(x["support_x"][i], labels[i], x["query_x"][i], labels[i]) for i in range(b)]
    w = [tf.constant(v.numpy()) for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        tape.watch(w)
        loss = reference_meta_loss(w, episodes, 0.3, 2, first_order)
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
    test = cluster_tasks(200, seed=99)
    before = learner.evaluate(*test, batch_size=50, verbose=0, return_dict=True)
    train = tf.data.Dataset.from_tensor_slices(cluster_tasks(8 * 100, seed=1)).batch(8)
    learner.fit(train, epochs=1, verbose=0)
    after = learner.evaluate(*test, batch_size=50, verbose=0, return_dict=True)
    assert after["accuracy"] > 0.6  # chance: 0.2
    assert after["accuracy"] > before["accuracy"] + 0.05

    path = tmp_path / "anil.keras"
    learner.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, km.ANIL)
    assert loaded.head == ["head"]
    assert "adapt_layers" not in loaded.get_config()
    x, y = cluster_tasks(4, seed=2)
    learner.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    for a, b in zip(learner.variables, loaded.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(learner.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    support_x, support_y, query_x = x["support_x"][0], x["support_y"][0], x["query_x"][0]
    adapted = learner.adapt(support_x, support_y)
    adapted.export(str(tmp_path / "adapted"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "adapted"))
    np.testing.assert_allclose(
        served.serve(query_x).numpy(), adapted.predict(query_x, verbose=0), rtol=1e-5, atol=1e-6
    )
    learner.export(str(tmp_path / "meta"), verbose=False)
    meta = tf.saved_model.load(str(tmp_path / "meta"))
    np.testing.assert_allclose(
        meta.adapt_and_predict(support_x, support_y, query_x).numpy(),
        learner.predict(x, verbose=0)[0],
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "head, kwargs, error, match",
    [
        (None, {}, ValueError, "`head` to be a layer name"),
        ([], {}, ValueError, "`head` to be a layer name"),
        ([3], {}, ValueError, "`head` to be a layer name"),
        ("nope", {}, ValueError, "names layers \\['nope'\\]"),
        ("head", {"adapt_layers": ["body"]}, TypeError, "as `head`, not `adapt_layers`"),
        ("head", {"inner_steps": 0}, ValueError, "`inner_steps` to be >= 1"),
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
