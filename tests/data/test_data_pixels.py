"""8-bit storage of images in the samplers: a quarter of the memory, identical episodes."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

import keras_meta as km
from keras_meta.data import _pixels

WAYS, SHOTS, QUERIES = 3, 2, 3


def pixels(num_classes=6, per_class=6, shape=(5, 5, 1), seed=0):
    """Random 8-bit images (every level present) and shuffled labels."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 256, (num_classes * per_class,) + shape, dtype=np.uint8)
    u.reshape(-1)[:256] = np.arange(256, dtype=np.uint8)
    y = rng.permutation(np.repeat(np.arange(num_classes), per_class))
    return u, y


def reference_episodes(float_images, y, n, **kwargs):
    """Episodes re-computed from the float32 array with numpy gathers.

    A sampler over example *ids* (values no 8-bit palette holds) says which examples
    each episode takes; the reference gathers them from `float_images` directly.
    """
    ids = np.broadcast_to(
        np.arange(len(y), dtype=np.float32).reshape((-1,) + (1,) * (float_images.ndim - 1)) + 2,
        float_images.shape,
    ).copy()
    episodes = []
    for ex, qy in (
        km.data.episodes(ids, y, WAYS, SHOTS, QUERIES, **kwargs).take(n).as_numpy_iterator()
    ):
        support_ids = ex["support_x"].reshape(len(ex["support_x"]), -1)[:, 0].astype(int) - 2
        query_ids = ex["query_x"].reshape(len(ex["query_x"]), -1)[:, 0].astype(int) - 2
        episodes.append((float_images[support_ids], ex["support_y"], float_images[query_ids], qy))
    return episodes


def assert_bit_identical(dataset, reference):
    got = list(dataset.take(len(reference)).as_numpy_iterator())
    for (ex, qy), (sx, sy, qx, ry) in zip(got, reference, strict=True):
        assert ex["support_x"].dtype == np.float32
        # Bit for bit, not approximately.
        np.testing.assert_array_equal(ex["support_x"].view(np.uint32), sx.view(np.uint32))
        np.testing.assert_array_equal(ex["query_x"].view(np.uint32), qx.view(np.uint32))
        np.testing.assert_array_equal(ex["support_y"], sy)
        np.testing.assert_array_equal(qy, ry)


@pytest.mark.parametrize(
    "to_float",
    [
        lambda u: u.astype(np.float32) / np.float32(255),  # PIL loaders, Omniglot
        lambda u: np.float32(1) - u.astype(np.float32) / np.float32(255),  # invert=True
        lambda u: tf.image.convert_image_dtype(u, tf.float32).numpy(),  # TFDS
    ],
    ids=["u/255", "1-u/255", "convert_image_dtype"],
)
def test_float_pixels_are_stored_as_uint8_with_identical_episodes(to_float):
    u, y = pixels()
    x = to_float(u)
    sampler = km.data.EpisodeSampler(x, y, WAYS, SHOTS, QUERIES, seed=4)
    assert sampler._examples.dtype == tf.uint8
    assert sampler._examples.shape.num_elements() * 1 == x.nbytes // 4
    assert_bit_identical(sampler.dataset(), reference_episodes(x, y, 5, seed=4))


def test_class_rotation_from_uint8_storage_is_identical(monkeypatch):
    u, y = pixels()
    x = u.astype(np.float32) / np.float32(255)
    sampler = km.data.EpisodeSampler(x, y, WAYS, SHOTS, QUERIES, seed=2, augment="class_rotation")
    assert sampler._examples.dtype == tf.uint8
    episodes = list(sampler.dataset().take(4).as_numpy_iterator())
    # The reference: the same sampler storing float32 as before 8-bit storage existed.
    monkeypatch.setattr(
        _pixels, "compact", lambda x, scale: (x, lambda rows: tf.cast(rows, tf.float32))
    )
    before = km.data.EpisodeSampler(x, y, WAYS, SHOTS, QUERIES, seed=2, augment="class_rotation")
    assert before._examples.dtype == tf.float32
    plain = list(before.dataset().take(4).as_numpy_iterator())
    for (ex, qy), (px, py) in zip(episodes, plain, strict=True):
        for key in ("support_x", "query_x"):
            np.testing.assert_array_equal(ex[key].view(np.uint32), px[key].view(np.uint32))
        np.testing.assert_array_equal(qy, py)


def test_uint8_with_scale_255_equals_the_float32_episodes():
    u, y = pixels(shape=(4, 4, 3))
    x = u.astype(np.float32) / np.float32(255)
    from_uint8 = km.data.episodes(u, y, WAYS, SHOTS, QUERIES, seed=9, scale=255)
    assert_bit_identical(from_uint8, reference_episodes(x, y, 5, seed=9))


def test_uint8_without_scale_keeps_its_values_and_other_floats_stay_float():
    u, y = pixels()
    ex, _ = next(iter(km.data.episodes(u, y, WAYS, SHOTS, QUERIES, seed=0)))
    assert ex["support_x"].numpy().max() > 1  # cast, not scaled: documented behaviour
    assert set(np.unique(ex["support_x"].numpy())) <= set(range(256))
    x = np.random.default_rng(0).random(u.shape).astype(np.float32)
    sampler = km.data.EpisodeSampler(x, y, WAYS, SHOTS, QUERIES, seed=0)
    assert sampler._examples.dtype == tf.float32
    assert_bit_identical(sampler.dataset(), reference_episodes(x, y, 3, seed=0))
    # One value off the 8-bit levels keeps the whole array in float32.
    x = u.astype(np.float32) / np.float32(255)
    x[0, 0, 0, 0] = 0.5
    sampler = km.data.EpisodeSampler(x, y, WAYS, SHOTS, QUERIES, seed=1)
    assert sampler._examples.dtype == tf.float32
    assert_bit_identical(sampler.dataset(), reference_episodes(x, y, 3, seed=1))


def test_scale_is_checked():
    u, y = pixels()
    with pytest.raises(ValueError, match=r"`scale`.*received.*0"):
        km.data.EpisodeSampler(u, y, WAYS, SHOTS, QUERIES, scale=0)
    assert (
        km.data.EpisodeSampler(u, y, WAYS, SHOTS, QUERIES, scale=255).get_config()["scale"] == 255
    )


def write_tree(root, classes=3, per_class=3, size=(6, 7)):
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels_ = rng.integers(0, 256, size + (3,), dtype=np.uint8)
            Image.fromarray(pixels_).save(root / f"c{c}" / f"{i}.png")


def test_image_folder_uint8(tmp_path):
    write_tree(tmp_path)
    for invert in (False, True):
        x, y, _ = km.data.image_folder(tmp_path, invert=invert)
        u, yu, _ = km.data.image_folder(tmp_path, invert=invert, dtype="uint8")
        assert u.dtype == np.uint8 and u.shape == x.shape and u.nbytes * 4 == x.nbytes
        np.testing.assert_array_equal(y, yu)
        # Within one float32 rounding of the float array (exact without invert).
        np.testing.assert_allclose(u / np.float32(255), x, rtol=0, atol=0 if not invert else 1e-7)
    with pytest.raises(ValueError, match=r"`dtype` must be one of.*received dtype='float64'"):
        km.data.image_folder(tmp_path, dtype="float64")


def test_from_tfds_uint8_with_mock_data():
    with tfds.testing.mock_data(num_examples=16):
        x, y = km.data.from_tfds("cifar100", split="train")
        u, yu = km.data.from_tfds("cifar100", split="train", dtype="uint8")
        inverted, _ = km.data.from_tfds("cifar100", split="train", dtype="uint8", invert=True)
        small, _ = km.data.from_tfds("cifar100", split="train", image_size=16)
        small_u, _ = km.data.from_tfds("cifar100", split="train", image_size=16, dtype="uint8")
        with pytest.raises(ValueError, match=r"`dtype` must be one of"):
            km.data.from_tfds("cifar100", dtype="int8")
    assert u.dtype == np.uint8 and u.shape == x.shape
    np.testing.assert_array_equal(y, yu)
    np.testing.assert_array_equal(tf.image.convert_image_dtype(u, tf.float32).numpy(), x)
    np.testing.assert_array_equal(inverted, 255 - u)
    # Resized images are rounded to the nearest 8-bit level.
    assert small_u.dtype == np.uint8
    np.testing.assert_allclose(small_u / 255.0, small, atol=0.5 / 255 + 1e-6)
