"""Episodes streamed from image files: contract, seeding, equality with the in-memory sampler."""

import json

import numpy as np
import pytest
import tensorflow as tf

import keras_meta as km

WAYS, SHOTS, QUERIES = 3, 2, 2


def write_pngs(root, classes=6, per_class=5, size=(6, 6), channels=3, seed=0):
    """Random PNGs written with tf.io.encode_png: `root/c<class>/<i>.png`."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        for i in range(per_class):
            image = rng.integers(0, 256, size + (channels,), dtype=np.uint8)
            tf.io.write_file(str(root / f"c{c}" / f"{i:02d}.png"), tf.io.encode_png(image))
    return root


def write_jpegs(root, classes=5, per_class=4, size=(10, 12)):
    """Flat-coloured JPEGs whose grey level names the file: 40 * class + 8 * index."""
    for c in range(classes):
        for i in range(per_class):
            image = np.full(size + (3,), 40 * c + 8 * i, np.uint8)
            tf.io.write_file(str(root / f"k{c}" / f"{i}.jpg"), tf.io.encode_jpeg(image))
    return root


def take(dataset, n):
    return list(dataset.take(n).as_numpy_iterator())


def assert_same_episodes(a, b):
    assert len(a) == len(b)
    for (ea, qa), (eb, qb) in zip(a, b, strict=True):
        assert set(ea) == set(eb) == {"support_x", "support_y", "query_x"}
        for key in ea:
            assert ea[key].dtype == eb[key].dtype
            np.testing.assert_array_equal(ea[key], eb[key])
        np.testing.assert_array_equal(qa, qb)


@pytest.mark.parametrize("augment", [None, "class_rotation"])
def test_streamed_episodes_equal_the_in_memory_episodes(tmp_path, augment):
    root = write_pngs(tmp_path)
    x, y, _ = km.data.image_folder(root)
    in_memory = km.data.episodes(x, y, WAYS, SHOTS, QUERIES, seed=5, augment=augment)
    streamed = km.data.stream_episodes(root, WAYS, SHOTS, QUERIES, seed=5, augment=augment)
    assert streamed.element_spec == in_memory.element_spec
    assert_same_episodes(take(streamed, 6), take(in_memory, 6))
    # sample() (used for one episode at a time) gives the same episode as dataset().
    sampler = km.data.StreamingEpisodeSampler(root, WAYS, SHOTS, QUERIES, seed=5, augment=augment)
    inputs, query_y = sampler.sample(tf.constant([5, 3], tf.int64))
    episode = take(in_memory, 4)[3]
    np.testing.assert_array_equal(inputs["query_x"].numpy(), episode[0]["query_x"])
    np.testing.assert_array_equal(query_y.numpy(), episode[1])


def test_seeding(tmp_path):
    root = write_pngs(tmp_path)
    first = take(km.data.stream_episodes(root, WAYS, SHOTS, QUERIES, seed=1), 4)
    again = take(km.data.stream_episodes(root, WAYS, SHOTS, QUERIES, seed=1), 4)
    assert_same_episodes(first, again)
    # Different episodes (i) and different seeds give different episodes.
    assert not np.array_equal(first[0][0]["query_x"], first[1][0]["query_x"])
    other = take(km.data.stream_episodes(root, WAYS, SHOTS, QUERIES, seed=2), 1)
    assert not np.array_equal(first[0][0]["query_x"], other[0][0]["query_x"])
    # A finite set is the same set on every pass, even without a seed.
    fixed = km.data.stream_episodes(root, WAYS, SHOTS, QUERIES, num_episodes=3)
    assert_same_episodes(take(fixed, 3), take(fixed, 3))
    assert len(take(fixed, 10)) == 3


def test_jpeg_images_and_labels_correspond_to_the_files(tmp_path):
    root = write_jpegs(tmp_path)
    dataset = km.data.stream_episodes(
        root, ways=4, shots=1, queries=2, image_size=8, seed=0, invert=True
    )
    for inputs, query_y in take(dataset, 5):
        assert inputs["support_x"].shape == (4, 8, 8, 3)
        # Flat JPEGs decode (and resize) to their grey level, up to JPEG rounding.
        levels = []
        for images in (inputs["support_x"], inputs["query_x"]):
            grey = 255 * (1 - images.reshape(len(images), -1).mean(axis=1))
            assert np.abs(images - images.mean(axis=(1, 2, 3), keepdims=True)).max() < 2 / 255
            levels.append(np.round(grey).astype(int))
        files = [(lv // 40, (lv % 40) // 8) for lv in np.concatenate(levels)]
        labels = np.concatenate([inputs["support_y"], query_y])
        # Each label is one class, the classes distinct; no file twice.
        classes = {}
        for (c, _), label in zip(files, labels, strict=True):
            assert classes.setdefault(int(label), c) == c
        assert sorted(classes) == [0, 1, 2, 3] and len(set(classes.values())) == 4
        assert len(set(files)) == len(files)


def test_file_lists_and_config(tmp_path):
    root = write_pngs(tmp_path, classes=4, per_class=4, channels=1)
    files = {name: sorted(str(p) for p in (root / name).iterdir()) for name in ("c0", "c1", "c2")}
    sampler = km.data.StreamingEpisodeSampler(
        files, ways=3, shots=1, queries=1, color_mode="grayscale", seed=0
    )
    assert sampler.class_names == ["c0", "c1", "c2"] and sampler.num_examples == 12
    config = json.loads(json.dumps(sampler.dataset().episode_config))
    assert config["streaming"] is True and config["input_shape"] == [6, 6, 1]
    assert config["num_classes"] == 3
    # The same files in memory give the same episodes.
    x = np.stack([tf.io.decode_png(tf.io.read_file(f)).numpy() for f in sum(files.values(), [])])
    y = np.repeat(np.arange(3), 4)
    in_memory = km.data.episodes(x / np.float32(255), y, 3, 1, 1, seed=0)
    assert_same_episodes(take(sampler.dataset(), 3), take(in_memory, 3))


def test_errors(tmp_path):
    root = write_pngs(tmp_path / "data", classes=3, per_class=3)
    with pytest.raises(ValueError, match=r"shots \+ queries = 2 \+ 2 = 4.*drop_small_classes"):
        km.data.stream_episodes(root, ways=3, shots=2, queries=2)
    with pytest.raises(FileNotFoundError, match=r"does not exist.*<class_name>/<image>"):
        km.data.stream_episodes(tmp_path / "missing", 2, 1, 1)
    with pytest.raises(
        ValueError, match=r"`color_mode` must be one of.*received color_mode='cmyk'"
    ):
        km.data.stream_episodes(root, 2, 1, 1, color_mode="cmyk")
    with pytest.raises(TypeError, match=r"`source` maps each class to a list.*'c0'"):
        km.data.stream_episodes({"c0": str(root / "c0" / "00.png")}, 2, 1, 1)
    with pytest.raises(TypeError, match=r"`source` must be a folder path.*received int"):
        km.data.stream_episodes(3, 2, 1, 1)
    # An image of another size needs image_size=.
    tf.io.write_file(str(root / "c1" / "odd.png"), tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)))
    dataset = km.data.stream_episodes(root, 3, 2, 1, seed=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_size="):
        take(dataset, 20)
    resized = km.data.stream_episodes(root, 3, 2, 1, image_size=6, seed=0)
    assert len(take(resized, 20)) == 20
