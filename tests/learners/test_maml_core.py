"""MAML and the MetaLearner base: the Keras surface, persistence and export."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    assert_variables_equal,
    ce,
    cluster_tasks,
    dense_net,
    episode_list,
    mirrored_strategy,
    mlp_forward,
    mse,
    np_cross_entropy,
    regression_batch,
    relu_mlp,
)

import keras_meta as km

WAYS, SHOTS, QUERIES, DIM = 3, 2, 4, 5


def gaussian_tasks(n, seed=0, ways=WAYS, shots=SHOTS, queries=QUERIES):
    """`n` episodes of `ways` Gaussian clusters with random means in all DIM dims."""
    return cluster_tasks(n, seed, ways, shots, queries, dim=DIM, informative=DIM, signal_noise=0.5)


def make_model(kind="sequential", outputs=WAYS):
    if kind == "sequential":
        return dense_net(DIM, outputs, (16,))
    if kind == "functional":
        inp = keras.Input((DIM,))
        h = keras.layers.Dense(16, "relu")(inp)
        return keras.Model(inp, keras.layers.Dense(outputs)(h))
    return SubclassedNet(outputs)


@keras.saving.register_keras_serializable(package="tests")
class SubclassedNet(keras.Model):
    def __init__(self, outputs, **kwargs):
        super().__init__(**kwargs)
        self.outputs_ = outputs
        self.hidden = keras.layers.Dense(16, activation="relu")
        self.head = keras.layers.Dense(outputs)

    def call(self, x):
        return self.head(self.hidden(x))

    def get_config(self):
        return {**super().get_config(), "outputs": self.outputs_}


def make_learner(kind="sequential", **kwargs):
    kwargs.setdefault("inner_learning_rate", 0.4)
    kwargs.setdefault("inner_steps", 2)
    learner = km.MAML(make_model(kind), **kwargs)
    learner.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=ce(),
        metrics=["accuracy"],
    )
    return learner


def weights_of(model):
    return [v.numpy().copy() for v in model.weights]


@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed"])
def test_fit_predict_and_adapt_agree_for_every_model_kind(kind, tmp_path):
    learner = make_learner(kind)
    x, y = gaussian_tasks(40)
    history = learner.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert set(history.history) == {"loss", "accuracy"}
    x_test, y_test = gaussian_tasks(4, seed=9)
    preds = learner.predict(x_test, verbose=0)
    assert preds.shape == (4, WAYS * QUERIES, WAYS)
    before = weights_of(learner)
    for i in range(4):
        adapted = learner.adapt(x_test["support_x"][i], x_test["support_y"][i])
        assert isinstance(adapted, keras.Model) and adapted is not learner.model
        np.testing.assert_allclose(
            adapted.predict(x_test["query_x"][i], verbose=0), preds[i], rtol=1e-5, atol=1e-5
        )
    assert_variables_equal(weights_of(learner), before)
    # The adapted model saves as a SavedModel that plain TensorFlow serves.
    path = str(tmp_path / "adapted")
    adapted.export(path, verbose=False)
    served = tf.saved_model.load(path)
    np.testing.assert_allclose(
        served.serve(x_test["query_x"][3]).numpy(), preds[3], rtol=1e-5, atol=1e-5
    )


def test_adapt_really_adapts_and_steps_argument():
    learner = make_learner()
    x, _ = gaussian_tasks(1)
    sx, sy = x["support_x"][0], x["support_y"][0]
    base = learner.model.predict(sx, verbose=0)
    one = learner.adapt(sx, sy, steps=1).predict(sx, verbose=0)
    five = learner.adapt(sx, sy, steps=5).predict(sx, verbose=0)
    loss = ce()
    losses = [float(loss(sy, p)) for p in (base, one, five)]
    assert losses[0] > losses[1] > losses[2]
    with pytest.raises(ValueError, match="`steps` must be an integer >= 1"):
        learner.adapt(sx, sy, steps=0)


def test_dynamic_and_static_batch_sizes_give_the_same_result():
    x, y = gaussian_tasks(12)
    ds = tf.data.Dataset.from_tensor_slices((x, y))

    def trained(datasets):
        keras.utils.set_random_seed(7)
        learner = make_learner()
        for dataset in datasets:  # one optimizer: consecutive steps
            learner.fit(dataset, epochs=1, verbose=0, shuffle=False)
        assert int(learner.optimizer.iterations) == 3
        return weights_of(learner)

    # The same batches of B = 5, 5, 2 episodes: without drop_remainder B is
    # dynamic; with it, static (the last two episodes as their own dataset).
    dynamic = ds.batch(5)
    static = [ds.take(10).batch(5, drop_remainder=True), ds.skip(10).batch(2, drop_remainder=True)]
    assert dynamic.element_spec[1].shape[0] is None
    assert [d.element_spec[1].shape[0] for d in static] == [5, 2]
    a, b = trained([dynamic]), trained(static)
    for va, vb in zip(a, b, strict=True):
        np.testing.assert_allclose(va, vb, rtol=1e-6, atol=1e-7)
    # The steps moved the weights (the comparison is not of the initial ones).
    keras.utils.set_random_seed(7)
    assert max(np.abs(va - vb).max() for va, vb in zip(a, weights_of(make_learner()))) > 1e-3
    # Evaluation itself does not depend on how the episodes are batched.
    learner = make_learner()
    a = learner.evaluate(x, y, batch_size=12, verbose=0, return_dict=True)
    b = learner.evaluate(ds.batch(5), verbose=0, return_dict=True)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    np.testing.assert_allclose(a["accuracy"], b["accuracy"], rtol=1e-6)


def test_fit_validation_data_reports_the_adapted_query_loss_and_accuracy():
    # Validation adapts with eval_inner_steps (3, not the 1 of training), as
    # evaluate and predict do; the numbers are those of the predictions.
    x, y = gaussian_tasks(16)
    x_val, y_val = gaussian_tasks(6, seed=8)
    learner = make_learner(inner_steps=1, eval_inner_steps=3)
    validation = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(4)  # B = 4, 2
    history = learner.fit(x, y, batch_size=8, epochs=2, validation_data=validation, verbose=0)
    assert len(history.history["val_loss"]) == 2
    preds = learner.predict(x_val, verbose=0).astype("float64")
    accuracy = np.mean(preds.argmax(-1) == y_val)
    loss = np.mean([np_cross_entropy(p, t) for p, t in zip(preds, y_val)])
    np.testing.assert_allclose(history.history["val_accuracy"][-1], accuracy, rtol=1e-6)
    np.testing.assert_allclose(history.history["val_loss"][-1], loss, rtol=1e-5)
    # With the training inner steps the numbers differ: the check has power.
    one_step = km.evaluate(learner, (x_val, y_val), num_episodes=6, inner_steps=1)
    assert abs(one_step["loss"] - loss) > 1e-3


def test_regularisation_losses_enter_the_inner_loss(float64):
    # The wrapped model's weight penalties are part of the support loss that
    # the inner loop descends (evaluated at the fast weights); the outer loss
    # is the query loss of the adapted model. Reference: raw TensorFlow.
    rng = np.random.default_rng(4)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            # Factors that float32 represents exactly (Keras may round them).
            keras.layers.Dense(4, "tanh", kernel_regularizer=keras.regularizers.L2(0.25)),
            keras.layers.Dense(1, kernel_regularizer=keras.regularizers.L2(0.125)),
        ]
    )
    learner = km.MAML(model, inner_learning_rate=0.3, inner_steps=2)
    learner.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="mse")
    x, y = regression_batch(rng, b=2)
    weights = [tf.constant(v.numpy()) for v in model.trainable_variables]

    def penalty(w):
        return 0.25 * tf.reduce_sum(tf.square(w[0])) + 0.125 * tf.reduce_sum(tf.square(w[2]))

    def meta_loss(w, lam):
        total = 0.0
        for sx, sy, qx, qy in episode_list(x, y):
            fast = list(w)
            for _ in range(2):
                with tf.GradientTape() as tape:
                    tape.watch(fast)
                    inner = mse(sy, mlp_forward(fast, sx, (tf.nn.tanh,))) + lam * penalty(fast)
                fast = [p - 0.3 * g for p, g in zip(fast, tape.gradient(inner, fast))]
            total += mse(qy, mlp_forward(fast, qx, (tf.nn.tanh,)))
        return total / len(y)

    def gradient(lam):
        with tf.GradientTape() as tape:
            tape.watch(weights)
            loss = meta_loss(weights, lam)
        return [g.numpy() for g in tape.gradient(loss, weights)], float(loss)

    (expected, loss), (unpenalised, _) = gradient(1.0), gradient(0.0)
    logs = learner.train_on_batch(x, y, return_dict=True)
    got = [w.numpy() - v.numpy() for w, v in zip(weights, model.trainable_variables)]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(logs["loss"], loss, rtol=1e-9)
    assert max(np.abs(e - u).max() for e, u in zip(expected, unpenalised)) > 1e-4
    # adapt() descends the same penalised support loss.
    adapted = learner.adapt(x["support_x"][0], x["support_y"][0])
    fast = [tf.constant(v.numpy()) for v in model.trainable_variables]
    for _ in range(2):
        with tf.GradientTape() as tape:
            tape.watch(fast)
            sx, sy = x["support_x"][0], x["support_y"][0]
            inner = mse(sy, mlp_forward(fast, sx, (tf.nn.tanh,))) + penalty(fast)
        fast = [p - 0.3 * g for p, g in zip(fast, tape.gradient(inner, fast))]
    for a, f in zip(adapted.trainable_variables, fast, strict=True):
        np.testing.assert_allclose(a.numpy(), f.numpy(), rtol=1e-9, atol=1e-12)


def test_learner_export_serves_adapt_and_predict(tmp_path):
    learner = make_learner()
    x, y = gaussian_tasks(16)
    learner.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "meta_model")
    learner.export(path, verbose=False)
    served = tf.saved_model.load(path)
    preds = learner.predict(x, verbose=0)
    for i in (0, 5):
        out = served.adapt_and_predict(x["support_x"][i], x["support_y"][i], x["query_x"][i])
        np.testing.assert_allclose(out.numpy(), preds[i], rtol=1e-5, atol=1e-5)
    # The meta-initialisation is served too.
    np.testing.assert_allclose(
        served.serve(x["query_x"][0]).numpy(),
        learner.model.predict(x["query_x"][0], verbose=0),
        rtol=1e-5,
        atol=1e-6,
    )


def test_exported_meta_model_loads_without_keras_meta(tmp_path):
    learner = make_learner()
    x, _ = gaussian_tasks(2)
    learner.predict(x, verbose=0)
    path = str(tmp_path / "meta_model")
    learner.export(path, verbose=False)
    np.save(tmp_path / "sx.npy", x["support_x"][0])
    np.save(tmp_path / "sy.npy", x["support_y"][0])
    np.save(tmp_path / "qx.npy", x["query_x"][0])
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "assert 'keras_meta' not in sys.modules\n"
        f"d = {str(tmp_path)!r}\n"
        "m = tf.saved_model.load(d + '/meta_model')\n"
        "out = m.adapt_and_predict(np.load(d + '/sx.npy'), np.load(d + '/sy.npy'),"
        " np.load(d + '/qx.npy'))\n"
        "assert 'keras_meta' not in sys.modules\n"
        "np.save(d + '/out.npy', out.numpy())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=env)
    np.testing.assert_allclose(
        np.load(tmp_path / "out.npy"), learner.predict(x, verbose=0)[0], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("kind", ["functional", "subclassed"])
def test_keras_file_round_trip_resumes_exactly(kind, tmp_path):
    x, y = gaussian_tasks(24)
    learner = make_learner(kind, eval_inner_steps=3, first_order=True)
    learner.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "learner.keras")
    learner.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is km.MAML
    for key in ("inner_learning_rate", "inner_steps", "eval_inner_steps", "first_order"):
        assert getattr(loaded, key) == getattr(learner, key)
    assert_variables_equal(weights_of(loaded), weights_of(learner))
    assert_variables_equal(
        [v.numpy() for v in loaded.optimizer.variables],
        [v.numpy() for v in learner.optimizer.variables],
    )
    # Training continues identically.
    learner.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert_variables_equal(weights_of(loaded), weights_of(learner))


def test_mirrored_strategy_gives_the_same_meta_gradient():
    strategy = mirrored_strategy()
    x, y = gaussian_tasks(4)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)

    def run(strategy):
        keras.utils.set_random_seed(3)
        with strategy.scope():
            learner = km.MAML(make_model(), inner_learning_rate=0.4, inner_steps=2)
            learner.compile(
                optimizer=keras.optimizers.SGD(learning_rate=1.0),
                loss=ce(),
            )
        before = [v.numpy().copy() for v in learner.model.trainable_variables]
        learner.fit(ds, epochs=1, verbose=0)
        after = [v.numpy() for v in learner.model.trainable_variables]
        return [b - a for b, a in zip(before, after)]

    plain = run(tf.distribute.get_strategy())
    mirrored = run(strategy)
    for p, m in zip(plain, mirrored):
        np.testing.assert_allclose(m, p, rtol=1e-4, atol=1e-6)
    assert max(np.abs(p).max() for p in plain) > 1e-3


# Slow (CI's slow step): minutes of XLA compilation on 2 cores.
@pytest.mark.slow
def test_jit_compile_gives_the_same_results():
    x, y = gaussian_tasks(16)
    out = []
    for jit in (False, True):
        keras.utils.set_random_seed(5)
        learner = km.MAML(make_model(), inner_learning_rate=0.4, inner_steps=2)
        learner.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.1),
            loss=ce(),
            metrics=["accuracy"],
            jit_compile=jit,
        )
        assert learner.jit_compile == jit
        learner.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        out.append(
            (weights_of(learner), learner.evaluate(x, y, verbose=0), learner.predict(x, verbose=0))
        )
    for a, b in zip(out[0][0], out[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-4)
    np.testing.assert_allclose(out[0][2], out[1][2], rtol=1e-4, atol=1e-4)


def test_sinusoid_meta_training_lowers_post_adaptation_mse():
    net = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(40, "relu"),
            keras.layers.Dense(40, "relu"),
            keras.layers.Dense(1),
        ]
    )
    learner = km.MAML(net, inner_learning_rate=0.01, inner_steps=1, eval_inner_steps=5)
    learner.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    test = km.data.sinusoid(shots=10, queries=10, seed=123).take(100).batch(100)
    before = learner.evaluate(test, verbose=0)
    learner.fit(
        km.data.sinusoid(shots=10, queries=10, seed=1).batch(25),
        steps_per_epoch=600,
        epochs=1,
        verbose=0,
    )
    after = learner.evaluate(test, verbose=0)
    assert after < 0.7 * before


def test_transductive_and_running_batch_norm_modes():
    x, y = gaussian_tasks(8)
    learner = make_learner()
    learner = km.MAML(
        relu_mlp(DIM, 8, WAYS, batchnorm=True), inner_learning_rate=0.4, inner_steps=1
    )
    learner.compile(optimizer="adam", loss=ce())
    learner.fit(x, y, batch_size=4, epochs=1, verbose=0)
    bn = learner.model.layers[1]
    moving = bn.moving_mean.numpy().copy()
    assert np.abs(moving).max() > 0  # fit updated the moving statistics
    transductive = learner.predict(x, verbose=0)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), moving)  # predict did not
    running = km.MAML.from_config({**learner.get_config(), "bn_mode": "running"})
    running.set_weights(learner.get_weights())
    running.compile(loss=ce())
    running_preds = running.predict(x, verbose=0)
    assert np.abs(running_preds - transductive).max() > 1e-3
    # With running statistics, the adapted model and predict agree exactly.
    adapted = running.adapt(x["support_x"][0], x["support_y"][0])
    np.testing.assert_allclose(
        adapted.predict(x["query_x"][0], verbose=0), running_preds[0], rtol=1e-5, atol=1e-5
    )


def test_adapt_layers_keeps_other_layers_fixed():
    model = make_model("functional")
    head = model.layers[-1].name
    learner = km.MAML(model, inner_learning_rate=0.5, inner_steps=3, adapt_layers=[head])
    learner.compile(loss=ce())
    x, _ = gaussian_tasks(1)
    adapted = learner.adapt(x["support_x"][0], x["support_y"][0])
    body = model.layers[1]
    for a, b in zip(adapted.layers[1].weights, body.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert np.abs(adapted.layers[-1].kernel.numpy() - model.layers[-1].kernel.numpy()).max() > 0
    with pytest.raises(ValueError, match="names layers \\['nope'\\]"):
        km.MAML(model, adapt_layers=["nope"]).adapted_mask()


# ---------------------------------------------------------------------------
# Validation errors.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"inner_learning_rate": 0.0}, ValueError, "`inner_learning_rate` must be .* > 0"),
        ({"inner_learning_rate": -1}, ValueError, "`inner_learning_rate` must be .* > 0"),
        ({"inner_learning_rate": "big"}, TypeError, "`inner_learning_rate` must be a finite"),
        ({"inner_steps": 0}, ValueError, "`inner_steps` must be an integer >= 1"),
        ({"inner_steps": 1.5}, TypeError, "`inner_steps` must be an integer"),
        ({"eval_inner_steps": 0}, ValueError, "`eval_inner_steps` must be an integer >= 1"),
        ({"first_order": "yes"}, TypeError, "`first_order` must be a bool"),
        ({"bn_mode": "batch"}, ValueError, "`bn_mode` must be one of"),
    ],
)
def test_constructor_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        km.MAML(make_model(), **kwargs)


def test_model_must_be_a_keras_model():
    with pytest.raises(TypeError, match="Expected `model` to be a keras.Model"):
        km.MAML(lambda x: x)


def _bad(x, key, value):
    x = dict(x)
    x[key] = value
    return x


@pytest.mark.parametrize(
    "mutate, match",
    [
        (
            lambda x, y: ({k: v for k, v in x.items() if k != "query_x"}, y),
            "missing: \\['query_x'\\]",
        ),
        (lambda x, y: (_bad(x, "query_y", y), y), "unexpected: \\['query_y'\\]"),
        (lambda x, y: (x["support_x"], y), "to be a dict"),
        (lambda x, y: (_bad(x, "query_x", x["query_x"][..., :3]), y), "same feature shape"),
        (lambda x, y: (_bad(x, "support_x", x["support_x"][:, :, None]), y), "`query_x` of rank 4"),
        (lambda x, y: (_bad(x, "support_y", x["support_y"][:, :-1]), y), "S=6 entries"),
        (
            lambda x, y: (_bad(x, "support_y", x["support_y"][..., None]), y),
            "int labels \\[B, S\\]",
        ),
        (lambda x, y: (x, y[:, :-1]), "Q=12 entries"),
        (lambda x, y: (x, y.astype("float32")), "same kind as `support_y`"),
        (lambda x, y: (_bad(x, "query_x", x["query_x"][:2]), y), "same number of episodes B"),
        (lambda x, y: (_bad(x, "support_y", x["support_y"] + 1), y), "\\[0, 3\\).*from 1 to 3"),
        (lambda x, y: (x, y - 1), "\\[0, 3\\).*from -1 to 1"),
    ],
)
def test_episode_validation_errors(mutate, match):
    from keras_meta.learners._episodes import unpack_episodes

    x, y = gaussian_tasks(3)
    bx, by = mutate(x, y)
    with pytest.raises(ValueError, match=match):
        unpack_episodes(bx, by, num_outputs=WAYS)


def test_fit_reports_episode_errors():
    learner = make_learner()
    x, y = gaussian_tasks(4)
    with pytest.raises(ValueError, match="same feature shape"):
        learner.fit(_bad(x, "query_x", x["query_x"][..., :3]), y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="S=6 entries"):
        learner.fit(_bad(x, "support_y", x["support_y"][:, :-1]), y, epochs=1, verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="support_y` must be < 3"):
        learner.evaluate(_bad(x, "support_y", x["support_y"] + 1), y, verbose=0)


def test_out_of_range_labels_are_caught_at_run_time():
    learner = make_learner()
    x, y = gaussian_tasks(4)
    learner.fit(x, y, batch_size=2, epochs=1, verbose=0)
    ds = tf.data.Dataset.from_tensor_slices((x, y + 5)).batch(2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="must be < 3"):
        learner.fit(ds, epochs=1, verbose=0)


def test_compile_needs_a_single_loss_and_no_sample_weights():
    learner = km.MAML(make_model())
    with pytest.raises(ValueError, match="need a `loss`"):
        learner.compile(optimizer="adam")
    with pytest.raises(ValueError, match="single loss"):
        learner.compile(optimizer="adam", loss=["mse", "mse"])
    x, _ = gaussian_tasks(1)
    with pytest.raises(RuntimeError, match="no loss yet"):
        learner.adapt(x["support_x"][0], x["support_y"][0])
    learner = make_learner()
    x, y = gaussian_tasks(4)
    with pytest.raises(ValueError, match="sample weights"):
        learner.fit(x, y, sample_weight=np.ones(4), epochs=1, verbose=0)


def test_other_keras_backend_fails_at_import_with_instructions():
    env = {**os.environ, "KERAS_BACKEND": "numpy"}
    proc = subprocess.run(
        [sys.executable, "-c", "import keras_meta"], capture_output=True, text=True, env=env
    )
    assert proc.returncode != 0
    assert "KERAS_BACKEND=tensorflow" in proc.stderr
    assert "backend='numpy'" in proc.stderr
