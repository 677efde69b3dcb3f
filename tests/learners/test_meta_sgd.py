"""Meta-SGD: learned per-element inner rates, checked against a float64
reference written with raw TensorFlow ops (no Keras, no keras_meta) and
central finite differences."""

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
        [keras.Input((8,)), keras.layers.Dense(32, "relu"), keras.layers.Dense(5)]
    )


# ---------------------------------------------------------------------------
# Meta-gradient.
# ---------------------------------------------------------------------------
def mlp(w, x):
    return tf.nn.tanh(x @ w[0] + w[1]) @ w[2] + w[3]


def mse(y, p):
    return tf.reduce_mean(tf.square(y - p))


def reference_meta_loss(w, rates, episodes, steps, first_order):
    total = 0.0
    for sx, sy, qx, qy in episodes:
        fast = list(w)
        for _ in range(steps):
            with tf.GradientTape() as tape:
                tape.watch(fast)
                inner = mse(sy, mlp(fast, sx))
            grads = tape.gradient(inner, fast)
            if first_order:
                grads = [tf.stop_gradient(g) for g in grads]
            fast = [p - a * g for p, a, g in zip(fast, rates, grads)]
        total += mse(qy, mlp(fast, qx))
    return total / len(episodes)


def regression_batch(rng, b=2, s=5, q=4, d=3):
    sx, qx = rng.normal(size=(b, s, d)), rng.normal(size=(b, q, d))
    a = rng.normal(size=(b, d, 1))
    x = {"support_x": sx, "support_y": np.sin(sx @ a), "query_x": qx}
    return x, np.sin(qx @ a)


def make_learner(rng, first_order=False):
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, "tanh"), keras.layers.Dense(1)]
    )
    learner = km.MetaSGD(model, inner_learning_rate=0.1, inner_steps=2, first_order=first_order)
    learner.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="mse")
    # Distinct rates per element, so that a mix-up of elements would show.
    for rate in learner.inner_rates:
        rate.assign(rng.uniform(0.05, 0.3, size=rate.shape))
    return learner


@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradient_of_weights_and_rates_matches_reference(float64, first_order):
    rng = np.random.default_rng(0)
    learner = make_learner(rng, first_order)
    x, y = regression_batch(rng)
    episodes = [(x["support_x"][i], x["support_y"][i], x["query_x"][i], y[i]) for i in range(2)]
    w = [tf.constant(v.numpy()) for v in learner.model.trainable_variables]
    rates = [tf.constant(r.numpy()) for r in learner.inner_rates]
    with tf.GradientTape() as tape:
        tape.watch(w + rates)
        loss = reference_meta_loss(w, rates, episodes, 2, first_order)
    expected = tape.gradient(loss, w + rates)

    variables = list(learner.model.trainable_variables) + learner.inner_rates
    before = [v.numpy().copy() for v in variables]
    logs = learner.train_on_batch(x, y, return_dict=True)
    got = [b - v.numpy() for b, v in zip(before, variables)]
    np.testing.assert_allclose(logs["loss"], float(loss), rtol=1e-6)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e.numpy(), rtol=1e-9, atol=1e-12)
    # The rates do get a gradient, first order included.
    assert all(np.abs(g).max() > 1e-6 for g in got[4:])


def test_reference_rate_gradient_matches_finite_differences(float64):
    rng = np.random.default_rng(1)
    learner = make_learner(rng)
    x, y = regression_batch(rng)
    episodes = [(x["support_x"][i], x["support_y"][i], x["query_x"][i], y[i]) for i in range(2)]
    w = [tf.constant(v.numpy()) for v in learner.model.trainable_variables]
    rates = [r.numpy() for r in learner.inner_rates]
    rate_tensors = [tf.constant(r) for r in rates]
    with tf.GradientTape() as tape:
        tape.watch(rate_tensors)
        loss = reference_meta_loss(w, rate_tensors, episodes, 2, False)
    grads = tape.gradient(loss, rate_tensors)
    eps = 1e-6
    for k in range(len(rates)):
        for idx in list(np.ndindex(rates[k].shape))[:3]:
            plus = [r.copy() for r in rates]
            minus = [r.copy() for r in rates]
            plus[k][idx] += eps
            minus[k][idx] -= eps
            fd = (
                float(reference_meta_loss(w, plus, episodes, 2, False))
                - float(reference_meta_loss(w, minus, episodes, 2, False))
            ) / (2 * eps)
            np.testing.assert_allclose(grads[k].numpy()[idx], fd, rtol=1e-5, atol=1e-9)


# ---------------------------------------------------------------------------
# Rates as learner weights.
# ---------------------------------------------------------------------------
def test_rates_are_learner_weights_initialised_to_the_inner_rate():
    model = classifier()
    learner = km.MetaSGD(model, inner_learning_rate=0.2, adapt_layers=["dense_1"])
    # Only adapted weights get rates, one per element.
    adapted = model.layers[1].trainable_variables
    assert [tuple(r.shape) for r in learner.inner_rates] == [tuple(v.shape) for v in adapted]
    for rate in learner.inner_rates:
        np.testing.assert_allclose(rate.numpy(), 0.2)
        assert any(rate is v for v in learner.trainable_variables)


def test_unbuilt_model_gets_its_rates_when_the_learner_is_built():
    model = keras.Sequential([keras.layers.Dense(16, "relu"), keras.layers.Dense(5)])
    learner = km.MetaSGD(model, inner_learning_rate=0.1)
    assert learner.inner_rates == []
    learner.compile(optimizer="adam", loss=ce())
    x, y = cluster_tasks(2, seed=0)
    learner.fit(x, y, epochs=1, verbose=0)
    assert [tuple(r.shape) for r in learner.inner_rates] == [(8, 16), (16,), (16, 5), (5,)]
    assert any(not np.allclose(r.numpy(), 0.1) for r in learner.inner_rates)


def test_meta_sgd_learns_and_round_trips(tmp_path):
    learner = km.MetaSGD(classifier(), inner_learning_rate=0.5, inner_steps=1)
    learner.compile(optimizer=keras.optimizers.Adam(3e-3), loss=ce(), metrics=["accuracy"])
    test = cluster_tasks(200, seed=99)
    before = learner.evaluate(*test, batch_size=50, verbose=0, return_dict=True)
    train = tf.data.Dataset.from_tensor_slices(cluster_tasks(8 * 100, seed=1)).batch(8)
    learner.fit(train, epochs=1, verbose=0)
    after = learner.evaluate(*test, batch_size=50, verbose=0, return_dict=True)
    assert after["accuracy"] > 0.6  # chance: 0.2
    assert after["accuracy"] > before["accuracy"] + 0.05
    assert any(not np.allclose(r.numpy(), 0.5) for r in learner.inner_rates)

    path = tmp_path / "meta_sgd.keras"
    learner.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, km.MetaSGD)
    for a, b in zip(learner.inner_rates, loaded.inner_rates):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x, y = cluster_tasks(4, seed=2)
    learner.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    assert len(learner.variables) == len(loaded.variables)
    for a, b in zip(learner.variables, loaded.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_saved_model_exports(tmp_path):
    x, y = cluster_tasks(2, seed=3)
    learner = km.MetaSGD(classifier(), inner_learning_rate=0.3, inner_steps=2)
    learner.compile(optimizer=keras.optimizers.Adam(1e-2), loss=ce())
    learner.train_on_batch(x, y)
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
    "kwargs, error, match",
    [
        ({"inner_learning_rate": 0.0}, ValueError, "`inner_learning_rate` to be > 0"),
        ({"inner_steps": 0}, ValueError, "`inner_steps` to be >= 1"),
        ({"first_order": 1}, TypeError, "`first_order` to be a bool"),
        ({"adapt_layers": ["nope"]}, ValueError, "names layers \\['nope'\\]"),
    ],
)
def test_argument_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        km.MetaSGD(classifier(), **kwargs)
