"""R2D2's ridge head against numpy.linalg.solve; learning, persistence, export."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    assert_exports_serve,
    assert_learns_noisy_clusters,
    assert_matches_central_differences,
    linear_embedding,
    noisy_cluster_tasks,
    np_cross_entropy,
    relu_mlp,
    save_and_load,
    small_episodes,
)

import keras_meta as km
from keras_meta.learners.ridge import ridge_weights


# ---------------------------------------------------------------------------
# Independent numpy references.
# ---------------------------------------------------------------------------
def np_ridge(x, y, lam):
    """The primal normal equations, solved by numpy."""
    return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)


def np_logits(kernel, sx, sy, qx, lam, scale, bias, intercept=True):
    s, q = sx @ kernel, qx @ kernel
    if intercept:  # a constant feature, regularised like the others
        s = np.concatenate([s, np.ones((len(s), 1))], 1)
        q = np.concatenate([q, np.ones((len(q), 1))], 1)
    onehot = np.eye(sy.max() + 1)[sy]
    return scale * q @ np_ridge(s, onehot, lam) + bias


def np_meta_loss(kernel, x, y, lam, scale, bias):
    total = 0.0
    for b in range(len(y)):
        logits = np_logits(
            kernel, x["support_x"][b], x["support_y"][b], x["query_x"][b], lam, scale, bias
        )
        total += np_cross_entropy(logits, y[b])
    return total / len(y)


# ---------------------------------------------------------------------------
# The solve.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("num, dim", [(5, 12), (12, 5)])
@pytest.mark.parametrize("solver", ["auto", "primal", "woodbury"])
def test_ridge_weights_match_numpy_solve(num, dim, solver):
    rng = np.random.default_rng(num)
    x = rng.normal(size=(num, dim))
    y = np.eye(3)[rng.integers(0, 3, num)]
    ref = np_ridge(x, y, 0.7)
    got = ridge_weights(tf.constant(x), tf.constant(y), 0.7, solver=solver)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-8, atol=1e-9)
    got32 = ridge_weights(x.astype("float32"), y.astype("float32"), 0.7, solver)
    np.testing.assert_allclose(got32.numpy(), ref, rtol=1e-4, atol=1e-4)


def test_ridge_weights_with_dynamic_shapes_pick_either_form():
    solve = tf.function(
        lambda x, y: ridge_weights(x, y, 0.3),
        input_signature=[tf.TensorSpec([None, None], tf.float64)] * 2,
    )
    rng = np.random.default_rng(0)
    for num, dim in [(3, 7), (7, 3)]:
        x, y = rng.normal(size=(num, dim)), rng.normal(size=(num, 2))
        np.testing.assert_allclose(solve(x, y).numpy(), np_ridge(x, y, 0.3), atol=1e-9)


# ---------------------------------------------------------------------------
# The learner's logits and gradient.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["auto", "primal", "woodbury"])
@pytest.mark.parametrize("support", [4, 9])  # fewer, more examples than features
@pytest.mark.parametrize("intercept", [True, False])
def test_logits_match_numpy(solver, support, intercept):
    kernel = np.random.default_rng(1).normal(size=(3, 6)).astype("float32")
    x, _ = small_episodes(support=support)
    learner = km.R2D2(
        linear_embedding(kernel),
        l2_regularizer=0.5,
        scale=3.0,
        bias=0.25,
        fit_intercept=intercept,
        solver=solver,
    )
    learner.compile(optimizer="sgd")
    preds = learner.predict(x, verbose=0)
    for b in range(2):
        ref = np_logits(
            kernel, x["support_x"][b], x["support_y"][b], x["query_x"][b], 0.5, 3.0, 0.25, intercept
        )
        np.testing.assert_allclose(preds[b], ref, rtol=1e-4, atol=1e-4)
    adapted = learner.adapt(x["support_x"][0], x["support_y"][0])
    np.testing.assert_allclose(
        adapted.predict(x["query_x"][0], verbose=0), preds[0], rtol=1e-4, atol=1e-4
    )


def test_meta_gradient_matches_finite_differences():
    # SGD(1.0): one train_on_batch moves each weight by minus its gradient.
    kernel = np.random.default_rng(2).normal(size=(3, 4)).astype("float32") * 0.5
    x, y = small_episodes(seed=3)
    learner = km.R2D2(linear_embedding(kernel), l2_regularizer=0.5, scale=2.0, bias=0.1)
    learner.compile(optimizer=keras.optimizers.SGD(1.0))
    learner.train_on_batch(x, y)

    k64, log_lam0 = kernel.astype("float64"), math.log(0.5)

    def loss(k=k64, log_lam=log_lam0, scale=2.0):
        return np_meta_loss(k, x, y, math.exp(log_lam), scale, 0.1)

    grad_kernel = kernel - learner.model.layers[0].kernel.numpy()
    assert_matches_central_differences(
        lambda v: loss(k=v[0]), [k64], [grad_kernel], rtol=1e-3, atol=1e-4
    )
    # λ is learned as log λ.
    grad_log_lam = log_lam0 - math.log(learner.l2_regularizer)
    assert_matches_central_differences(
        lambda v: loss(log_lam=v[0]), [log_lam0], [grad_log_lam], rtol=1e-3, atol=1e-5
    )
    assert_matches_central_differences(
        lambda v: loss(scale=v[0]), [2.0], [2.0 - learner.scale], rtol=1e-3, atol=1e-5
    )
    # A scalar bias shifts every logit alike: softmax cross-entropy ignores it.
    np.testing.assert_allclose(learner.bias, 0.1, atol=1e-6)


def test_transductive_evaluation_fits_the_head_on_the_support_batch_alone():
    # BatchNorm normalises the support set with its own statistics, so the
    # ridge head does not depend on the query batch.
    x, _ = noisy_cluster_tasks(1, ways=3, shots=2, queries=3, seed=12)
    net = relu_mlp(batchnorm=True)
    learner = km.R2D2(net, l2_regularizer=0.5, scale=3.0, bias=0.25)
    learner.compile(optimizer="sgd")
    preds = learner.predict(x, verbose=0)[0]
    sx, sy, qx = x["support_x"][0], x["support_y"][0], x["query_x"][0]
    identity = np.eye(16)
    query = net(qx, training=True).numpy().astype("float64")
    support = net(sx, training=True).numpy().astype("float64")
    expected = np_logits(identity, support, sy, query, 0.5, 3.0, 0.25)
    np.testing.assert_allclose(preds, expected, rtol=1e-4, atol=1e-4)
    # A head fitted to support embeddings of the joint support + query batch
    # (as in meta-training) is told apart.
    joint = net(np.concatenate([sx, qx]), training=True).numpy()[: len(sx)].astype("float64")
    assert np.abs(np_logits(identity, joint, sy, query, 0.5, 3.0, 0.25) - preds).max() > 1e-2


# ---------------------------------------------------------------------------
# Learning.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("shots", [1, 5])
def test_learns_few_shot_clusters(shots):
    assert_learns_noisy_clusters(km.R2D2, shots)


# Slow (CI's slow step): minutes of XLA compilation on 2 cores.
@pytest.mark.slow
def test_xla_with_static_ways_matches_graph_mode():
    x, y = noisy_cluster_tasks(16, shots=5, seed=3)

    def run(jit_compile):
        keras.utils.set_random_seed(3)
        learner = km.R2D2(relu_mlp(), ways=5)
        # SGD with small steps, not Adam: Adam would blow the rounding noise
        # of the output bias's gradient (zero in exact arithmetic, see R2D2)
        # up to full steps, and large steps amplify float32 rounding.
        learner.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit_compile)
        learner.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        return learner, [v.numpy() for v in learner.variables], learner.predict(x, verbose=0)

    (_, plain, plain_preds), (jitted, xla, xla_preds) = run(False), run(True)
    assert jitted.jit_compile is True
    for a, b in zip(plain, xla, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(plain_preds, xla_preds, rtol=1e-4, atol=1e-4)
    # Two steps moved the weights: the comparison is not of the initial ones.
    keras.utils.set_random_seed(3)
    initial = km.R2D2(relu_mlp(), ways=5).variables
    assert max(np.abs(a - b.numpy()).max() for a, b in zip(plain, initial)) > 1e-3


# ---------------------------------------------------------------------------
# Persistence and export.
# ---------------------------------------------------------------------------
def test_keras_round_trip_resumes_exactly(tmp_path):
    x, y = noisy_cluster_tasks(32, shots=5, seed=4)
    learner = km.R2D2(relu_mlp(batchnorm=True), l2_regularizer=2.0, scale=5.0)
    learner.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    learner.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert learner.l2_regularizer != 2.0  # λ is learned
    loaded = save_and_load(learner, str(tmp_path / "r2d2.keras"))
    assert isinstance(loaded, km.R2D2)
    assert loaded.l2_regularizer == learner.l2_regularizer
    assert loaded.scale == learner.scale
    batch = ({k: v[:8] for k, v in x.items()}, y[:8])
    learner.train_on_batch(*batch)
    loaded.train_on_batch(*batch)
    for a, b in zip(learner.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_saved_model_exports(tmp_path):
    x, y = noisy_cluster_tasks(32, shots=5, seed=5)
    learner = km.R2D2(relu_mlp(batchnorm=True), bn_mode="running")
    learner.compile(optimizer=keras.optimizers.Adam(1e-2))
    learner.fit(x, y, batch_size=16, epochs=1, verbose=0)
    expected = learner.predict({k: v[:1] for k, v in x.items()}, verbose=0)[0]

    adapted, meta = assert_exports_serve(
        learner, x, tmp_path, expected, rtol=1e-4, atol=1e-4, serve_tol=(1e-6, 1e-6)
    )
    # A plain Dense head: the adapted model needs no keras_meta.
    assert isinstance(adapted.layers[-1], keras.layers.Dense)
    np.testing.assert_allclose(
        adapted.predict(x["query_x"][0], verbose=0), expected, rtol=1e-4, atol=1e-4
    )
    # The export's support size and number of ways are dynamic: 25 examples,
    # more than the 17 ridge features (16 embedding features and the
    # intercept), go through the primal form; 5 or 6 examples (5-way 1-shot,
    # 3-way 2-shot) through the Woodbury form. Both agree with predict and
    # with numpy's solve of the primal normal equations on the embeddings.
    for ways, shots in [(5, 5), (5, 1), (3, 2)]:
        episode = noisy_cluster_tasks(1, ways=ways, shots=shots, seed=6)[0]
        sx, sy, qx = episode["support_x"][0], episode["support_y"][0], episode["query_x"][0]
        out = meta.adapt_and_predict(sx, sy, qx).numpy()
        assert out.shape == (5 * ways, ways)
        np.testing.assert_allclose(
            out, learner.predict(episode, verbose=0)[0], rtol=1e-4, atol=1e-4
        )
        support, query = (
            learner.model(v, training=False).numpy().astype("float64") for v in (sx, qx)
        )
        expected = np_logits(
            np.eye(16), support, sy, query, learner.l2_regularizer, learner.scale, learner.bias
        )
        np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-3)


# ---------------------------------------------------------------------------
# Errors.
# ---------------------------------------------------------------------------
def test_bad_arguments():
    net = relu_mlp()
    with pytest.raises(ValueError, match="l2_regularizer"):
        km.R2D2(net, l2_regularizer=0.0)
    with pytest.raises(ValueError, match="l2_regularizer"):
        km.R2D2(net, l2_regularizer=float("inf"))
    with pytest.raises(ValueError, match="scale"):
        km.R2D2(net, scale=-1.0)
    with pytest.raises(TypeError, match="bias"):
        km.R2D2(net, bias="zero")
    with pytest.raises(ValueError, match="solver"):
        km.R2D2(net, solver="lstsq")
    with pytest.raises(TypeError, match="learn_l2_regularizer"):
        km.R2D2(net, learn_l2_regularizer=1)
    with pytest.raises(ValueError, match="solver"):
        ridge_weights(np.ones((2, 2)), np.ones((2, 2)), 1.0, solver="qr")
    learner = km.R2D2(net)
    learner.compile(optimizer="adam")
    x, _ = noisy_cluster_tasks(1, shots=5, seed=0)
    with pytest.raises(ValueError, match="takes no `steps`"):
        learner.adapt(x["support_x"][0], x["support_y"][0], steps=2)
