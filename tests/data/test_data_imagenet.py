"""mini-/tiered-ImageNet: the packaged class splits and streaming them from generated folders.

No ImageNet here: the folders are tiny generated JPEGs under real wnids, each class
painted its own colour so that a streamed image tells which class folder it came from.
"""

import re
from importlib import resources

import numpy as np
import pytest
from PIL import Image

import keras_meta as km
from keras_meta.data import imagenet

SIZES = {
    "mini_imagenet": {"train": 64, "validation": 16, "test": 20},
    "tiered_imagenet": {"train": 351, "validation": 97, "test": 160},
}
CATEGORIES = {"train": 20, "validation": 6, "test": 8}


def colour(index):
    """A colour per class, far enough from the others to survive JPEG and resizing."""
    return (20 + 6 * (index % 38), 40 + 50 * (index // 38), 200)


def write_classes(root, wnids, images=3, first=0, size=(30, 44)):
    """`images` JPEGs of `size` per wnid, class `first + i` painted `colour(first + i)`."""
    for i, wnid in enumerate(wnids):
        folder = root / wnid
        folder.mkdir(parents=True)
        for k in range(images):
            picture = Image.new("RGB", (size[1] + k, size[0]), colour(first + i))
            picture.save(folder / f"{wnid}_{k + 1}.JPEG", quality=95)


def class_of(image, palette):
    """The index of the palette colour nearest to the image's mean colour."""
    mean = np.asarray(image).reshape(-1, 3).mean(0) * 255
    return int(np.argmin(np.abs(palette - mean).sum(1)))


@pytest.mark.parametrize("name", sorted(SIZES))
def test_class_lists_have_the_published_sizes_and_are_disjoint(name):
    splits = {s: km.data.imagenet_classes(name, s) for s in SIZES[name]}
    assert {s: len(w) for s, w in splits.items()} == SIZES[name]
    for wnids in splits.values():
        assert len(set(wnids)) == len(wnids)
        assert all(re.fullmatch(r"n\d{8}", w) for w in wnids)
    train, validation, test = (set(splits[s]) for s in ("train", "validation", "test"))
    assert not train & validation and not train & test and not validation & test


def test_files_name_their_source_and_tiered_categories_are_20_6_8():
    for benchmark in SIZES:
        for split in CATEGORIES:
            name = f"{benchmark}_{split}.txt"
            text = resources.files("keras_meta.data").joinpath("class_lists", name).read_text()
            assert text.startswith("# ") and "github.com/" in text.split("\nn")[0]
    for split, count in CATEGORIES.items():
        rows = imagenet._class_list("tiered_imagenet", split)
        categories = {c for _, c in rows}
        assert len(categories) == count and None not in categories
    # A category is on one side of the split only: that is what makes it "tiered".
    seen = [{c for _, c in imagenet._class_list("tiered_imagenet", s)} for s in CATEGORIES]
    assert sum(len(s) for s in seen) == len(set().union(*seen)) == 34
    # First train class of mini-ImageNet, as in Ravi & Larochelle's train.csv.
    assert km.data.imagenet_classes("mini_imagenet", "train")[0] == "n01532829"


def test_mini_imagenet_streams_the_test_classes_only(tmp_path):
    test = km.data.imagenet_classes("mini_imagenet", "test")
    others = km.data.imagenet_classes("mini_imagenet", "train")[:5]
    write_classes(tmp_path, test + others)
    (tmp_path / "README.txt").write_text("files beside the class folders are ignored")
    source = km.data.mini_imagenet(tmp_path, "test")
    assert list(source) == test and source.image_size == (84, 84)
    assert source.num_images == 60 and source.name == "mini_imagenet" and source.split == "test"
    assert source[test[0]] == [str(tmp_path / test[0] / f"{test[0]}_{k}.JPEG") for k in (1, 2, 3)]

    palette = np.array([colour(i) for i in range(len(test) + len(others))], float)
    dataset = km.data.stream_episodes(source, ways=5, shots=1, queries=2, seed=0)
    assert dataset.element_spec[0]["support_x"].shape == (5, 84, 84, 3)
    seen = set()
    for ex, qy in dataset.take(8):
        support = [class_of(x, palette) for x in ex["support_x"].numpy()]
        query = [class_of(x, palette) for x in ex["query_x"].numpy()]
        # Every image is one of the test classes (indices 0..19), never a train class.
        assert max(support + query) < len(test)
        # Labels are consistent: the same label is the same class in support and query.
        by_label = dict(zip(ex["support_y"].numpy().tolist(), support, strict=True))
        assert [by_label[y] for y in qy.numpy().tolist()] == query
        seen.update(support)
    assert len(seen) > 10


def test_sampler_takes_the_source_image_size_and_an_explicit_one_wins(tmp_path):
    wnids = km.data.imagenet_classes("mini_imagenet", "validation")
    write_classes(tmp_path, wnids, images=2)
    source = km.data.mini_imagenet(tmp_path, "validation", image_size=(20, 24))
    sampler = km.data.StreamingEpisodeSampler(source, ways=3, shots=1, queries=1, seed=1)
    assert sampler.input_shape == (20, 24, 3)
    assert sampler.class_names == wnids
    sampler = km.data.StreamingEpisodeSampler(
        source, ways=3, shots=1, queries=1, seed=1, image_size=32
    )
    assert sampler.input_shape == (32, 32, 3)
    ex, _ = next(iter(sampler.dataset()))
    assert ex["support_x"].shape == (3, 32, 32, 3)


def test_images_per_class_takes_the_first_files_by_name(tmp_path):
    wnids = km.data.imagenet_classes("mini_imagenet", "validation")
    write_classes(tmp_path, wnids, images=4)
    source = km.data.mini_imagenet(tmp_path, "validation", images_per_class=2)
    assert source[wnids[3]] == [str(tmp_path / wnids[3] / f"{wnids[3]}_{k}.JPEG") for k in (1, 2)]
    assert km.data.mini_imagenet(tmp_path, "validation", images_per_class=None).num_images == 64
    # 600 (the default) is more than there are: all are taken.
    assert km.data.mini_imagenet(tmp_path, "validation").num_images == 64


def test_tiered_imagenet_validation_split_streams(tmp_path):
    wnids = km.data.imagenet_classes("tiered_imagenet", "validation")
    write_classes(tmp_path, wnids, images=2, size=(12, 12))
    source = km.data.tiered_imagenet(tmp_path, "validation", image_size=16)
    assert list(source) == wnids and source.num_images == 2 * 97
    ex, qy = next(iter(km.data.stream_episodes(source, ways=5, shots=1, queries=1, seed=3)))
    assert ex["support_x"].shape == (5, 16, 16, 3) and qy.shape == (5,)
    palette = np.array([colour(i) for i in range(len(wnids))], float)
    assert all(class_of(x, palette) < 97 for x in ex["support_x"].numpy())


def test_missing_wnids_are_one_error_with_the_count_and_first_few(tmp_path):
    test = km.data.imagenet_classes("mini_imagenet", "test")
    write_classes(tmp_path, test[:13])
    (tmp_path / test[13]).mkdir()  # a folder without images counts as missing
    with pytest.raises(FileNotFoundError, match=r"lacks 7 of the 20 mini_imagenet test") as info:
        km.data.mini_imagenet(tmp_path, "test")
    assert str(test[13:18]) in str(info.value) and "and 2 more" in str(info.value)
    # A root holding train/ gets a hint.
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="train' exists"):
        km.data.mini_imagenet(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        km.data.tiered_imagenet(tmp_path / "nowhere", "test")


def test_a_class_with_too_few_images_is_the_samplers_error(tmp_path):
    wnids = km.data.imagenet_classes("mini_imagenet", "validation")
    write_classes(tmp_path, wnids[:1], images=1)
    write_classes(tmp_path, wnids[1:], images=3, first=1)
    source = km.data.mini_imagenet(tmp_path, "validation")
    with pytest.raises(ValueError, match=r"shots \+ queries = 1 \+ 2 = 3.*class 0 has 1"):
        km.data.stream_episodes(source, ways=5, shots=1, queries=2)
    dataset = km.data.stream_episodes(source, ways=5, shots=1, queries=2, drop_small_classes=True)
    assert dataset.episode_config["dropped_classes"] == [0]


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda r: km.data.mini_imagenet(r, "val"), ValueError, "split"),
        (lambda r: km.data.tiered_imagenet(r, image_size=0), ValueError, "image_size"),
        (lambda r: km.data.mini_imagenet(r, images_per_class=0), ValueError, "images_per_class"),
        (lambda r: km.data.mini_imagenet(r, images_per_class=2.5), TypeError, "images_per_class"),
        (lambda r: km.data.imagenet_classes("imagenet", "test"), ValueError, "benchmark"),
    ],
)
def test_bad_arguments_name_themselves(tmp_path, call, error, match):
    with pytest.raises(error, match=match):
        call(tmp_path)


def test_class_files_is_a_read_only_mapping():
    source = km.data.ClassFiles({"b": ["b/2.png"], "a": ["a/1.png"]}, (10, 12), "x", "test")
    assert list(source) == ["b", "a"] and len(source) == 2 and dict(source)["a"] == ["a/1.png"]
    source["a"].append("a/9.png")
    assert source["a"] == ["a/1.png"]
    assert "x test: 2 classes, 2 images" in repr(source)
