"""Reptile against hand-written references, and its Keras surface."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    assert_exports_serve,
    assert_learns_cluster_tasks,
    assert_resumes_identically,
    assert_same_config,
    assert_variables_equal,
    ce,
    classifier,
    cluster_tasks,
    mirrored_strategy,
    regression_batch,
    save_and_load,
)

import keras_meta as km


def linear_regression_batch(rng):
    return regression_batch(rng, b=3, s=6, q=4, target=lambda z: z + 0.3)


def numpy_inner_sgd(w, b, x, y, lr, steps):
    """Full-batch SGD on the MSE of a linear model, by hand."""
    for _ in range(steps):
        r = x @ w + b - y
        w, b = w - lr * 2.0 / len(x) * x.T @ r, b - lr * 2.0 / len(x) * r.sum(0)
    return w, b


# ---------------------------------------------------------------------------
# The update.
# ---------------------------------------------------------------------------
def test_meta_update_is_theta_plus_epsilon_times_mean_direction(float64):
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    learner = km.Reptile(model, inner_learning_rate=0.05, inner_steps=3, eval_inner_steps=4)
    epsilon = 0.5
    learner.compile(optimizer=keras.optimizers.SGD(learning_rate=epsilon), loss="mse")
    x, y = linear_regression_batch(rng)
    w, b = (v.numpy().copy() for v in model.trainable_variables)

    adapted = [
        numpy_inner_sgd(w, b, x["support_x"][i], x["support_y"][i], 0.05, 3) for i in range(3)
    ]
    mean_w = np.mean([a[0] for a in adapted], axis=0)
    mean_b = np.mean([a[1] for a in adapted], axis=0)
    query_mse = np.mean(
        [np.mean((x["query_x"][i] @ wi + bi - y[i]) ** 2) for i, (wi, bi) in enumerate(adapted)]
    )

    logs = learner.train_on_batch(x, y, return_dict=True)
    kernel, bias = model.layers[0].kernel.numpy(), model.layers[0].bias.numpy()
    np.testing.assert_allclose(kernel, w + epsilon * (mean_w - w), rtol=1e-12)
    np.testing.assert_allclose(bias, b + epsilon * (mean_b - b), rtol=1e-12)
    # fit reports the query loss of the adapted weights.
    np.testing.assert_allclose(logs["loss"], query_mse, rtol=1e-6)

    # Evaluation adapts with eval_inner_steps, from the new weights.
    w, b = (v.numpy() for v in model.trainable_variables)
    expected = numpy_inner_sgd(w, b, x["support_x"][0], x["support_y"][0], 0.05, 4)
    got = learner.adapt(x["support_x"][0], x["support_y"][0]).trainable_variables
    np.testing.assert_allclose(got[0].numpy(), expected[0], rtol=1e-12)
    np.testing.assert_allclose(got[1].numpy(), expected[1], rtol=1e-12)


def test_other_optimizers_receive_the_mean_direction(float64):
    rng = np.random.default_rng(1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    learner = km.Reptile(model, inner_learning_rate=0.05, inner_steps=2)
    learner.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse")
    x, y = linear_regression_batch(rng)
    w, b = (v.numpy().copy() for v in model.trainable_variables)
    adapted = [
        numpy_inner_sgd(w, b, x["support_x"][i], x["support_y"][i], 0.05, 2) for i in range(3)
    ]
    direction = [w - np.mean([a[0] for a in adapted], 0), b - np.mean([a[1] for a in adapted], 0)]
    reference = [keras.Variable(v) for v in (w, b)]
    keras.optimizers.Adam(learning_rate=0.01).apply_gradients(zip(direction, reference))
    learner.train_on_batch(x, y)
    for got, want in zip(model.trainable_variables, reference):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)


def test_inner_mini_batches_use_every_support_example_once_per_pass(float64):
    # One-hot inputs and a bias-free linear model: example j only moves
    # weight j, so after two passes w_j = y_j (2c - c²) with c = 2·lr/batch
    # whatever the order, iff every pass uses every example exactly once.
    s, batch, lr = 6, 2, 0.3
    rng = np.random.default_rng(2)
    sx = np.eye(s)[rng.permutation(s)]
    sy = rng.normal(size=(s, 1))
    model = keras.Sequential(
        [keras.Input((s,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")]
    )
    learner = km.Reptile(
        model, inner_learning_rate=lr, inner_steps=2 * s // batch, inner_batch_size=batch
    )
    learner.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="mse")
    c = 2 * lr / batch
    expected = (sx.T @ sy) * (2 * c - c * c)
    adapted = learner.adapt(sx, sy)
    np.testing.assert_allclose(adapted.layers[0].kernel.numpy(), expected, rtol=1e-12)
    # Training draws its own shuffles; with SGD(1.0) and one episode θ ← φ.
    x = {"support_x": sx[None], "support_y": sy[None], "query_x": sx[None]}
    learner.train_on_batch(x, sy[None])
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), expected, rtol=1e-12)


def test_inner_adam_matches_keras_adam(float64):
    rng = np.random.default_rng(3)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(8, "tanh"), keras.layers.Dense(2)]
    )
    learner = km.Reptile(
        model,
        inner_learning_rate=0.125,
        inner_steps=3,
        inner_optimizer="adam",
        adam_beta_1=0.5,
        adam_beta_2=0.75,
        adam_epsilon=2.0**-20,
    )
    learner.compile(optimizer="sgd", loss="mse")
    sx, sy = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    adapted = learner.adapt(sx, sy)

    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    # Keras rounds the betas to float32: pick values it represents exactly.
    adam = keras.optimizers.Adam(learning_rate=0.125, beta_1=0.5, beta_2=0.75, epsilon=2.0**-20)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = keras.losses.mean_squared_error(sy, reference(sx))
            loss = tf.reduce_mean(loss)
        grads = tape.gradient(loss, reference.trainable_variables)
        adam.apply_gradients(zip(grads, reference.trainable_variables))
    for got, want in zip(adapted.trainable_variables, reference.trainable_variables):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-14)


def test_shuffling_is_seeded_and_evaluation_is_deterministic():
    x, y = cluster_tasks(2, seed=4, shots=3)

    def trained(seed):
        keras.utils.set_random_seed(0)
        learner = km.Reptile(classifier(), 0.1, 3, inner_batch_size=4, seed=seed)
        learner.compile(optimizer=keras.optimizers.SGD(1.0), loss=ce())
        learner.train_on_batch(x, y)
        return learner

    a, b, c = trained(1), trained(1), trained(2)
    for va, vb in zip(a.model.weights, b.model.weights):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    assert any(
        not np.array_equal(va.numpy(), vc.numpy())
        for va, vc in zip(a.model.weights, c.model.weights)
    )

    # Evaluation shuffles by `seed` alone, not by the training counter (now
    # 2): a's weights in a fresh learner with the same seed predict as a;
    # with another seed, not. adapt() shuffles as predict does.
    def fresh(seed):
        learner = km.Reptile(classifier(), 0.1, 3, inner_batch_size=4, seed=seed)
        learner.compile(loss=ce())
        learner.model.set_weights(a.model.get_weights())
        return learner

    assert int(a._batch_counter.numpy()) == 2
    preds = a.predict(x, verbose=0)
    np.testing.assert_allclose(fresh(1).predict(x, verbose=0), preds, rtol=1e-6, atol=1e-6)
    assert np.abs(fresh(2).predict(x, verbose=0) - preds).max() > 1e-4
    adapted = a.adapt(x["support_x"][1], x["support_y"][1])
    np.testing.assert_allclose(
        adapted.predict(x["query_x"][1], verbose=0), preds[1], rtol=1e-5, atol=1e-5
    )


# ---------------------------------------------------------------------------
# Learning, persistence, export.
# ---------------------------------------------------------------------------
def test_reptile_learns_five_way_one_shot_classification():
    learner = km.Reptile(classifier(), inner_learning_rate=0.1, inner_steps=5)
    learner.compile(
        optimizer=keras.optimizers.SGD(learning_rate=1.0), loss=ce(), metrics=["accuracy"]
    )
    assert_learns_cluster_tasks(learner)


def test_keras_file_round_trip_resumes_exactly(tmp_path):
    x, y = cluster_tasks(4, seed=5, shots=2)
    learner = km.Reptile(
        classifier(), 0.05, 3, inner_batch_size=4, inner_optimizer="adam", eval_inner_steps=5
    )
    learner.compile(optimizer=keras.optimizers.Adam(1e-2), loss=ce(), metrics=["accuracy"])
    learner.fit(x, y, batch_size=2, epochs=1, verbose=0)
    loaded = save_and_load(learner, tmp_path / "reptile.keras")
    assert isinstance(loaded, km.Reptile)
    assert_same_config(learner, loaded)
    assert_variables_equal(learner.variables, loaded.variables)
    assert_resumes_identically(learner, loaded, x, y)


def test_saved_model_exports(tmp_path):
    x, y = cluster_tasks(2, seed=6, shots=2)
    learner = km.Reptile(classifier(), 0.1, 3, inner_batch_size=3)
    learner.compile(optimizer=keras.optimizers.SGD(1.0), loss=ce())
    learner.train_on_batch(x, y)
    assert_exports_serve(learner, x, tmp_path)


# ---------------------------------------------------------------------------
# Arguments.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"inner_optimizer": "rmsprop"}, ValueError, "`inner_optimizer` must be one of"),
        ({"inner_batch_size": 0}, ValueError, "`inner_batch_size` must be an integer >= 1"),
        ({"inner_batch_size": 2.5}, TypeError, "`inner_batch_size` must be an integer"),
        ({"adam_beta_1": 1.0}, ValueError, "`adam_beta_1` must be a finite number >= 0 and < 1"),
        ({"adam_epsilon": 0}, ValueError, "`adam_epsilon` must be a finite number > 0"),
        ({"seed": "0"}, TypeError, "`seed` must be an integer"),
        ({"inner_learning_rate": -1.0}, ValueError, "`inner_learning_rate` must be .* > 0"),
        ({"first_order": True}, TypeError, "does not take `first_order`"),
        ({"adapt_layers": ["dense"]}, TypeError, "does not take `adapt_layers`"),
    ],
)
def test_argument_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        km.Reptile(classifier(), **kwargs)


def _run(x, y, strategy=None, jit_compile=False, inner_batch_size=None, order=None):
    """Variables and predictions for `x` after two steps on the batch of the
    episodes of `x` (in `order`)."""
    keras.utils.set_random_seed(3)
    with (strategy or tf.distribute.get_strategy()).scope():
        learner = km.Reptile(classifier(), 0.1, 3, inner_batch_size=inner_batch_size, seed=11)
        learner.compile(optimizer=keras.optimizers.SGD(0.5), loss=ce(), jit_compile=jit_compile)
    order = list(range(len(y))) if order is None else order
    train = ({k: v[order] for k, v in x.items()}, y[order])
    dataset = tf.data.Dataset.from_tensor_slices(train).batch(len(y))
    learner.fit(dataset, epochs=2, verbose=0)
    # The wrapped model's weights; not the shuffle counter, which counts the
    # episodes of one replica under a strategy.
    return [v.numpy() for v in learner.model.variables], learner.predict(x, verbose=0)


def _assert_same(a, b):
    for va, vb in zip(a[0], b[0], strict=True):
        np.testing.assert_allclose(va, vb, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-4, atol=1e-4)


# Slow (CI's slow step): minutes of XLA compilation on 2 cores.
@pytest.mark.slow
def test_jit_compile_matches_the_default():
    # The mini-batch shuffles come from integer hashing, which XLA computes
    # like TensorFlow.
    x, y = cluster_tasks(4, seed=7, shots=2)
    _assert_same(_run(x, y, inner_batch_size=4), _run(x, y, inner_batch_size=4, jit_compile=True))


def test_mirrored_strategy_matches_the_default():
    # The direction is scaled like a loss, so that summing the replicas'
    # gives the mean over all episodes.
    strategy = mirrored_strategy()
    x, y = cluster_tasks(4, seed=7, shots=2)
    # With mini-batches, episode i of a step without a strategy draws the
    # shuffle of counter c + i; under two replicas, the l-th episode of
    # replica r draws (c + l) * 2 + r, so that no two episodes share one.
    # Replica 0 runs episodes 0 and 1, replica 1 episodes 2 and 3: they draw
    # the shuffles 0, 2, 1, 3, as the run without a strategy on the episodes
    # in the order 0, 2, 1, 3 (and 4, 6, 5, 7 in the second step).
    mirrored = _run(x, y, strategy, inner_batch_size=4)
    _assert_same(_run(x, y, inner_batch_size=4, order=[0, 2, 1, 3]), mirrored)
    # The shuffles matter: in the order 0, 1, 2, 3 the weights differ.
    plain = _run(x, y, inner_batch_size=4)
    assert max(np.abs(a - b).max() for a, b in zip(plain[0], mirrored[0])) > 1e-4
