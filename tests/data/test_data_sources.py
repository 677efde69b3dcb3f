"""Image folders and TFDS datasets as episode sources."""

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import keras_meta as km


def write_tree(root, classes, per_class=3, size=(10, 12)):
    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            value = 20 * c + i
            Image.new("RGB", (size[1], size[0]), (value, value, value)).save(folder / f"img{i}.png")


def test_image_folder(tmp_path):
    write_tree(tmp_path, ["zebra", "apple", "mango"])
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "mango" / "readme.md").write_text("ignored")
    x, y, names = km.data.image_folder(tmp_path)
    assert names == ["apple", "mango", "zebra"]
    assert x.shape == (9, 10, 12, 3) and x.dtype == np.float32
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # apple was written as class index 1 in write_tree: value 20..22
    np.testing.assert_allclose(x[0, 0, 0], [20 / 255] * 3, atol=1e-6)
    x, _, _ = km.data.image_folder(tmp_path, image_size=4, color_mode="grayscale")
    assert x.shape == (9, 4, 4, 1)
    inverted, _, _ = km.data.image_folder(
        tmp_path, image_size=4, color_mode="grayscale", invert=True
    )
    np.testing.assert_allclose(inverted, 1 - x)
    ds = km.data.episodes(x, y, ways=3, shots=1, queries=2, seed=0)
    assert next(iter(ds))[0]["support_x"].shape == (3, 4, 4, 1)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*<class_name>/<image>"):
        km.data.image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"No images found"):
        km.data.image_folder(tmp_path)
    write_tree(tmp_path, ["a", "b"])
    Image.new("RGB", (5, 5)).save(tmp_path / "b" / "odd.png")
    with pytest.raises(ValueError, match=r"odd.png.*shape \(5, 5, 3\).*image_size="):
        km.data.image_folder(tmp_path)
    (tmp_path / "b" / "odd.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"Could not decode the image .*odd.png"):
        km.data.image_folder(tmp_path, image_size=8)
    with pytest.raises(ValueError, match=r"`color_mode` must be one of"):
        km.data.image_folder(tmp_path, color_mode="cmyk")


def test_image_folder_skips_empty_class_folders(tmp_path):
    write_tree(tmp_path, ["a", "c"])
    (tmp_path / "b").mkdir()
    with pytest.warns(UserWarning, match=r"Skipped 1 class folders.*'b'"):
        _, y, names = km.data.image_folder(tmp_path)
    assert names == ["a", "c"] and y.max() == 1


def test_from_tfds_with_mock_data():
    with tfds.testing.mock_data(num_examples=64):
        x, y, info = km.data.from_tfds("cifar100", split="train", with_info=True)
        assert x.shape == (64, 32, 32, 3) and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert y.dtype == np.int64 and 0 <= y.min() and y.max() < 100
        assert len(info["class_names"]) == 100
        small, _ = km.data.from_tfds(
            "cifar100", split="train", image_size=16, color_mode="grayscale"
        )
        assert small.shape == (64, 16, 16, 1)
        kept = sorted(set(y.tolist()))[:5]
        xk, yk = km.data.from_tfds("cifar100", split="train", classes=kept)
        assert set(yk.tolist()) == set(kept)
        assert len(yk) == np.isin(y, kept).sum()
        ds = km.data.episodes(x, y, 3, 1, 1, seed=0, drop_small_classes=True)
        assert next(iter(ds))[0]["support_x"].shape == (3, 32, 32, 3)


def test_from_tfds_omniglot_inverted_grayscale():
    with tfds.testing.mock_data(num_examples=10):
        x, y = km.data.from_tfds(
            "omniglot", split="train", image_size=28, color_mode="grayscale", invert=True
        )
        plain, _ = km.data.from_tfds(
            "omniglot", split="train", image_size=28, color_mode="grayscale"
        )
    assert x.shape == (10, 28, 28, 1)
    np.testing.assert_allclose(x, 1.0 - plain, atol=1e-6)


def test_cifar_fs_split():
    ids = {
        split: {km.data.tfds.CIFAR100_FINE_LABELS.index(n) for n in names}
        for split, names in km.data.CIFAR_FS_CLASSES.items()
    }
    assert [len(ids[s]) for s in ("train", "validation", "test")] == [64, 16, 20]
    assert set.union(*ids.values()) == set(range(100))
    with tfds.testing.mock_data(num_examples=300):
        _, y = km.data.cifar_fs("test")
    assert y.size and set(y.tolist()) <= ids["test"]


def test_from_tfds_errors():
    with tfds.testing.mock_data(num_examples=4):
        with pytest.raises(ValueError, match=r"no feature 'img'.*features are \[.*'image'"):
            km.data.from_tfds("cifar100", image_key="img")
        with pytest.raises(ValueError, match=r"`color_mode` must be one of \[None"):
            km.data.from_tfds("cifar100", color_mode="cmyk")
    with pytest.raises(ValueError, match=r"`split` must be one of.*'val'"):
        km.data.cifar_fs("val")
