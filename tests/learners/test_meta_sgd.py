"""Meta-SGD: learned per-element inner rates, checked against a float64
reference written with raw TensorFlow ops (no Keras, no keras_meta) and
central finite differences."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    assert_exports_serve,
    assert_learns_cluster_tasks,
    assert_matches_central_differences,
    assert_resumes_identically,
    ce,
    classifier,
    cluster_tasks,
    dense_net,
    episode_list,
    mlp_forward,
    mse,
    reference_meta_loss,
    regression_batch,
    save_and_load,
)

import keras_meta as km


# ---------------------------------------------------------------------------
# Meta-gradient.
# ---------------------------------------------------------------------------
def reference(w, rates, episodes, first_order=False):
    """The mean query loss after two inner steps with per-element `rates`,
    for a Dense(4, tanh) -> Dense(1) network on explicit weights `w`."""

    def forward(fast, x):
        return mlp_forward(fast, x, activations=(tf.nn.tanh,))

    return reference_meta_loss(forward, mse, w, episodes, rates, 2, first_order)


def make_learner(rng, first_order=False):
    model = dense_net(3, 1, (4,), activation="tanh")
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
    episodes = episode_list(x, y)
    w = [tf.constant(v.numpy()) for v in learner.model.trainable_variables]
    rates = [tf.constant(r.numpy()) for r in learner.inner_rates]
    with tf.GradientTape() as tape:
        tape.watch(w + rates)
        loss = reference(w, rates, episodes, first_order)
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
    episodes = episode_list(x, y)
    w = [tf.constant(v.numpy()) for v in learner.model.trainable_variables]
    rates = [r.numpy() for r in learner.inner_rates]
    rate_tensors = [tf.constant(r) for r in rates]
    with tf.GradientTape() as tape:
        tape.watch(rate_tensors)
        loss = reference(w, rate_tensors, episodes)
    grads = tape.gradient(loss, rate_tensors)
    assert_matches_central_differences(
        lambda r: float(reference(w, r, episodes)),
        rates,
        [g.numpy() for g in grads],
        rtol=1e-5,
        atol=1e-9,
        count=3,
    )


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
    assert_learns_cluster_tasks(learner)
    assert any(not np.allclose(r.numpy(), 0.5) for r in learner.inner_rates)

    loaded = save_and_load(learner, tmp_path / "meta_sgd.keras")
    assert isinstance(loaded, km.MetaSGD)
    for a, b in zip(learner.inner_rates, loaded.inner_rates):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x, y = cluster_tasks(4, seed=2)
    assert_resumes_identically(learner, loaded, x, y, optimizer=False)


def test_saved_model_exports(tmp_path):
    x, y = cluster_tasks(2, seed=3)
    learner = km.MetaSGD(classifier(), inner_learning_rate=0.3, inner_steps=2)
    learner.compile(optimizer=keras.optimizers.Adam(1e-2), loss=ce())
    learner.train_on_batch(x, y)
    assert_exports_serve(learner, x, tmp_path)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"inner_learning_rate": 0.0}, ValueError, "`inner_learning_rate` must be .* > 0"),
        ({"inner_steps": 0}, ValueError, "`inner_steps` must be an integer >= 1"),
        ({"first_order": 1}, TypeError, "`first_order` must be a bool"),
        ({"adapt_layers": ["nope"]}, ValueError, "names layers \\['nope'\\]"),
    ],
)
def test_argument_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        km.MetaSGD(classifier(), **kwargs)
