"""Noise and corruption transforms (km.data.transforms): statistics, bounds,
determinism per (seed, i), and the transform= hook against the clean sampler."""

import numpy as np
import pytest
import tensorflow as tf

import keras_meta as km
from keras_meta.data.transforms import _transform_key

T = km.data.transforms


def images(n=20, size=12, seed=0):
    return np.random.default_rng(seed).uniform(0.2, 0.8, size=(n, size, size, 1)).astype("float32")


def labelled(n_classes=6, per_class=6, size=12):
    x = np.random.default_rng(1).uniform(size=(n_classes * per_class, size, size, 1))
    return x.astype("float32"), np.repeat(np.arange(n_classes), per_class)


def test_gaussian_noise_statistics_and_clipping():
    x = np.full((50, 16, 16, 1), 0.5, "float32")
    out = T.GaussianNoise(0.1)(x, seed=[3, 4]).numpy()
    diff = (out - x).astype(np.float64)
    assert abs(diff.mean()) < 0.003 and diff.std() == pytest.approx(0.1, rel=0.02)
    clipped = T.GaussianNoise(0.5, clip=(0.0, 1.0))(x, seed=[3, 4]).numpy()
    assert clipped.min() == 0.0 and clipped.max() == 1.0
    # Clipping is the only difference from the unclipped noise.
    np.testing.assert_array_equal(
        clipped, np.clip(T.GaussianNoise(0.5)(x, seed=[3, 4]).numpy(), 0.0, 1.0)
    )
    # Vectors (regression/ranking features) too; stddev 0 is the identity.
    v = np.random.default_rng(0).normal(size=(30, 5)).astype("float32")
    np.testing.assert_array_equal(T.GaussianNoise(0.0)(v, seed=[0, 0]).numpy(), v)


def test_salt_and_pepper_fraction_and_values():
    x = images(n=40, size=16)
    out = T.SaltAndPepper(0.2)(x, seed=[1, 1]).numpy()
    changed = out != x
    assert changed.mean() == pytest.approx(0.2, abs=0.01)
    assert set(np.unique(out[changed]).tolist()) == {0.0, 1.0}
    assert (out[changed] == 1.0).mean() == pytest.approx(0.5, abs=0.03)
    np.testing.assert_array_equal(out[~changed], x[~changed])
    custom = T.SaltAndPepper(1.0, low=-1.0, high=2.0)(x, seed=[1, 1]).numpy()
    assert set(np.unique(custom).tolist()) == {-1.0, 2.0}


def test_random_erasing_squares():
    x = images(n=200, size=10)
    out = T.RandomErasing(3, value=0.0)(x, seed=[0, 9]).numpy()
    corners = []
    for img, orig in zip(out[..., 0], x[..., 0]):
        rows, cols = np.nonzero(img == 0.0)
        # One 3 x 3 square inside the image, the rest untouched.
        assert len(rows) == 9 and rows.max() - rows.min() == 2 and cols.max() - cols.min() == 2
        mask = img == 0.0
        np.testing.assert_array_equal(img[~mask], orig[~mask])
        corners.append((rows.min(), cols.min()))
    corners = np.array(corners)
    # Uniform over the 8 x 8 valid corners: every row and column offset appears.
    assert set(corners[:, 0]) == set(range(8)) and set(corners[:, 1]) == set(range(8))
    with pytest.raises(ValueError, match=r"RandomErasing\(size=11\).*10 x 10"):
        T.RandomErasing(11)(x, seed=[0, 0])
    with pytest.raises(ValueError, match=r"needs images .*received inputs of shape \(3, 4\)"):
        T.RandomErasing(2)(np.zeros((3, 4)), seed=[0, 0])


def test_deterministic_per_key_and_compose():
    x = images()
    for t in (T.GaussianNoise(0.1), T.SaltAndPepper(0.1), T.RandomErasing(4)):
        a, b = t(x, seed=[5, 6]).numpy(), t(x, seed=[5, 6]).numpy()
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, t(x, seed=[5, 7]).numpy())
    noise, pepper = T.GaussianNoise(0.1, clip=(0.0, 1.0)), T.SaltAndPepper(0.1)
    both = T.Compose([noise, pepper, lambda v: 1.0 - v])
    keys = tf.random.experimental.stateless_split(tf.constant([5, 6], tf.int64), 3)
    expected = 1.0 - pepper(noise(x, seed=keys[0]), seed=keys[1])
    np.testing.assert_array_equal(both(x, seed=[5, 6]).numpy(), expected.numpy())


def test_configs_round_trip():
    transforms = [
        T.GaussianNoise(0.2, clip=(0, 1)),
        T.SaltAndPepper(0.1, low=0.0, high=0.5),
        T.RandomErasing(3, value=0.5),
    ]
    for t in transforms:
        clone = type(t).from_config(t.get_config())
        np.testing.assert_array_equal(t(images(), seed=[1, 2]), clone(images(), seed=[1, 2]))
    composed = T.Compose(transforms)
    clone = T.Compose.from_config(composed.get_config())
    np.testing.assert_array_equal(composed(images(), seed=[1, 2]), clone(images(), seed=[1, 2]))
    assert repr(transforms[0]) == "GaussianNoise(stddev=0.2, clip=(0.0, 1.0))"


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: T.GaussianNoise(-1.0), ValueError, r"`stddev` must be a finite number >= 0"),
        (lambda: T.GaussianNoise(0.1, clip=(1, 0)), ValueError, r"`clip` must be a finite pair"),
        (lambda: T.SaltAndPepper(1.5), ValueError, r"`rate` must be .*<= 1; received rate=1.5"),
        (lambda: T.RandomErasing(0), ValueError, r"`size` must be an integer >= 1; received"),
        (lambda: T.Compose(T.GaussianNoise(0.1)), TypeError, r"`transforms` must be a list"),
        (lambda: T.Compose([3]), TypeError, r"`transforms\[0\]` must be a callable; received 3"),
    ],
)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_sampler_hook_is_the_transform_of_the_clean_episode():
    """Episode i of a sampler with `transform=t` is t applied, with the key of (seed, i),
    to episode i of the same sampler without it."""
    x, y = labelled()
    t = T.Compose([T.GaussianNoise(0.1, clip=(0.0, 1.0)), T.SaltAndPepper(0.05)])
    clean = list(km.data.episodes(x, y, 3, 2, 2, seed=4).take(3).as_numpy_iterator())
    noisy_ds = km.data.episodes(x, y, 3, 2, 2, seed=4, transform=t)
    noisy = list(noisy_ds.take(3).as_numpy_iterator())
    for i, ((cx, cy), (nx, ny)) in enumerate(zip(clean, noisy)):
        inputs = np.concatenate([cx["support_x"], cx["query_x"]])
        expected = t(inputs, seed=_transform_key(tf.constant([4, i], tf.int64))).numpy()
        np.testing.assert_array_equal(np.concatenate([nx["support_x"], nx["query_x"]]), expected)
        np.testing.assert_array_equal(nx["support_y"], cx["support_y"])
        np.testing.assert_array_equal(ny, cy)
        assert nx["support_x"].min() >= 0.0 and nx["support_x"].max() <= 1.0
    # Re-iterating, or a fresh sampler with the same seed, gives the same noise.
    again = list(km.data.episodes(x, y, 3, 2, 2, seed=4, transform=t).take(3).as_numpy_iterator())
    for (a, _), (b, _) in zip(noisy, again):
        np.testing.assert_array_equal(a["query_x"], b["query_x"])
    assert noisy_ds.episode_config["transform"]["class_name"] == "Compose"


def test_apply_equals_the_hook_and_works_on_any_dataset():
    x, y = labelled()
    t = T.SaltAndPepper(0.1)
    hooked = km.data.episodes(x, y, 3, 1, 2, seed=8, transform=t).take(3)
    applied = T.apply(km.data.episodes(x, y, 3, 1, 2, seed=8), t).take(3)
    for (a, _), (b, _) in zip(hooked.as_numpy_iterator(), applied.as_numpy_iterator()):
        np.testing.assert_array_equal(a["support_x"], b["support_x"])
        np.testing.assert_array_equal(a["query_x"], b["query_x"])
    # Regression features, seeded by the dataset's own seed; another seed, other noise.
    clean = km.data.sinusoid(shots=5, queries=5, seed=2)
    noisy = T.apply(clean, T.GaussianNoise(0.3))
    assert noisy.episode_config["seed"] == 2
    assert noisy.episode_config["transform"]["config"]["stddev"] == 0.3
    (cx, cy), (nx, ny) = next(iter(clean)), next(iter(noisy))
    np.testing.assert_array_equal(cy, ny)
    np.testing.assert_array_equal(cx["support_y"], nx["support_y"])
    expected = T.GaussianNoise(0.3)(
        np.concatenate([cx["support_x"], cx["query_x"]]),
        seed=_transform_key(tf.constant([2, 0], tf.int64)),
    ).numpy()
    np.testing.assert_array_equal(np.concatenate([nx["support_x"], nx["query_x"]]), expected)
    other = next(iter(T.apply(clean, T.GaussianNoise(0.3), seed=3)))[0]
    assert not np.array_equal(other["support_x"], nx["support_x"])
    with pytest.raises(TypeError, match=r"`dataset` must be a tf.data.Dataset.*received list"):
        T.apply([1, 2], T.GaussianNoise(0.1))


def test_unseeded_callables_still_work_in_the_hook():
    x, y = labelled()
    ds = km.data.episodes(x, y, 3, 1, 1, seed=0, transform=lambda v: v * 0.0)
    ex, _ = next(iter(ds))
    assert float(tf.reduce_max(ex["support_x"])) == 0.0
    with pytest.raises(ValueError, match=r"keep the leading dimension.*shape \(1, 12, 12, 1\)"):
        next(iter(km.data.episodes(x, y, 3, 1, 1, seed=0, transform=lambda v: v[:1])))


def test_streaming_sampler_hook_is_seeded_too(tmp_path):
    for c in range(3):
        for i in range(3):
            png = tf.io.encode_png(np.full((6, 6, 1), 40 * c + 10 * i, np.uint8))
            tf.io.write_file(str(tmp_path / f"class{c}" / f"{i}.png"), png)
    t = T.GaussianNoise(0.2)
    kwargs = dict(ways=2, shots=1, queries=1, color_mode="grayscale", seed=3)
    clean = km.data.stream_episodes(str(tmp_path), **kwargs).take(2)
    noisy = km.data.stream_episodes(str(tmp_path), transform=t, **kwargs).take(2)
    for i, ((cx, _), (nx, _)) in enumerate(zip(clean, noisy)):
        inputs = tf.concat([cx["support_x"], cx["query_x"]], axis=0)
        expected = t(inputs, seed=_transform_key(tf.constant([3, i], tf.int64))).numpy()
        np.testing.assert_array_equal(tf.concat([nx["support_x"], nx["query_x"]], 0), expected)
