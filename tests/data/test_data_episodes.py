"""Classification episodes: structure, sampling guarantees, determinism, options, errors."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_meta as km


def labelled(num_classes=10, per_class=6, shape=(2,)):
    """Examples whose value is their own index, so episodes can be traced back."""
    n = num_classes * per_class
    x = np.broadcast_to(
        np.arange(n, dtype=np.float32).reshape((n,) + (1,) * len(shape)), (n,) + shape
    ).copy()
    # Shuffled labels: the sampler must not rely on examples being grouped by class.
    y = np.random.default_rng(0).permutation(np.repeat(np.arange(num_classes), per_class))
    return x, y


def ids_of(images):
    """Example index of each image in an episode (all its values are the index)."""
    flat = images.reshape(len(images), -1)
    return flat[:, 0].astype(int)


def take(dataset, n):
    return list(dataset.take(n).as_numpy_iterator())


def test_shapes_and_dtypes():
    x, y = labelled(shape=(4, 4, 1))
    ds = km.data.episodes(x, y, ways=5, shots=2, queries=3, seed=0)
    inputs, query_y = next(iter(ds))
    assert set(inputs) == {"support_x", "support_y", "query_x"}
    assert inputs["support_x"].shape == (10, 4, 4, 1)
    assert inputs["support_x"].dtype == tf.float32
    assert inputs["support_y"].shape == (10,)
    assert inputs["support_y"].dtype == tf.int32
    assert inputs["query_x"].shape == (15, 4, 4, 1)
    assert inputs["query_x"].dtype == tf.float32
    assert query_y.shape == (15,) and query_y.dtype == tf.int32
    batched, by = next(iter(ds.batch(4)))
    assert batched["support_x"].shape == (4, 10, 4, 4, 1)
    assert by.shape == (4, 15)
    # Static shapes, so that Keras can build models from the element spec.
    spec = ds.element_spec[0]
    assert spec["support_x"].shape == (10, 4, 4, 1)
    assert spec["query_x"].shape == (15, 4, 4, 1)


def test_uint8_examples_become_float32():
    x, y = labelled(shape=(3,))
    ds = km.data.episodes(x.astype(np.uint8), y, ways=2, shots=1, queries=1, seed=0)
    inputs, _ = next(iter(ds))
    assert inputs["support_x"].dtype == tf.float32


def test_episode_sampling_guarantees():
    x, y = labelled(num_classes=8, per_class=7)
    ways, shots, queries = 4, 2, 3
    for inputs, query_y in take(km.data.episodes(x, y, ways, shots, queries, seed=3), 25):
        s_ids, q_ids = ids_of(inputs["support_x"]), ids_of(inputs["query_x"])
        s_y, q_y = inputs["support_y"], query_y
        # Each label appears exactly shots / queries times.
        assert np.bincount(s_y, minlength=ways).tolist() == [shots] * ways
        assert np.bincount(q_y, minlength=ways).tolist() == [queries] * ways
        # No example twice, and none in both support and query.
        assert len(set(s_ids)) == len(s_ids) and len(set(q_ids)) == len(q_ids)
        assert not set(s_ids) & set(q_ids)
        # Label k is one original class, the same in support and query; a bijection.
        mapping = {}
        for ids, labels in ((s_ids, s_y), (q_ids, q_y)):
            for i, k in zip(ids, labels, strict=True):
                assert mapping.setdefault(int(k), y[i]) == y[i]
        assert sorted(mapping) == list(range(ways))
        assert len(set(mapping.values())) == ways


def test_orders_are_shuffled_and_labels_permuted():
    x, y = labelled(num_classes=10, per_class=6)
    sorted_support = 0
    first_class_of_label0 = set()
    for inputs, _ in take(km.data.episodes(x, y, 5, 2, 2, seed=0), 40):
        s_y = inputs["support_y"]
        sorted_support += bool(np.all(np.diff(s_y) >= 0))
        first_class_of_label0.add(y[ids_of(inputs["support_x"])[s_y == 0][0]])
    assert sorted_support < 5  # a sorted order by chance: p = 2^5 / 10! per episode
    assert len(first_class_of_label0) > 3  # label 0 is not always the same class


def test_all_classes_and_examples_are_used():
    x, y = labelled(num_classes=6, per_class=5)
    seen_examples = set()
    for inputs, _ in take(km.data.episodes(x, y, 3, 1, 1, seed=1), 200):
        seen_examples.update(ids_of(inputs["support_x"]))
        seen_examples.update(ids_of(inputs["query_x"]))
    assert seen_examples == set(range(len(x)))


def test_same_seed_same_episodes_and_other_seed_differs():
    x, y = labelled()
    a = take(km.data.episodes(x, y, 5, 1, 2, seed=7), 5)
    b = take(km.data.episodes(x, y, 5, 1, 2, seed=7), 5)
    c = take(km.data.episodes(x, y, 5, 1, 2, seed=8), 5)
    for (ia, ya), (ib, yb) in zip(a, b, strict=True):
        for key in ia:
            np.testing.assert_array_equal(ia[key], ib[key])
        np.testing.assert_array_equal(ya, yb)
    assert any(
        not np.array_equal(ia["support_x"], ic["support_x"])
        for (ia, _), (ic, _) in zip(a, c, strict=True)
    )


def test_seeded_episodes_are_a_fixed_function_of_seed_and_index():
    """Golden values: a change here changes every published evaluation set."""
    x, y = labelled(num_classes=10, per_class=6)
    inputs, query_y = next(iter(km.data.episodes(x, y, 3, 1, 1, seed=2024)))
    golden = {
        "support": ids_of(inputs["support_x"].numpy()).tolist(),
        "support_y": inputs["support_y"].numpy().tolist(),
        "query": ids_of(inputs["query_x"].numpy()).tolist(),
        "query_y": query_y.numpy().tolist(),
    }
    assert golden == {
        "support": [15, 6, 40],
        "support_y": [1, 0, 2],
        "query": [48, 3, 39],
        "query_y": [1, 2, 0],
    }


def test_episode_i_is_sample_of_key_seed_i():
    """Custom pipelines (e.g. resuming at episode i) can call `sample` directly."""
    x, y = labelled()
    sampler = km.data.EpisodeSampler(x, y, ways=4, shots=1, queries=2, seed=11)
    expected = take(sampler.dataset(), 4)[3]
    inputs, query_y = sampler.sample(tf.constant([11, 3], tf.int64))
    np.testing.assert_array_equal(inputs["support_x"], expected[0]["support_x"])
    np.testing.assert_array_equal(query_y, expected[1])


def test_finite_set_is_fixed_across_iterations_even_without_seed():
    x, y = labelled()
    ds = km.data.episodes(x, y, 5, 1, 1, num_episodes=6)
    first, second = take(ds, 100), take(ds, 100)
    assert len(first) == 6
    for (ia, _), (ib, _) in zip(first, second, strict=True):
        np.testing.assert_array_equal(ia["support_x"], ib["support_x"])
    assert isinstance(ds.episode_config["seed"], int)


def test_unseeded_infinite_stream_varies_between_iterations():
    x, y = labelled(num_classes=20)
    ds = km.data.episodes(x, y, 5, 1, 1)
    a, b = take(ds, 3), take(ds, 3)
    assert any(
        not np.array_equal(ia["support_x"], ib["support_x"])
        for (ia, _), (ib, _) in zip(a, b, strict=True)
    )


def test_tf_data_input_batched_or_not():
    x, y = labelled(shape=(3,))
    reference = take(km.data.episodes(x, y, 4, 1, 2, seed=5), 3)
    for dataset in (
        tf.data.Dataset.from_tensor_slices((x, y)),
        tf.data.Dataset.from_tensor_slices((x, y)).batch(7),
    ):
        got = take(km.data.episodes(dataset, ways=4, shots=1, queries=2, seed=5), 3)
        for (ia, _), (ib, _) in zip(reference, got, strict=True):
            np.testing.assert_array_equal(ia["support_x"], ib["support_x"])


def test_unequal_class_sizes():
    x = np.arange(3 + 10 + 4, dtype=np.float32)[:, None]
    y = np.array([0] * 3 + [5] * 10 + [9] * 4)
    for inputs, _ in take(km.data.episodes(x, y, 3, 1, 2, seed=0), 30):
        ids = np.concatenate([ids_of(inputs["support_x"]), ids_of(inputs["query_x"])])
        assert len(set(ids)) == 9
        assert sorted(np.bincount(y[ids]).tolist()) == [0] * 7 + [3, 3, 3]


def test_drop_small_classes():
    x = np.arange(12, dtype=np.float32)[:, None]
    y = np.array([0, 0, 0, 1, 1, 1, 2, 3, 3, 3, 4, 4])
    sampler = km.data.EpisodeSampler(
        x, y, ways=3, shots=2, queries=1, seed=0, drop_small_classes=True
    )
    assert sampler.num_classes == 3
    assert sampler.get_config()["dropped_classes"] == [2, 4]
    for inputs, _ in take(sampler.dataset(), 10):
        assert set(y[ids_of(inputs["support_x"])]) == {0, 1, 3}


def test_class_rotation_rotates_each_class_consistently():
    # One marked corner per image; its position after rotation tells the rotation.
    n_classes, per_class = 6, 4
    n = n_classes * per_class
    x = np.zeros((n, 3, 3, 1), np.float32)
    x[:, 0, 0, 0] = np.arange(1, n + 1)
    y = np.repeat(np.arange(n_classes), per_class)
    rotations_seen = set()
    ds = km.data.episodes(x, y, 3, 2, 2, seed=0, augment="class_rotation")
    assert ds.episode_config["augment"] == "class_rotation"
    for inputs, query_y in take(ds, 20):
        per_label = {}
        for images, labels in (
            (inputs["support_x"], inputs["support_y"]),
            (inputs["query_x"], query_y),
        ):
            for image, label in zip(images, labels, strict=True):
                corner = tuple(np.argwhere(image[..., 0] > 0)[0])
                k = {(0, 0): 0, (2, 0): 1, (2, 2): 2, (0, 2): 3}[corner]
                np.testing.assert_array_equal(np.rot90(image, -k), x[int(image.max()) - 1])
                assert per_label.setdefault(int(label), k) == k
                rotations_seen.add(k)
    assert rotations_seen == {0, 1, 2, 3}


def test_transform_hook_and_config():
    x, y = labelled(shape=(4, 4, 1))
    seen_shapes = []

    def double(images):
        seen_shapes.append(tuple(images.shape))
        return images * 2.0

    ds = km.data.episodes(x, y, 3, 2, 1, seed=0, transform=double)
    inputs, _ = next(iter(ds))
    assert seen_shapes == [(9, 4, 4, 1)]  # support then query, one call per episode
    ids = inputs["support_x"].numpy()[:, 0, 0, 0] / 2.0
    np.testing.assert_array_equal(inputs["support_x"].numpy()[:, 1, 1, 0], ids * 2.0)
    assert ds.episode_config["transform"]["name"] == "double"

    layer = keras.layers.Rescaling(0.5)
    ds = km.data.episodes(x, y, 3, 2, 1, seed=0, transform=layer)
    plain = next(iter(km.data.episodes(x, y, 3, 2, 1, seed=0)))[0]["query_x"]
    np.testing.assert_allclose(next(iter(ds))[0]["query_x"], plain * 0.5)
    config = ds.episode_config
    assert config["transform"]["class_name"] == "Rescaling"
    json.dumps(config)  # the protocol can be logged as JSON


def test_random_keras_layer_as_transform():
    x, y = labelled(shape=(8, 8, 1))
    ds = km.data.episodes(x, y, 3, 1, 1, seed=0, transform=keras.layers.RandomFlip("horizontal"))
    inputs, _ = next(iter(ds.batch(2)))
    assert inputs["support_x"].shape == (2, 3, 8, 8, 1)


def test_sampler_config():
    x, y = labelled()
    sampler = km.data.EpisodeSampler(x, y, ways=5, shots=1, queries=3, seed=1)
    config = sampler.get_config()
    assert config["ways"] == 5 and config["shots"] == 1 and config["queries"] == 3
    assert config["seed"] == 1 and config["augment"] is None
    assert config["num_classes"] == 10 and config["input_shape"] == [2]
    assert sampler.dataset().episode_config == config


# --- Errors -------------------------------------------------------------------------


def test_error_ways_larger_than_classes():
    x, y = labelled(num_classes=4)
    with pytest.raises(ValueError, match=r"ways=5 needs at least 5 classes.*has 4"):
        km.data.episodes(x, y, ways=5, shots=1, queries=1)


def test_error_small_class_is_named():
    x = np.zeros((9, 2), np.float32)
    y = np.array([0, 0, 0, 0, 7, 7, 1, 1, 1])
    with pytest.raises(ValueError, match=r"class 7 has 2.*drop_small_classes=True"):
        km.data.episodes(x, y, ways=2, shots=2, queries=1)


def test_error_too_few_classes_after_dropping():
    x = np.zeros((6, 2), np.float32)
    y = np.array([0, 0, 0, 1, 2, 2])
    with pytest.raises(ValueError, match=r"1 usable classes.*2 classes.*dropped"):
        km.data.episodes(x, y, ways=2, shots=2, queries=1, drop_small_classes=True)


@pytest.mark.parametrize(
    "labels, error, match",
    [
        (np.array([0.0, 1.5, 2.0, 0.0]), ValueError, r"non-integer value 1.5 at index 1"),
        (np.array(["a", "b", "a", "b"]), TypeError, r"integer class ids.*dtype <U1"),
        (np.array([0, -1, 1, 0]), ValueError, r"non-negative.*-1 at index 1"),
        (np.array([[0, 1], [1, 0]]), ValueError, r"shape \[n\].*\(2, 2\)"),
    ],
)
def test_error_bad_labels(labels, error, match):
    x = np.zeros((len(labels), 2), np.float32)
    with pytest.raises(error, match=match):
        km.data.episodes(x, labels, ways=2, shots=1, queries=1)


def test_integral_float_labels_are_accepted():
    x = np.zeros((4, 2), np.float32)
    km.data.episodes(x, np.array([0.0, 1.0, 1.0, 0.0]), ways=2, shots=1, queries=1)


def test_error_mismatched_lengths():
    with pytest.raises(ValueError, match=r"same length.*10 examples in x and 9 labels"):
        km.data.episodes(np.zeros((10, 2)), np.zeros(9, int), ways=1, shots=1, queries=1)


@pytest.mark.parametrize("name", ["ways", "shots", "queries", "num_episodes"])
def test_error_counts_below_one(name):
    x, y = labelled()
    kwargs = dict(ways=2, shots=1, queries=1)
    kwargs[name] = 0
    with pytest.raises(ValueError, match=rf"`{name}` must be an integer >= 1.*{name}=0"):
        km.data.episodes(x, y, **kwargs)


def test_error_non_integer_count_and_seed():
    x, y = labelled()
    with pytest.raises(TypeError, match=r"`shots` must be an integer.*2.5"):
        km.data.episodes(x, y, ways=2, shots=2.5, queries=1)
    with pytest.raises(TypeError, match=r"`seed` must be an integer.*'a'"):
        km.data.episodes(x, y, ways=2, shots=1, queries=1, seed="a")


def test_error_bad_augment_and_transform():
    x, y = labelled(shape=(2, 3, 1))
    with pytest.raises(ValueError, match=r"`augment` must be one of.*'rotate'"):
        km.data.episodes(x, y, ways=2, shots=1, queries=1, augment="rotate")
    with pytest.raises(ValueError, match=r"square images.*\(60, 2, 3, 1\)"):
        km.data.episodes(x, y, ways=2, shots=1, queries=1, augment="class_rotation")
    with pytest.raises(TypeError, match=r"`transform` must be a callable"):
        km.data.episodes(x, y, ways=2, shots=1, queries=1, transform=3)


def test_error_dataset_input():
    ds = tf.data.Dataset.from_tensor_slices(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"\(x, y\) pairs"):
        km.data.episodes(ds, ways=2, shots=1, queries=1)
    with pytest.raises(ValueError, match=r"`y` must be None"):
        km.data.episodes(ds, np.zeros(4, int), ways=2, shots=1, queries=1)
