"""The MAML++ options of km.MAML against a float64 reference written with
raw TensorFlow ops (no Keras, no keras_meta), itself checked by central
finite differences.

With `SGD(learning_rate=1.0)` one `train_on_batch` moves every learner
weight by minus its meta-gradient, so the library's gradient is
`before - after`.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    assert_exports_serve,
    assert_learns_cluster_tasks,
    assert_matches_central_differences,
    assert_resumes_identically,
    assert_same_config,
    ce,
    cluster_tasks,
    episode_list,
    mse,
    regression_batch,
    relu_mlp,
    save_and_load,
)

import keras_meta as km

BN_EPS = 1e-3
BN_MOMENTUM = 0.9
# Every MAML++ option that the end-to-end tests switch on.
MAML_PLUS_PLUS = {
    "multi_step_loss": True,
    "learn_inner_rates": True,
    "per_step_bn": True,
    "first_order_epochs": 1,
}


# ---------------------------------------------------------------------------
# The reference.
# ---------------------------------------------------------------------------
def forward(fast, x, bn=None, exact=True):
    """Dense(4) [-> BatchNorm(gamma, beta), batch statistics] -> tanh -> Dense(1).

    `tf.nn.moments` computes the variance around `stop_gradient(mean)`:
    exact for first derivatives, not for the second derivatives a
    second-order inner loop differentiates. The reference writes the
    variance out (`exact=True`); the library must match that, not the
    truncated `exact=False` version.
    """
    w0, b0, w1, b1 = fast
    h = x @ w0 + b0
    if bn is not None:
        if exact:
            mean = tf.reduce_mean(h, axis=0)
            var = tf.reduce_mean(tf.square(h - mean), axis=0)
        else:
            mean, var = tf.nn.moments(h, axes=[0])
        h = (h - mean) / tf.sqrt(var + BN_EPS) * bn[0] + bn[1]
    return tf.tanh(h) @ w1 + b1


def reference_meta_loss(
    fast0,
    episodes,
    steps,
    rates,
    bn=None,
    step_weights=None,
    first_order=False,
    exact=True,
):
    """Mean over episodes of `Σ_k step_weights[k] · L_query(φ_k)`.

    `rates[i][k]` is the inner rate of weight `i` at step `k`; `bn` is
    `(gammas [K, 4], betas [K, 4])`, the BatchNorm weights of each step.
    """
    step_weights = step_weights if step_weights is not None else [0.0] * (steps - 1) + [1.0]
    total = 0.0
    for sx, sy, qx, qy in episodes:
        fast = list(fast0)
        for k in range(steps):
            bn_k = None if bn is None else (bn[0][k], bn[1][k])
            with tf.GradientTape() as tape:
                tape.watch(fast)
                inner = mse(sy, forward(fast, sx, bn_k, exact))
            grads = tape.gradient(inner, fast)
            if first_order:
                grads = [tf.stop_gradient(g) for g in grads]
            fast = [p - rates[i][k] * g for i, (p, g) in enumerate(zip(fast, grads))]
            if step_weights[k]:
                total += step_weights[k] * mse(qy, forward(fast, qx, bn_k, exact))
    return total / len(episodes)


def paper_step_weights(steps, epoch, annealing_epochs):
    """`get_per_step_loss_importance_vector` of the MAML++ code, transcribed."""
    if epoch >= annealing_epochs:  # multi-step loss switched off
        return np.eye(steps)[-1]
    weights = np.ones(steps) / steps
    decay = 1.0 / steps / annealing_epochs
    floor = 0.03 / steps
    for i in range(steps - 1):
        weights[i] = np.maximum(weights[i] - epoch * decay, floor)
    weights[-1] = np.minimum(weights[-1] + epoch * (steps - 1) * decay, 1.0 - (steps - 1) * floor)
    return weights


def sine_batch(rng, b=2):
    """A float64 sine-regression batch, and its episodes for the reference."""
    x, y = regression_batch(rng, b=b)
    return x, y, episode_list(x, y)


def mlp(bn=False):
    layers = [keras.Input((3,)), keras.layers.Dense(4)]
    if bn:
        layers.append(keras.layers.BatchNormalization(epsilon=BN_EPS, momentum=BN_MOMENTUM))
    layers += [keras.layers.Activation("tanh"), keras.layers.Dense(1)]
    return keras.Sequential(layers)


def by_name(learner, suffix):
    return [v for v in learner.variables if v.name.endswith(suffix)]


def library_gradients(learner, x, y, variables):
    before = [v.numpy().copy() for v in variables]
    logs = learner.train_on_batch(x, y, return_dict=True)
    return [b - v.numpy() for b, v in zip(before, variables)], logs


def assert_all_close(got, expected, rtol=1e-9, atol=1e-12):
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, np.asarray(e), rtol=rtol, atol=atol)


def assert_far_apart(other, expected, rtol=1e-9, atol=1e-12, factor=1e3):
    """Some entry of `other` misses `expected` by `factor` times the
    tolerance of `assert_all_close`: that comparison tells them apart."""
    excess = max(
        float(np.max(np.abs(np.asarray(o) - np.asarray(e)) / (atol + rtol * np.abs(np.asarray(e)))))
        for o, e in zip(other, expected, strict=True)
    )
    assert excess > factor, excess


# ---------------------------------------------------------------------------
# Multi-step loss.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [1, 4])
def test_step_loss_weights_follow_the_paper(steps):
    learner = km.MAML(mlp(), 0.1, steps, multi_step_loss=True, multi_step_loss_epochs=5)
    for epoch in [0, 1, 2, 4, 5, 9]:
        learner.meta_epoch.assign(epoch)
        np.testing.assert_allclose(
            learner.step_loss_weights().numpy(), paper_step_weights(steps, epoch, 5), rtol=1e-6
        )


def test_multi_step_loss_gradient_matches_reference(float64):
    rng = np.random.default_rng(0)
    model = mlp()
    learner = km.MAML(model, 0.1, 3, multi_step_loss=True, multi_step_loss_epochs=4)
    learner.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="mse")
    learner.meta_epoch.assign(1)
    x, y, episodes = sine_batch(rng)
    fast = [tf.constant(v.numpy()) for v in model.trainable_variables]
    weights = paper_step_weights(3, 1, 4)
    with tf.GradientTape() as tape:
        tape.watch(fast)
        loss = reference_meta_loss(fast, episodes, 3, [[0.1] * 3] * 4, step_weights=weights)
    expected = tape.gradient(loss, fast)
    got, logs = library_gradients(learner, x, y, model.trainable_variables)
    assert_all_close(got, expected)
    # fit reports the weighted loss it minimises.
    np.testing.assert_allclose(logs["loss"], float(loss), rtol=1e-6)


# ---------------------------------------------------------------------------
# Derivative-order annealing.
# ---------------------------------------------------------------------------
def test_first_order_epochs_switch_from_fomaml_to_maml_gradients(float64):
    rng = np.random.default_rng(1)
    model = mlp()
    learner = km.MAML(model, 0.2, 2, first_order_epochs=1)
    learner.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="mse")
    x, y, episodes = sine_batch(rng)
    traces = []

    def traced_episode_gradients(*args, **kwargs):
        traces.append(1)  # Python runs only while TensorFlow traces.
        return km.MAML.episode_gradients(learner, *args, **kwargs)

    learner.episode_gradients = traced_episode_gradients

    def reference(first_order):
        fast = [tf.constant(v.numpy()) for v in model.trainable_variables]
        with tf.GradientTape() as tape:
            tape.watch(fast)
            loss = reference_meta_loss(fast, episodes, 2, [[0.2] * 2] * 4, first_order=first_order)
        return tape.gradient(loss, fast)

    first_order, second_order = reference(True), reference(False)
    assert max(np.abs(a - b).max() for a, b in zip(first_order, second_order)) > 1e-6
    got, _ = library_gradients(learner, x, y, model.trainable_variables)
    assert_all_close(got, first_order)  # meta_epoch 0 < 1

    learner.meta_epoch.assign(1)
    expected = reference(False)
    got, _ = library_gradients(learner, x, y, model.trainable_variables)
    assert_all_close(got, expected)
    # One graph holds both orders: the switch did not retrace the step.
    assert traces == [1]


# ---------------------------------------------------------------------------
# Learned per-layer per-step inner rates.
# ---------------------------------------------------------------------------
def test_learned_inner_rates_gradient_matches_reference_and_finite_differences(float64):
    rng = np.random.default_rng(2)
    model = mlp()
    learner = km.MAML(model, 0.1, 2, learn_inner_rates=True)
    learner.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="mse")
    assert [tuple(r.shape) for r in learner.inner_rates] == [(2,)] * 4
    np.testing.assert_allclose([r.numpy() for r in learner.inner_rates], 0.1)
    for rate in learner.inner_rates:
        rate.assign(rng.uniform(0.05, 0.3, size=2))
    x, y, episodes = sine_batch(rng)
    fast = [tf.constant(v.numpy()) for v in model.trainable_variables]
    rates = [tf.constant(r.numpy()) for r in learner.inner_rates]
    with tf.GradientTape() as tape:
        tape.watch(fast + rates)
        loss = reference_meta_loss(fast, episodes, 2, rates)
    expected = tape.gradient(loss, fast + rates)

    # The reference's rate gradient, checked numerically.
    assert_matches_central_differences(
        lambda r: float(reference_meta_loss(fast, episodes, 2, r)),
        [v.numpy() for v in rates],
        [g.numpy() for g in expected[4:]],
        rtol=1e-5,
        atol=1e-9,
    )

    variables = list(model.trainable_variables) + learner.inner_rates
    got, _ = library_gradients(learner, x, y, variables)
    assert_all_close(got, expected)


# ---------------------------------------------------------------------------
# Per-step BatchNorm.
# ---------------------------------------------------------------------------
def test_per_step_batch_norm_gradients_and_statistics(float64):
    rng = np.random.default_rng(3)
    steps = 2
    model = mlp(bn=True)
    bn = model.layers[1]
    learner = km.MAML(
        model,
        0.1,
        steps,
        per_step_bn=True,
        learn_inner_rates=True,
        multi_step_loss=True,
        multi_step_loss_epochs=3,
    )
    learner.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="mse")
    learner.meta_epoch.assign(1)
    (gammas,) = by_name(learner, "gamma_per_step")
    (betas,) = by_name(learner, "beta_per_step")
    (means,) = by_name(learner, "moving_mean_per_step")
    (variances,) = by_name(learner, "moving_variance_per_step")
    assert not means.trainable and gammas.trainable and tuple(gammas.shape) == (steps, 4)
    # Distinct per-step values, so that a mix-up of steps would show.
    gammas.assign(rng.uniform(0.5, 1.5, size=(steps, 4)))
    betas.assign(rng.normal(size=(steps, 4)) * 0.3)
    means.assign(rng.normal(size=(steps, 4)) * 0.1)
    variances.assign(rng.uniform(0.5, 1.5, size=(steps, 4)))
    for rate in learner.inner_rates:
        rate.assign(rng.uniform(0.05, 0.3, size=steps))
    # BatchNorm's own weights are not adapted, so rates exist for the Dense weights only.
    assert len(learner.inner_rates) == 4

    x, y, episodes = sine_batch(rng)
    dense = [
        model.layers[0].kernel,
        model.layers[0].bias,
        model.layers[3].kernel,
        model.layers[3].bias,
    ]
    fast = [tf.constant(v.numpy()) for v in dense]
    rates = [tf.constant(r.numpy()) for r in learner.inner_rates]
    g, b = tf.constant(gammas.numpy()), tf.constant(betas.numpy())
    weights = paper_step_weights(steps, 1, 3)
    with tf.GradientTape() as tape:
        tape.watch(fast + rates + [g, b])
        loss = reference_meta_loss(fast, episodes, steps, rates, (g, b), weights)
    expected = tape.gradient(loss, fast + rates + [g, b])

    # The reference itself is checked by finite differences (exact BatchNorm
    # derivatives); the library is compared with it below.
    with tf.GradientTape() as tape:
        tape.watch([g, b])
        exact = reference_meta_loss(fast, episodes, steps, rates, (g, b), weights, exact=True)
    exact_grads = tape.gradient(exact, [g, b])
    # tf.nn.moments' variance (around stop_gradient(mean)) gives a second-order
    # meta-gradient that differs from the exact one by far more than the
    # tolerance of the comparison below: a library that lost its exact-moments
    # hook (keras_meta/_moments.py) would fail it.
    with tf.GradientTape() as tape:
        tape.watch(fast + rates + [g, b])
        truncated = reference_meta_loss(fast, episodes, steps, rates, (g, b), weights, exact=False)
    truncated_grads = tape.gradient(truncated, fast + rates + [g, b])
    np.testing.assert_allclose(float(truncated), float(loss), rtol=1e-12)  # same values
    assert_far_apart(truncated_grads, expected)
    eps = 1e-6
    for k in range(steps):
        for grad, index in ((exact_grads[0], (k, 1)), (exact_grads[1], (k, 2))):
            shifted = []
            for sign in (1, -1):
                gk, bk = g.numpy().copy(), b.numpy().copy()
                (gk if grad is exact_grads[0] else bk)[index] += sign * eps
                shifted.append(
                    float(
                        reference_meta_loss(
                            fast, episodes, steps, rates, (gk, bk), weights, exact=True
                        )
                    )
                )
            fd = (shifted[0] - shifted[1]) / (2 * eps)
            np.testing.assert_allclose(grad.numpy()[index], fd, rtol=1e-6, atol=1e-10)

    # Moving statistics: the support pass of step k updates copy k; the
    # final query pass updates the copy of the last step. Episodes in order.
    stats = [means.numpy().copy(), variances.numpy().copy()]

    def update(k, h):
        for s, value in zip(stats, [h.mean(0), h.var(0)]):
            s[k] = s[k] * BN_MOMENTUM + value * (1 - BN_MOMENTUM)

    for sx, sy, qx, _ in episodes:
        fast_k = [v.numpy() for v in fast]
        for k in range(steps):
            update(k, sx @ fast_k[0] + fast_k[1])
            with tf.GradientTape() as tape:
                params = [tf.constant(v) for v in fast_k]
                tape.watch(params)
                inner = mse(sy, forward(params, sx, (g[k], b[k])))
            grads = tape.gradient(inner, params)
            fast_k = [p - r.numpy()[k] * d.numpy() for p, r, d in zip(fast_k, rates, grads)]
        update(steps - 1, qx @ fast_k[0] + fast_k[1])

    own = [v.numpy().copy() for v in bn.weights]
    variables = dense + learner.inner_rates + [gammas, betas]
    got, logs = library_gradients(learner, x, y, variables)
    assert_all_close(got, expected)
    np.testing.assert_allclose(logs["loss"], float(loss), rtol=1e-6)
    np.testing.assert_allclose(means.numpy(), stats[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(variances.numpy(), stats[1], rtol=1e-9, atol=1e-12)
    # The model's own BatchNorm weights and statistics are not used.
    for before, v in zip(own, bn.weights):
        np.testing.assert_array_equal(before, v.numpy())


def test_per_step_batch_norm_adapted_model_uses_the_last_step():
    rng = np.random.default_rng(4)
    learner = km.MAML(mlp(bn=True), 0.1, 2, eval_inner_steps=3, per_step_bn=True, bn_mode="running")
    learner.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    x, y, _ = sine_batch(rng)
    x = {k: v.astype("float32") for k, v in x.items()}
    y = y.astype("float32")
    for _ in range(3):
        learner.train_on_batch(x, y)
    adapted = learner.adapt(x["support_x"][0], x["support_y"][0])
    (gammas,) = by_name(learner, "gamma_per_step")
    (means,) = by_name(learner, "moving_mean_per_step")
    np.testing.assert_array_equal(adapted.layers[1].gamma.numpy(), gammas.numpy()[1])
    np.testing.assert_array_equal(adapted.layers[1].moving_mean.numpy(), means.numpy()[1])
    # With running statistics, the standalone model predicts as the learner.
    np.testing.assert_allclose(
        adapted.predict(x["query_x"][0], verbose=0),
        learner.predict(x, verbose=0)[0],
        rtol=1e-5,
        atol=1e-6,
    )


def test_learned_rates_beyond_the_training_steps_are_those_of_the_last_step(float64):
    """With `eval_inner_steps > inner_steps`, evaluation steps past the
    training steps use the learned rates of the last training step."""
    rng = np.random.default_rng(7)
    model = mlp()
    learner = km.MAML(model, 0.1, 2, eval_inner_steps=4, learn_inner_rates=True)
    learner.compile(optimizer="sgd", loss="mse")
    for rate in learner.inner_rates:
        rate.assign(rng.uniform(0.05, 0.3, size=2))
    x, _, _ = sine_batch(rng, b=1)
    sx, sy, qx = x["support_x"][0], x["support_y"][0], x["query_x"][0]

    def adapted_by_hand(schedule):
        fast = [tf.constant(v.numpy()) for v in model.trainable_variables]
        for k in schedule:
            with tf.GradientTape() as tape:
                tape.watch(fast)
                inner = mse(sy, forward(fast, sx))
            grads = tape.gradient(inner, fast)
            fast = [p - r.numpy()[k] * d for p, r, d in zip(fast, learner.inner_rates, grads)]
        return [v.numpy() for v in fast]

    expected = adapted_by_hand([0, 1, 1, 1])
    adapted = learner.adapt(sx, sy)
    assert_all_close([v.numpy() for v in adapted.trainable_variables], expected)
    np.testing.assert_allclose(
        learner.predict(x, verbose=0)[0], forward(expected, qx).numpy(), rtol=1e-9, atol=1e-12
    )
    # Another reading (cycling through the rates) is told apart.
    assert_far_apart(adapted_by_hand([0, 1, 0, 1]), expected)


# ---------------------------------------------------------------------------
# Epoch counting, schedules, persistence, export, learning.
# ---------------------------------------------------------------------------
def test_fit_counts_epochs_and_keeps_the_users_callbacks():
    rng = np.random.default_rng(5)
    x, y, _ = sine_batch(rng, b=4)
    learner = km.MAML(mlp(), 0.1, 2, multi_step_loss=True)
    learner.compile(optimizer="adam", loss="mse")
    seen = []
    callback = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(e))
    learner.fit(x, y, 2, 2, 0, [callback])  # positional callbacks
    assert seen == [0, 1]
    assert int(learner.meta_epoch.numpy()) == 2
    # meta_epoch counts epochs trained, whatever initial_epoch says.
    learner.fit(x, y, batch_size=2, epochs=6, initial_epoch=5, verbose=0)
    assert int(learner.meta_epoch.numpy()) == 3
    assert km.MAML(mlp(), 0.1, 2).meta_epoch is None


def test_cosine_decay_meta_learning_rate_works_and_round_trips(tmp_path):
    rng = np.random.default_rng(6)
    x, y, _ = sine_batch(rng, b=4)
    schedule = keras.optimizers.schedules.CosineDecay(1e-2, decay_steps=10, alpha=0.1)
    learner = km.MAML(mlp(), 0.1, 1)
    learner.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
    learner.fit(x, y, batch_size=1, epochs=1, verbose=0)  # 4 steps
    assert int(learner.optimizer.iterations.numpy()) == 4
    learning_rate = float(learner.optimizer.learning_rate)
    np.testing.assert_allclose(learning_rate, float(schedule(4)), rtol=1e-6)
    path = tmp_path / "cosine.keras"
    learner.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.optimizer.learning_rate, keras.Variable) is False
    np.testing.assert_allclose(float(loaded.optimizer.learning_rate), float(schedule(4)), rtol=1e-6)
    learner.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    for a, b in zip(learner.variables, loaded.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# Slow (CI's slow step): meta-trains, saves, reloads and exports a MAML++ learner.
@pytest.mark.slow
def test_maml_plus_plus_learns_round_trips_and_exports(tmp_path):
    model = relu_mlp(8, 32, 5, batchnorm=True)
    learner = km.MAML(
        model, inner_learning_rate=0.3, inner_steps=2, multi_step_loss_epochs=2, **MAML_PLUS_PLUS
    )
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=100, alpha=0.1)
    learner.compile(optimizer=keras.optimizers.Adam(schedule), loss=ce(), metrics=["accuracy"])
    assert_learns_cluster_tasks(learner, epochs=2, steps_per_epoch=25)
    assert int(learner.meta_epoch.numpy()) == 2

    loaded = save_and_load(learner, tmp_path / "maml_pp.keras")
    assert_same_config(learner, loaded)
    assert int(loaded.meta_epoch.numpy()) == 2
    x, y = cluster_tasks(4, seed=2)
    assert_resumes_identically(learner, loaded, x, y)
    _, meta = assert_exports_serve(learner, x, tmp_path, rtol=1e-5, atol=1e-5)

    # `serve` predicts with the meta-learned weights and the BatchNorm of the
    # last inner step: its per-step gamma/beta and moving statistics (numpy).
    query_x = x["query_x"][0]
    dense_0, bn, _, dense_1 = model.layers
    per_step = {
        name: by_name(learner, name + "_per_step")[0].numpy()
        for name in ("gamma", "beta", "moving_mean", "moving_variance")
    }

    def numpy_serve(step):
        h = query_x @ dense_0.kernel.numpy() + dense_0.bias.numpy()
        mean, variance = per_step["moving_mean"][step], per_step["moving_variance"][step]
        h = (h - mean) / np.sqrt(variance + bn.epsilon) * per_step["gamma"][step]
        h = np.maximum(h + per_step["beta"][step], 0.0)
        return h @ dense_1.kernel.numpy() + dense_1.bias.numpy()

    served = meta.serve(query_x).numpy()
    np.testing.assert_allclose(served, numpy_serve(1), rtol=1e-4, atol=1e-4)
    # The check has power: step 0's BatchNorm, or the model's own (unused by
    # the learner), give other logits.
    assert np.abs(numpy_serve(0) - served).max() > 1e-2
    assert np.abs(model.predict(query_x, verbose=0) - served).max() > 1e-2


# ---------------------------------------------------------------------------
# Arguments.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"multi_step_loss": 1}, TypeError, "`multi_step_loss` must be a bool"),
        ({"multi_step_loss_epochs": 0}, ValueError, "`multi_step_loss_epochs` must be .* >= 1"),
        ({"learn_inner_rates": "yes"}, TypeError, "`learn_inner_rates` must be a bool"),
        ({"per_step_bn": None}, TypeError, "`per_step_bn` must be a bool"),
        ({"first_order_epochs": -1}, ValueError, "`first_order_epochs` must be an integer >= 0"),
        ({"first_order_epochs": 2.0}, TypeError, "`first_order_epochs` must be an integer"),
        (
            {"first_order_epochs": 2, "first_order": True},
            ValueError,
            "cannot be combined with `first_order=True`",
        ),
        ({"per_step_bn": True}, ValueError, "needs a model with BatchNormalization"),
    ],
)
def test_argument_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        km.MAML(mlp(), 0.1, 2, **kwargs)


def test_step_loss_weights_need_the_option():
    with pytest.raises(ValueError, match="needs `multi_step_loss=True`"):
        km.MAML(mlp(), 0.1, 2).step_loss_weights()


# Slow (CI's slow step): minutes of XLA compilation on 2 cores.
@pytest.mark.slow
def test_all_options_under_jit_compile_match_the_default():
    x, y = cluster_tasks(4, seed=3, shots=2)

    def run(jit_compile):
        keras.utils.set_random_seed(3)
        learner = km.MAML(relu_mlp(8, 16, 5, batchnorm=True), 0.3, 2, **MAML_PLUS_PLUS)
        learner.compile(optimizer=keras.optimizers.SGD(0.1), loss=ce(), jit_compile=jit_compile)
        learner.fit(x, y, batch_size=2, epochs=2, verbose=0)  # first, then second order
        return [v.numpy() for v in learner.variables], learner.predict(x, verbose=0)

    plain, jitted = run(False), run(True)
    for a, b in zip(plain[0], jitted[0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(plain[1], jitted[1], rtol=1e-4, atol=1e-4)
