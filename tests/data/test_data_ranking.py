"""The ranking task family (km.data.ranking): episode contract, seeding, and the grades
recomputed from the hidden scoring function."""

from statistics import NormalDist

import numpy as np
import pytest
import tensorflow as tf

import keras_meta as km


def take(dataset, n):
    return list(dataset.take(n).as_numpy_iterator())


def grades_of(scores, grades):
    thresholds = [NormalDist().inv_cdf(k / grades) for k in range(1, grades)]
    return (scores[:, None] > np.array(thresholds)[None, :]).sum(axis=1).astype(np.float32)


def test_shapes_dtypes_and_grade_values():
    ds = km.data.ranking(dim=3, shots=7, queries=5, grades=4, seed=0)
    x, y = next(iter(ds))
    assert x["support_x"].shape == (7, 3) and x["support_y"].shape == (7, 1)
    assert x["query_x"].shape == (5, 3) and y.shape == (5, 1)
    for t in (*x.values(), y):
        assert t.dtype == tf.float32
    labels = np.concatenate([e[1].ravel() for e in take(ds, 50)])
    assert set(labels.tolist()) == {0.0, 1.0, 2.0, 3.0}
    batched, by = next(iter(ds.batch(2)))
    assert batched["support_y"].shape == (2, 7, 1) and by.shape == (2, 5, 1)


def test_linear_grades_are_the_quantile_bins_of_a_hidden_linear_score():
    """Each episode's grades are those of one linear score x . w / |w|: recover w from
    the items (a linear classifier between grade bins), and check the bins against the
    standard normal quantiles."""
    grades = 5
    for x, y in take(km.data.ranking(dim=3, shots=200, queries=100, grades=grades, seed=1), 5):
        items = np.concatenate([x["support_x"], x["query_x"]]).astype(np.float64)
        labels = np.concatenate([x["support_y"], y])[:, 0]
        # The unit direction that best explains the grades: least squares on the
        # grade bins' centres gives a vector parallel to w (items are isotropic).
        direction = np.linalg.lstsq(items, labels - labels.mean(), rcond=None)[0]
        direction /= np.linalg.norm(direction)
        scores = items @ direction
        # Bins are monotone in the score: almost every pair is ordered correctly.
        agree = np.mean(grades_of(scores, grades) == labels)
        assert agree > 0.8, agree
    # Equiprobable grades over many episodes.
    labels = np.concatenate(
        [e[1].ravel() for e in take(km.data.ranking(dim=4, seed=2, queries=50), 200)]
    )
    freq = np.bincount(labels.astype(int), minlength=grades) / len(labels)
    np.testing.assert_allclose(freq, 1 / grades, atol=0.02)


def test_linear_scorer_reference_from_the_stateless_key():
    """Recompute episode 3 of seed 5 from its key with the documented recipe."""
    x, y = take(km.data.ranking(dim=4, shots=6, queries=4, grades=3, seed=5), 4)[3]
    key = tf.constant([5, 3], tf.int64)
    f_key, x_key, _ = tf.unstack(tf.random.experimental.stateless_split(key, 3))
    items = tf.random.stateless_normal([10, 4], x_key).numpy().astype(np.float64)
    w = tf.random.stateless_normal([4, 1], f_key).numpy().astype(np.float64)[:, 0]
    scores = items @ w / np.linalg.norm(w)
    np.testing.assert_allclose(np.concatenate([x["support_x"], x["query_x"]]), items, rtol=1e-6)
    np.testing.assert_array_equal(np.concatenate([x["support_y"], y])[:, 0], grades_of(scores, 3))


def test_nonlinear_scorers_and_noise():
    clean = take(km.data.ranking(dim=5, hidden=16, queries=50, seed=3), 100)
    labels = np.concatenate([e[1].ravel() for e in clean])
    freq = np.bincount(labels.astype(int), minlength=5) / len(labels)
    # Standardised on reference items: roughly equiprobable (not exactly: not Gaussian).
    assert freq.min() > 0.1 and freq.max() < 0.3
    # A linear fit explains the grades of nonlinear scorers less well than linear ones.
    def linear_fit(episodes):
        r2 = []
        for x, y in episodes:
            items = np.concatenate([x["support_x"], x["query_x"]])
            labels = np.concatenate([x["support_y"], y])[:, 0]
            residual = np.linalg.lstsq(items, labels - labels.mean(), rcond=None)[1]
            r2.append(1 - residual[0] / ((labels - labels.mean()) ** 2).sum())
        return np.mean(r2)

    linear = take(km.data.ranking(dim=5, queries=50, seed=3), 100)
    assert linear_fit(clean) < linear_fit(linear) - 0.05
    # Noise changes grades of the same items (same seed), not items.
    noisy = take(km.data.ranking(dim=5, queries=50, noise=1.0, seed=4), 20)
    clean = take(km.data.ranking(dim=5, queries=50, seed=4), 20)
    for (nx, _), (cx, _) in zip(noisy, clean):
        np.testing.assert_array_equal(nx["query_x"], cx["query_x"])
    changed = np.mean([np.mean(n[1] != c[1]) for n, c in zip(noisy, clean)])
    assert 0.3 < changed < 0.9


def test_seeding_and_config():
    a = take(km.data.ranking(dim=2, seed=11), 3)
    b = take(km.data.ranking(dim=2, seed=11).skip(1), 2)
    for u, v in zip(a[1:], b):
        np.testing.assert_array_equal(u[0]["support_x"], v[0]["support_x"])
        np.testing.assert_array_equal(u[1], v[1])
    assert not np.array_equal(a[0][1], a[1][1])
    other = take(km.data.ranking(dim=2, seed=12), 1)
    assert not np.array_equal(a[0][0]["support_x"], other[0][0]["support_x"])
    finite = km.data.ranking(num_episodes=3)
    first, second = take(finite, 5), take(finite, 5)
    assert len(first) == 3
    np.testing.assert_array_equal(first[2][1], second[2][1])
    config = km.data.ranking(dim=2, grades=3, hidden=4, noise=0.5, seed=1).episode_config
    assert config == {
        "family": "ranking", "dim": 2, "shots": 20, "queries": 20, "grades": 3, "hidden": 4,
        "noise": 0.5, "seed": 1, "num_episodes": None, "transform": None,
    }


def test_transform_noises_features_not_grades():
    noise = km.data.transforms.GaussianNoise(0.5)
    clean = take(km.data.ranking(dim=3, seed=6), 3)
    noisy_ds = km.data.ranking(dim=3, seed=6, transform=noise)
    noisy = take(noisy_ds, 3)
    for (cx, cy), (nx, ny) in zip(clean, noisy):
        np.testing.assert_array_equal(cx["support_y"], nx["support_y"])
        np.testing.assert_array_equal(cy, ny)
        diff = nx["support_x"] - cx["support_x"]
        assert 0.3 < diff.std() < 0.7
    np.testing.assert_array_equal(take(noisy_ds, 1)[0][0]["query_x"], noisy[0][0]["query_x"])
    assert noisy_ds.episode_config["transform"]["config"] == {"stddev": 0.5, "clip": None}


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"grades": 1}, ValueError, r"`grades` must be an integer >= 2; received grades=1"),
        ({"hidden": -1}, ValueError, r"`hidden` must be an integer >= 0; received hidden=-1"),
        ({"noise": -0.1}, ValueError, r"`noise` must be a finite number >= 0; received"),
        ({"dim": 2.5}, TypeError, r"`dim` must be an integer >= 1; received 2.5"),
        ({"transform": 3}, TypeError, r"`transform` must be a callable; received 3"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        km.data.ranking(**kwargs)
