"""Regression task families: sinusoid and Bayesian linear regression."""

import math

import numpy as np
import pytest
import tensorflow as tf

import keras_meta as km


def take(dataset, n):
    return list(dataset.take(n).as_numpy_iterator())


def fit_sinusoid(x, y):
    """Exact fit of y = a sin x + b cos x = A sin(x - phase); returns (A, phase, fit)."""
    basis = np.concatenate([np.sin(x), np.cos(x)], axis=1).astype(np.float64)
    (a, b), *_ = np.linalg.lstsq(basis, y[:, 0].astype(np.float64), rcond=None)
    amplitude, phase = math.hypot(a, b), math.atan2(-b, a)
    return amplitude, phase, lambda xs: amplitude * np.sin(xs - phase)


def test_sinusoid_shapes_and_dtypes():
    ds = km.data.sinusoid(shots=5, queries=7, seed=0)
    inputs, query_y = next(iter(ds))
    assert inputs["support_x"].shape == (5, 1) and inputs["support_y"].shape == (5, 1)
    assert inputs["query_x"].shape == (7, 1) and query_y.shape == (7, 1)
    for t in (*inputs.values(), query_y):
        assert t.dtype == tf.float32
    batched, by = next(iter(ds.batch(3)))
    assert batched["support_x"].shape == (3, 5, 1) and by.shape == (3, 7, 1)


def test_sinusoid_one_function_per_episode_within_ranges():
    amplitudes = []
    for inputs, query_y in take(km.data.sinusoid(shots=10, queries=10, seed=1), 50):
        sx, sy, qx = inputs["support_x"], inputs["support_y"], inputs["query_x"]
        assert sx.min() >= -5 and sx.max() <= 5 and qx.min() >= -5 and qx.max() <= 5
        amplitude, phase, f = fit_sinusoid(sx, sy)
        # The support's function predicts the query: same A and phase in both.
        np.testing.assert_allclose(f(qx), query_y, atol=1e-4)
        phase = phase % (2 * math.pi)
        assert 0.1 - 1e-4 <= amplitude <= 5.0 + 1e-4
        assert -1e-4 <= phase <= math.pi + 1e-4
        amplitudes.append(amplitude)
    assert np.std(amplitudes) > 0.5  # amplitudes vary between episodes


def test_sinusoid_custom_ranges():
    ds = km.data.sinusoid(
        shots=20,
        queries=1,
        seed=0,
        amplitude_range=(2.0, 2.0),
        phase_range=(0.5, 0.5),
        input_range=(0.0, 1.0),
    )
    for inputs, _ in take(ds, 5):
        sx, sy = inputs["support_x"], inputs["support_y"]
        assert sx.min() >= 0 and sx.max() <= 1
        np.testing.assert_allclose(sy, 2.0 * np.sin(sx - 0.5), atol=1e-5)
    assert ds.episode_config["amplitude_range"] == (2.0, 2.0)


def test_sinusoid_seeds():
    a = take(km.data.sinusoid(seed=3), 4)
    b = take(km.data.sinusoid(seed=3), 4)
    c = take(km.data.sinusoid(seed=4), 4)
    for (ia, ya), (ib, yb), (_, yc) in zip(a, b, c, strict=True):
        np.testing.assert_array_equal(ia["support_x"], ib["support_x"])
        np.testing.assert_array_equal(ya, yb)
        assert not np.array_equal(ya, yc)


def test_sinusoid_finite_and_infinite():
    assert len(take(km.data.sinusoid(seed=0, num_episodes=7), 100)) == 7
    assert km.data.sinusoid(seed=0).cardinality() == tf.data.INFINITE_CARDINALITY
    ds = km.data.sinusoid()  # unseeded: a new stream per iteration
    assert not np.array_equal(take(ds, 1)[0][1], take(ds, 1)[0][1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"shots": 0}, r"`shots` must be an integer >= 1"),
        ({"queries": -1}, r"`queries` must be an integer >= 1"),
        ({"amplitude_range": (5.0, 0.1)}, r"low <= high.*\(5.0, 0.1\)"),
        ({"phase_range": (0.0, float("inf"))}, r"`phase_range` must be a finite pair"),
    ],
)
def test_sinusoid_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        km.data.sinusoid(**kwargs)


def test_sinusoid_range_type_error():
    with pytest.raises(TypeError, match=r"`input_range` must be a pair"):
        km.data.sinusoid(input_range=5)


def test_linear_regression_shapes():
    ds = km.data.linear_regression(dim=3, shots=4, queries=6, seed=0)
    inputs, query_y = next(iter(ds))
    assert inputs["support_x"].shape == (4, 3) and inputs["support_y"].shape == (4, 1)
    assert inputs["query_x"].shape == (6, 3) and query_y.shape == (6, 1)
    assert query_y.dtype == tf.float32
    assert ds.episode_config["family"] == "linear_regression"


def test_linear_regression_noiseless_optimum_is_exact():
    episodes = take(km.data.linear_regression(dim=4, shots=6, queries=5, seed=1), 20)
    for inputs, query_y in episodes:
        pred = km.data.linear_regression_optimum(
            inputs["support_x"], inputs["support_y"], inputs["query_x"]
        )
        np.testing.assert_allclose(pred, query_y, atol=1e-4)


def test_linear_regression_optimum_batched_and_underdetermined():
    ds = km.data.linear_regression(dim=5, shots=2, queries=3, seed=2).batch(8)
    inputs, query_y = next(iter(ds))
    # Fewer shots than dims: the minimum-norm solution still fits the support exactly.
    on_support = km.data.linear_regression_optimum(
        inputs["support_x"], inputs["support_y"], inputs["support_x"]
    )
    assert on_support.shape == (8, 2, 1)
    np.testing.assert_allclose(on_support, inputs["support_y"], atol=1e-4)


def test_linear_regression_optimum_is_bayes_optimal():
    noise, scale, dim = 0.5, 1.0, 3
    ds = km.data.linear_regression(
        dim=dim, shots=4, queries=10, noise=noise, weight_scale=scale, seed=3
    ).batch(2000)
    inputs, query_y = next(iter(ds))
    sx = inputs["support_x"].numpy().astype(np.float64)
    qx = inputs["query_x"].numpy().astype(np.float64)

    def mse(lam):
        gram = np.einsum("bsi,bsj->bij", sx, sx) + lam * np.eye(dim)
        w = np.linalg.solve(gram, np.einsum("bsi,bsk->bik", sx, inputs["support_y"]))
        return np.mean((np.einsum("bqi,bik->bqk", qx, w) - query_y) ** 2)

    optimum = km.data.linear_regression_optimum(
        inputs["support_x"], inputs["support_y"], inputs["query_x"], noise, scale
    )
    best = np.mean((optimum.numpy() - query_y) ** 2)
    lam = (noise / scale) ** 2
    np.testing.assert_allclose(best, mse(lam), rtol=1e-4)
    # Other penalties (including least squares) do worse on average.
    for other in (1e-9, lam / 4, lam * 4):
        assert best < mse(other)
    # The expected error matches the posterior predictive variance.
    posterior = noise**2 * np.linalg.inv(np.einsum("bsi,bsj->bij", sx, sx) + lam * np.eye(dim))
    expected = noise**2 + np.mean(np.einsum("bqi,bij,bqj->bq", qx, posterior, qx))
    np.testing.assert_allclose(best, expected, rtol=0.1)


def test_linear_regression_errors():
    with pytest.raises(ValueError, match=r"`noise` must be a finite number >= 0"):
        km.data.linear_regression(noise=-1.0)
    with pytest.raises(ValueError, match=r"`weight_scale` must be a finite number > 0"):
        km.data.linear_regression(weight_scale=0.0)
    with pytest.raises(ValueError, match=r"`dim` must be an integer >= 1"):
        km.data.linear_regression(dim=0)
