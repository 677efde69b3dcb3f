"""MAML's meta-gradient against independent float64 references.

With `SGD(learning_rate=1.0)` one `train_on_batch` moves every weight by
minus the meta-gradient, so the library's gradient is `before - after`. The
references below re-implement the networks with raw `tf.nn` ops on explicit
weight tensors (no Keras, no keras_meta), and a central finite difference
checks the second-order reference itself.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_meta as km


@pytest.fixture
def float64():
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx("float32")


def _meta_gradient_from_library(learner, x, y):
    before = [v.numpy().copy() for v in learner.model.trainable_variables]
    learner.train_on_batch(x, y)
    after = [v.numpy() for v in learner.model.trainable_variables]
    return [b - a for b, a in zip(before, after)]


# ---------------------------------------------------------------------------
# MLP.
# ---------------------------------------------------------------------------
def _mlp_forward(w, x):
    h = tf.nn.tanh(x @ w[0] + w[1])
    h = tf.nn.relu(h @ w[2] + w[3])
    return h @ w[4] + w[5]


def _mse(y, p):
    return tf.reduce_mean(tf.square(y - p))


def _reference_meta_loss(forward, loss, w, episodes, lr, steps, first_order):
    """Mean over episodes of the query loss after `steps` inner SGD steps."""
    total = 0.0
    for sx, sy, qx, qy in episodes:
        fast = list(w)
        for _ in range(steps):
            with tf.GradientTape() as tape:
                tape.watch(fast)
                inner = loss(sy, forward(fast, sx))
            grads = tape.gradient(inner, fast)
            if first_order:
                grads = [tf.stop_gradient(g) for g in grads]
            fast = [p - lr * g for p, g in zip(fast, grads)]
        total += loss(qy, forward(fast, qx))
    return total / len(episodes)


def _reference_meta_gradient(forward, loss, weights, episodes, lr, steps, first_order):
    w = [tf.constant(v) for v in weights]
    with tf.GradientTape() as tape:
        tape.watch(w)
        meta_loss = _reference_meta_loss(forward, loss, w, episodes, lr, steps, first_order)
    return [g.numpy() for g in tape.gradient(meta_loss, w)], meta_loss


def _regression_batch(rng, b=3, s=6, q=5, d=3):
    sx = rng.normal(size=(b, s, d))
    qx = rng.normal(size=(b, q, d))
    a = rng.normal(size=(b, d, 1))
    return (
        {"support_x": sx, "support_y": sx @ a + 0.1, "query_x": qx},
        qx @ a + 0.1,
    )


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_mlp_meta_gradient_matches_float64_reference(float64, first_order):
    rng = np.random.default_rng(0)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    learner = km.MAML(model, inner_learning_rate=0.1, inner_steps=3, first_order=first_order)
    learner.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="mse")
    x, y = _regression_batch(rng)
    weights = [v.numpy().copy() for v in model.trainable_variables]
    episodes = [(x["support_x"][i], x["support_y"][i], x["query_x"][i], y[i]) for i in range(3)]
    expected, _ = _reference_meta_gradient(
        _mlp_forward, _mse, weights, episodes, 0.1, 3, first_order
    )
    got = _meta_gradient_from_library(learner, x, y)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-11)
    # Second- and first-order gradients differ: the test could tell them apart.
    other, _ = _reference_meta_gradient(
        _mlp_forward, _mse, weights, episodes, 0.1, 3, not first_order
    )
    assert max(np.abs(o - e).max() for o, e in zip(other, expected)) > 1e-6


def test_second_order_reference_matches_finite_differences(float64):
    """Checks the reference itself (its second-order terms) numerically."""
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=s) * 0.5 for s in [(3, 4), (4,), (4, 4), (4,), (4, 1), (1,)]]
    x, y = _regression_batch(rng, b=2, s=5, q=4)
    episodes = [(x["support_x"][i], x["support_y"][i], x["query_x"][i], y[i]) for i in range(2)]
    grads, _ = _reference_meta_gradient(_mlp_forward, _mse, weights, episodes, 0.2, 2, False)

    def loss_at(ws):
        w = [tf.constant(v) for v in ws]
        return float(_reference_meta_loss(_mlp_forward, _mse, w, episodes, 0.2, 2, False))

    eps = 1e-6
    for k in range(len(weights)):
        for idx in list(np.ndindex(weights[k].shape))[:4]:
            plus = [v.copy() for v in weights]
            minus = [v.copy() for v in weights]
            plus[k][idx] += eps
            minus[k][idx] -= eps
            fd = (loss_at(plus) - loss_at(minus)) / (2 * eps)
            np.testing.assert_allclose(grads[k][idx], fd, rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------------------
# Small conv net with BatchNorm (batch statistics, transductive).
# ---------------------------------------------------------------------------
BN_EPS = 1e-3


def _conv_bn_forward(w, x):
    kernel, bias, gamma, beta, dense_w, dense_b = w
    h = tf.nn.conv2d(x, kernel, strides=1, padding="SAME") + bias
    # Written out: tf.nn.moments stops the gradient through the mean in the
    # variance, which drops part of the second derivative.
    mean = tf.reduce_mean(h, axis=[0, 1, 2])
    var = tf.reduce_mean(tf.square(h - mean), axis=[0, 1, 2])
    h = gamma * (h - mean) / tf.sqrt(var + BN_EPS) + beta
    h = tf.nn.relu(h)
    h = tf.nn.max_pool2d(h, 2, 2, "VALID")
    h = tf.reshape(h, [tf.shape(h)[0], -1])
    return h @ dense_w + dense_b


def _sparse_ce(y, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))


def _conv_model():
    return keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.BatchNormalization(epsilon=BN_EPS),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )


def _classification_batch(rng, b=2, ways=3, shots=2, queries=2):
    s, q = ways * shots, ways * queries
    return (
        {
            "support_x": rng.normal(size=(b, s, 6, 6, 1)),
            "support_y": np.tile(np.arange(ways).repeat(shots), (b, 1)).astype("int32"),
            "query_x": rng.normal(size=(b, q, 6, 6, 1)),
        },
        np.tile(np.arange(ways).repeat(queries), (b, 1)).astype("int32"),
    )


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_conv_bn_meta_gradient_matches_float64_reference(float64, first_order):
    rng = np.random.default_rng(2)
    model = _conv_model()
    # Non-trivial BN weights, so that their gradients are exercised.
    bn = model.layers[1]
    bn.gamma.assign(rng.uniform(0.5, 1.5, size=4))
    bn.beta.assign(rng.normal(size=4) * 0.1)
    learner = km.MAML(model, inner_learning_rate=0.3, inner_steps=2, first_order=first_order)
    learner.compile(
        optimizer=keras.optimizers.SGD(learning_rate=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = _classification_batch(rng)
    weights = [v.numpy().copy() for v in model.trainable_variables]
    moving_before = [v.numpy().copy() for v in model.non_trainable_variables]
    episodes = [(x["support_x"][i], x["support_y"][i], x["query_x"][i], y[i]) for i in range(2)]
    expected, _ = _reference_meta_gradient(
        _conv_bn_forward, _sparse_ce, weights, episodes, 0.3, 2, first_order
    )
    got = _meta_gradient_from_library(learner, x, y)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-8, atol=1e-10)
    # Meta-training still updates the moving statistics (for bn_mode="running").
    moving_after = [v.numpy() for v in model.non_trainable_variables]
    assert any(np.abs(a - b).max() > 0 for a, b in zip(moving_after, moving_before))


def test_meta_gradient_is_mean_over_episodes(float64):
    """A batch of B episodes gives the mean of the single-episode gradients."""
    rng = np.random.default_rng(3)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, "tanh"), keras.layers.Dense(1)]
    )
    learner = km.MAML(model, inner_learning_rate=0.1, inner_steps=2)
    learner.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="mse")
    x, y = _regression_batch(rng, b=3)
    start = [v.numpy().copy() for v in model.trainable_variables]
    singles = []
    for i in range(3):
        for v, s in zip(model.trainable_variables, start):
            v.assign(s)
        xi = {k: v[i : i + 1] for k, v in x.items()}
        singles.append(_meta_gradient_from_library(learner, xi, y[i : i + 1]))
    for v, s in zip(model.trainable_variables, start):
        v.assign(s)
    batched = _meta_gradient_from_library(learner, x, y)
    for k, g in enumerate(batched):
        np.testing.assert_allclose(g, np.mean([s[k] for s in singles], axis=0), rtol=1e-10)
