"""Class splits and rotation augmentation, and their composition with episodes."""

import numpy as np
import pytest

import keras_meta as km


def test_split_by_counts_is_disjoint_and_complete():
    split = km.data.split_classes(1623, {"train": 1100, "validation": 100, "test": 423})
    assert split.names == ("train", "validation", "test")
    sets = [set(split[name].tolist()) for name in split]
    assert [len(s) for s in sets] == [1100, 100, 423]
    assert set.union(*sets) == set(range(1623))
    assert sum(len(s) for s in sets) == 1623


def test_split_sequence_names_and_fractions():
    split = km.data.split_classes(10, (0.7, 0.3), seed=1)
    assert split.names == ("train", "test")
    assert (len(split["train"]), len(split["test"])) == (7, 3)
    three = km.data.split_classes(7, [0.5, 0.25, 0.25])
    assert three.names == ("train", "validation", "test")
    assert sum(len(three[n]) for n in three) == 7  # rounding uses every class


def test_split_from_labels_uses_the_present_classes():
    labels = np.array([3, 3, 8, 8, 20, 20, 41, 41])
    split = km.data.split_classes(labels, [2, 2], seed=0)
    assert sorted(split["train"].tolist() + split["test"].tolist()) == [3, 8, 20, 41]


def test_split_is_seeded():
    a = km.data.split_classes(100, [60, 20, 20], seed=5)
    b = km.data.split_classes(100, [60, 20, 20], seed=5)
    c = km.data.split_classes(100, [60, 20, 20], seed=6)
    np.testing.assert_array_equal(a["test"], b["test"])
    assert not np.array_equal(a["test"], c["test"])
    assert a.get_config()["seed"] == 5


def test_select_and_mask():
    y = np.repeat(np.arange(6), 3)
    x = np.arange(18) * 10
    split = km.data.split_classes(y, {"a": 4, "b": 2}, seed=0)
    xa, ya = split.select("a", x, y)
    assert set(ya.tolist()) == set(split["a"].tolist())
    np.testing.assert_array_equal(xa, x[np.isin(y, split["a"])])
    assert split.mask("b", y).sum() == 6


def test_no_test_class_in_training_episodes_also_after_rotation():
    num_classes, per_class = 12, 4
    n = num_classes * per_class
    images = np.zeros((n, 3, 3, 1), np.float32)
    images[:, 0, 0, 0] = np.arange(1, n + 1)  # the example's identity, kept by rotation
    labels = np.repeat(np.arange(num_classes), per_class)
    split = km.data.split_classes(labels, [8, 4], seed=0)
    x_train, y_train = km.data.rotate_classes(*split.select("train", images, labels))
    test_ids = set(np.nonzero(np.isin(labels, split["test"]))[0].tolist())
    ds = km.data.episodes(x_train, y_train, ways=5, shots=1, queries=2, seed=0)
    assert ds.episode_config["num_classes"] == 8 * 4
    for inputs, _ in ds.take(30).as_numpy_iterator():
        for batch in (inputs["support_x"], inputs["query_x"]):
            ids = {int(image.max()) - 1 for image in batch}
            assert not ids & test_ids


def test_rotate_classes():
    images = np.random.default_rng(0).random((6, 5, 5, 2)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 4, 4])
    x4, y4 = km.data.rotate_classes(images, labels)
    assert x4.shape == (24, 5, 5, 2) and x4.dtype == np.float32
    assert len(np.unique(y4)) == 12
    for image, label in zip(x4, y4, strict=True):
        original, k = divmod(int(label), 4)
        source = images[labels == original]
        rotated = np.rot90(source, k=k, axes=(1, 2))
        assert any(np.array_equal(image, r) for r in rotated)


def test_rotate_images_matches_np_rot90():
    x = np.random.default_rng(1).random((8, 4, 4, 3)).astype(np.float32)
    turns = np.array([0, 1, 2, 3, 4, 5, -1, 2])
    out = km.data.rotate_images(x, turns).numpy()
    for image, source, k in zip(out, x, turns, strict=True):
        np.testing.assert_array_equal(image, np.rot90(source, k=k % 4))


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((10, [8, 5]), ValueError, r"sum to 13 classes, but there are only 10"),
        ((10, [0.8, 0.5]), ValueError, r"sum to at most 1.*sum 1.3"),
        ((10, [5, 0.5]), TypeError, r"all integers .* or all floats"),
        ((10, [1, 1, 1, 1]), ValueError, r"1 to 3 sizes.*received 4"),
        ((10, [-1, 3]), ValueError, r"counts must be >= 0"),
        ((0, [0]), ValueError, r"number of classes must be >= 1"),
        ((np.array([0, -2]), [1]), ValueError, r"non-negative"),
    ],
)
def test_split_errors(args, error, match):
    with pytest.raises(error, match=match):
        km.data.split_classes(*args)


def test_split_unknown_name():
    split = km.data.split_classes(10, [5, 5])
    with pytest.raises(KeyError, match=r"Unknown split 'validation'.*\['train', 'test'\]"):
        split["validation"]


def test_rotate_classes_errors():
    with pytest.raises(ValueError, match=r"square images.*\(2, 3, 4, 1\)"):
        km.data.rotate_classes(np.zeros((2, 3, 4, 1)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"same length"):
        km.data.rotate_classes(np.zeros((2, 3, 3, 1)), np.array([0, 1, 2]))
