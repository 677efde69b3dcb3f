"""MAML's meta-gradient against independent float64 references.

With `SGD(learning_rate=1.0)` one `train_on_batch` moves every weight by
minus the meta-gradient, so the library's gradient is `before - after`. The
references (here and in helpers.py) re-implement the networks with raw
`tf.nn` ops on explicit weight tensors (no Keras, no keras_meta), and a
central finite difference checks the second-order reference itself.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    assert_matches_central_differences,
    dense_net,
    episode_list,
    mlp_forward,
    mse,
    reference_meta_loss,
    regression_batch,
    sparse_ce,
)

import keras_meta as km


def _meta_gradient_from_library(learner, x, y):
    before = [v.numpy().copy() for v in learner.model.trainable_variables]
    learner.train_on_batch(x, y)
    after = [v.numpy() for v in learner.model.trainable_variables]
    return [b - a for b, a in zip(before, after)]


# ---------------------------------------------------------------------------
# MLP.
# ---------------------------------------------------------------------------
def _reference_meta_gradient(forward, loss, weights, episodes, lr, steps, first_order):
    w = [tf.constant(v) for v in weights]
    with tf.GradientTape() as tape:
        tape.watch(w)
        meta_loss = reference_meta_loss(forward, loss, w, episodes, lr, steps, first_order)
    return [g.numpy() for g in tape.gradient(meta_loss, w)], meta_loss


def _regression_batch(rng, b=3, s=6, q=5):
    return regression_batch(rng, b, s, q, target=lambda z: z + 0.1)


def _assert_meta_gradient_matches_reference(
    learner, x, y, forward, loss, lr, steps, first_order, rtol, atol
):
    """The library's meta-gradient for the batch is the reference's; returns
    the starting weights, the episodes and the reference gradient."""
    weights = [v.numpy().copy() for v in learner.model.trainable_variables]
    episodes = episode_list(x, y)
    expected, _ = _reference_meta_gradient(forward, loss, weights, episodes, lr, steps, first_order)
    got = _meta_gradient_from_library(learner, x, y)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)
    return weights, episodes, expected


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_mlp_meta_gradient_matches_float64_reference(float64, first_order):
    rng = np.random.default_rng(0)
    model = dense_net(3, 1, (8, 8), activation=("tanh", "relu"))
    learner = km.MAML(model, inner_learning_rate=0.1, inner_steps=3, first_order=first_order)
    learner.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="mse")
    x, y = _regression_batch(rng)
    weights, episodes, expected = _assert_meta_gradient_matches_reference(
        learner, x, y, mlp_forward, mse, 0.1, 3, first_order, rtol=1e-9, atol=1e-11
    )
    # Second- and first-order gradients differ: the test could tell them apart.
    other, _ = _reference_meta_gradient(
        mlp_forward, mse, weights, episodes, 0.1, 3, not first_order
    )
    assert max(np.abs(o - e).max() for o, e in zip(other, expected)) > 1e-6


def test_second_order_reference_matches_finite_differences(float64):
    """Checks the reference itself (its second-order terms) numerically."""
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=s) * 0.5 for s in [(3, 4), (4,), (4, 4), (4,), (4, 1), (1,)]]
    x, y = _regression_batch(rng, b=2, s=5, q=4)
    episodes = episode_list(x, y)
    grads, _ = _reference_meta_gradient(mlp_forward, mse, weights, episodes, 0.2, 2, False)

    def loss_at(ws):
        w = [tf.constant(v) for v in ws]
        return float(reference_meta_loss(mlp_forward, mse, w, episodes, 0.2, 2, False))

    assert_matches_central_differences(loss_at, weights, grads, rtol=1e-5, atol=1e-8, count=4)


# ---------------------------------------------------------------------------
# Small conv net with BatchNorm (batch statistics, transductive).
# ---------------------------------------------------------------------------
BN_EPS = 1e-3


def _conv_bn_forward(w, x, exact=True):
    kernel, bias, gamma, beta, dense_w, dense_b = w
    h = tf.nn.conv2d(x, kernel, strides=1, padding="SAME") + bias
    if exact:
        # Written out: tf.nn.moments stops the gradient through the mean in
        # the variance, which drops part of the second derivative.
        mean = tf.reduce_mean(h, axis=[0, 1, 2])
        var = tf.reduce_mean(tf.square(h - mean), axis=[0, 1, 2])
    else:
        mean, var = tf.nn.moments(h, axes=[0, 1, 2])
    h = gamma * (h - mean) / tf.sqrt(var + BN_EPS) + beta
    h = tf.nn.relu(h)
    h = tf.nn.max_pool2d(h, 2, 2, "VALID")
    h = tf.reshape(h, [tf.shape(h)[0], -1])
    return h @ dense_w + dense_b


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


def _truncated_reference(weights, episodes, first_order):
    """The reference with tf.nn.moments' variance (no gradient through the mean)."""
    return _reference_meta_gradient(
        lambda w, x: _conv_bn_forward(w, x, exact=False),
        sparse_ce,
        weights,
        episodes,
        0.3,
        2,
        first_order,
    )


def _conv_bn_maml(rng, first_order):
    """The conv + BN model in MAML (2 inner steps of 0.3; SGD(1.0) outer)."""
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
    return model, learner


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_conv_bn_meta_gradient_matches_float64_reference(float64, first_order):
    rng = np.random.default_rng(2)
    model, learner = _conv_bn_maml(rng, first_order)
    x, y = _classification_batch(rng)
    moving_before = [v.numpy().copy() for v in model.non_trainable_variables]
    weights, episodes, expected = _assert_meta_gradient_matches_reference(
        learner, x, y, _conv_bn_forward, sparse_ce, 0.3, 2, first_order, rtol=1e-8, atol=1e-10
    )
    # The reference with tf.nn.moments' truncated variance: the same first
    # derivatives, so the same first-order meta-gradient; a second-order one
    # that misses the exact one by far more than the tolerance above, so the
    # comparison would catch a library that lost its exact-moments hook.
    truncated, _ = _truncated_reference(weights, episodes, first_order)
    excess = max(
        np.max(np.abs(t - e) / (1e-10 + 1e-8 * np.abs(e))) for t, e in zip(truncated, expected)
    )
    if first_order:
        assert excess < 1, excess
    else:
        assert excess > 1e3, excess
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


@pytest.mark.parametrize("first_order", [False, True])
def test_float32_meta_gradient_through_fused_batch_norm_matches_float64_reference(first_order):
    """In float32, first-order MAML runs BatchNorm as TensorFlow's fused
    kernel and second-order MAML as Keras's ops with exact moments
    (keras_meta._moments): both against the float64 reference from the same
    weights, and second order far from the truncated-variance reference."""
    rng = np.random.default_rng(5)
    model, learner = _conv_bn_maml(rng, first_order)
    x, y = _classification_batch(rng, b=2, ways=3, shots=3, queries=2)
    x = {k: v.astype("float32") if v.dtype == np.float64 else v for k, v in x.items()}
    weights = [v.numpy().astype("float64") for v in model.trainable_variables]
    episodes = [
        (sx.astype("float64"), sy, qx.astype("float64"), qy)
        for sx, sy, qx, qy in episode_list(x, y)
    ]
    got = _meta_gradient_from_library(learner, x, y)
    expected, _ = _reference_meta_gradient(
        _conv_bn_forward, sparse_ce, weights, episodes, 0.3, 2, first_order
    )
    truncated, _ = _truncated_reference(weights, episodes, first_order)
    scale = max(np.abs(e).max() for e in expected)
    error = max(np.abs(g - e).max() for g, e in zip(got, expected)) / scale
    assert error < 2e-5, error
    if not first_order:
        gap = max(np.abs(t - e).max() for t, e in zip(truncated, expected)) / scale
        assert gap > 50 * error, (gap, error)
