"""The TFDS few-shot benchmarks: CIFAR-FS, FC100 and CUB.

There is no network here, so the data is TFDS's own mock (`tfds.testing.mock_data`).
TFDS's random mock draws labels at random and would leave some classes out, so most
tests give it examples of their own (`as_dataset_fn`) with label `i % num_classes`:
every class appears the same number of times, with known pixels and boxes.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_meta as km
from keras_meta.data import benchmarks

# The CIFAR-100 class hierarchy, from the dataset's page (Krizhevsky, 2009): superclass
# -> its five fine classes; coarse label ids are the superclasses' alphabetical ranks.
CIFAR100_HIERARCHY = {
    "aquatic_mammals": "beaver dolphin otter seal whale",
    "fish": "aquarium_fish flatfish ray shark trout",
    "flowers": "orchid poppy rose sunflower tulip",
    "food_containers": "bottle bowl can cup plate",
    "fruit_and_vegetables": "apple mushroom orange pear sweet_pepper",
    "household_electrical_devices": "clock keyboard lamp telephone television",
    "household_furniture": "bed chair couch table wardrobe",
    "insects": "bee beetle butterfly caterpillar cockroach",
    "large_carnivores": "bear leopard lion tiger wolf",
    "large_man-made_outdoor_things": "bridge castle house road skyscraper",
    "large_natural_outdoor_scenes": "cloud forest mountain plain sea",
    "large_omnivores_and_herbivores": "camel cattle chimpanzee elephant kangaroo",
    "medium_mammals": "fox porcupine possum raccoon skunk",
    "non-insect_invertebrates": "crab lobster snail spider worm",
    "people": "baby boy girl man woman",
    "reptiles": "crocodile dinosaur lizard snake turtle",
    "small_mammals": "hamster mouse rabbit shrew squirrel",
    "trees": "maple_tree oak_tree palm_tree pine_tree willow_tree",
    "vehicles_1": "bicycle bus motorcycle pickup_truck train",
    "vehicles_2": "lawn_mower rocket streetcar tank tractor",
}
COARSE = sorted(CIFAR100_HIERARCHY)

# FC100's superclasses by split, as coarse label ids (Oreshkin et al. 2018, TADAM's code).
FC100_SUPERCLASSES = {
    "train": [1, 2, 3, 4, 5, 6, 9, 10, 15, 17, 18, 19],
    "validation": [8, 11, 13, 16],
    "test": [0, 7, 12, 14],
}

# CUB's split by class index i (Chen et al. 2019, CloserLookFewShot's write_CUB_filelist.py).
CUB_RULE = {
    "train": lambda i: i % 2 == 0,
    "validation": lambda i: i % 4 == 1,
    "test": lambda i: i % 4 == 3,
}

PER_CLASS = 3  # CIFAR-100 examples per class
CUB_PER_CLASS = 2


def cifar100_image(i):
    return np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def cifar100_examples(builder, *args, **kwargs):
    """Three examples of each of CIFAR-100's 100 classes: example `i` has label `i % 100`."""
    return tf.data.Dataset.from_generator(
        lambda: (
            {"id": f"ex{i}", "image": cifar100_image(i), "label": i % 100, "coarse_label": 0}
            for i in range(100 * PER_CLASS)
        ),
        output_signature=builder.info.features.get_tensor_spec(),
    )


def cub_example(i):
    """CUB example `i`: an image of its own size, a box of 10x15 pixels at its own place."""
    rng = np.random.default_rng(i)
    height, width = 20 + i % 7, 30 + i % 5
    top, left = i % 9, i % 13
    # Edges off by up to 0.4 pixel: the crop rounds them to the nearest pixel.
    bbox = np.array(
        [(top + 0.4) / height, (left - 0.3) / width, (top + 10 - 0.4) / height,
         (left + 15 + 0.2) / width],
        np.float32,
    ).clip(0, 1)
    return {
        "image": rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        "image/filename": f"img{i}.jpg",
        "label": i % 200,
        "label_name": "bird",
        "bbox": bbox,
        "segmentation_mask": np.zeros((height, width, 1), np.uint8),
    }, (top, left)


def cub_examples(builder, *args, **kwargs):
    return tf.data.Dataset.from_generator(
        lambda: (cub_example(i)[0] for i in range(200 * CUB_PER_CLASS)),
        output_signature=builder.info.features.get_tensor_spec(),
    )


def split_ids(benchmark):
    return {s: set(benchmarks._split_classes(benchmark, s)[1]) for s in benchmarks.SPLITS}


def test_class_lists_are_the_published_splits():
    fine = {c: CIFAR100_HIERARCHY[c].split() for c in COARSE}
    assert sorted(n for names in fine.values() for n in names) == list(
        km.data.tfds.CIFAR100_FINE_LABELS
    )
    sizes = {"cifar_fs": [64, 16, 20], "fc100": [60, 20, 20], "cub": [100, 50, 50]}
    for benchmark, expected in sizes.items():
        ids = split_ids(benchmark)
        assert [len(ids[s]) for s in benchmarks.SPLITS] == expected
        assert [len(km.data.benchmark_classes(benchmark, s)) for s in benchmarks.SPLITS] == (
            expected
        )
        assert set.union(*ids.values()) == set(range(sum(expected)))  # disjoint, complete
        for split in benchmarks.SPLITS:
            header = benchmarks._class_list_file(benchmark, split).read_text().splitlines()[0]
            assert header.startswith("# ") and "torchmeta" in header
    # FC100: each split is exactly the fine classes of its superclasses.
    for split, coarse_ids in FC100_SUPERCLASSES.items():
        names = {n for c in coarse_ids for n in fine[COARSE[c]]}
        assert set(km.data.benchmark_classes("fc100", split)) == names
    assert sum(map(len, FC100_SUPERCLASSES.values())) == 20
    # CUB: the class ids follow Chen et al.'s rule; each name is its class's folder.
    for split, rule in CUB_RULE.items():
        assert split_ids("cub")[split] == {i for i in range(200) if rule(i)}
        for name in km.data.benchmark_classes("cub", split):
            assert name[3] == "." and rule(int(name[:3]) - 1)
    assert km.data.CIFAR_FS_CLASSES["validation"][:2] == ("beaver", "otter")
    assert {s: len(v) for s, v in km.data.CIFAR_FS_CLASSES.items()} == {
        "train": 64, "validation": 16, "test": 20
    }


@pytest.mark.parametrize("loader", [km.data.cifar_fs, km.data.fc100])
def test_cifar100_benchmarks(loader):
    with tfds.testing.mock_data(as_dataset_fn=cifar100_examples):
        loaded = {s: loader(s) for s in benchmarks.SPLITS}
        x_uint8, y_uint8 = loader("test", dtype="uint8")
    expected = split_ids(loader.__name__)
    for split, (x, y) in loaded.items():
        assert x.dtype == np.float32 and x.shape == (len(y), 32, 32, 3)
        assert y.dtype == np.int64
        assert set(y.tolist()) == expected[split]
        assert np.bincount(y, minlength=100)[sorted(expected[split])].tolist() == [
            PER_CLASS
        ] * len(expected[split])
    # The examples are the generator's, in its order.
    x, y = loaded["test"]
    kept = [i for i in range(100 * PER_CLASS) if i % 100 in expected["test"]]
    assert y.tolist() == [i % 100 for i in kept]
    np.testing.assert_array_equal(x_uint8, np.stack([cifar100_image(i) for i in kept]))
    # uint8: the same pixels, exactly (float32 is uint8 times 1/255 without resizing).
    np.testing.assert_array_equal(y_uint8, y)
    assert x_uint8.dtype == np.uint8
    np.testing.assert_array_equal(x_uint8 * np.float32(1 / 255), x)
    ds = km.data.episodes(x_uint8, y_uint8, ways=5, shots=1, queries=2, seed=0, scale=255)
    episode, query_y = next(iter(ds))
    assert episode["support_x"].shape == (5, 32, 32, 3) and query_y.shape == (10,)
    assert episode["support_x"].dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(episode["query_x"])) <= 1.0
    assert float(tf.reduce_max(episode["query_x"])) <= 1.0


def test_cub():
    with tfds.testing.mock_data(as_dataset_fn=cub_examples):
        loaded = {s: km.data.cub(s) for s in benchmarks.SPLITS}
        x_float, y_float = km.data.cub("validation", dtype="float32", image_size=(16, 24))
        x_small, _ = km.data.cub("validation", image_size=(16, 24))
    expected = split_ids("cub")
    for split, (x, y) in loaded.items():
        assert x.dtype == np.uint8 and x.shape == (len(y), 84, 84, 3)
        assert set(y.tolist()) == expected[split]
        assert len(y) == CUB_PER_CLASS * len(expected[split])
    # uint8 is float32 rounded to the nearest level.
    assert x_float.dtype == np.float32 and x_float.shape == (100, 16, 24, 3)
    np.testing.assert_array_equal(y_float, loaded["validation"][1])
    np.testing.assert_allclose(x_small / 255, x_float, rtol=0, atol=0.5 / 255 + 1e-6)
    x, y = loaded["train"]
    ds = km.data.episodes(x, y, ways=5, shots=1, queries=1, seed=0, scale=255)
    episode, query_y = next(iter(ds))
    assert episode["support_x"].shape == (5, 84, 84, 3) and query_y.shape == (5,)
    assert float(tf.reduce_max(episode["support_x"])) <= 1.0


def test_cub_crop_to_box():
    with tfds.testing.mock_data(as_dataset_fn=cub_examples):
        # Every box is 10x15 pixels once rounded, so the crops stack without a resize.
        x, y = km.data.cub("test", image_size=None, crop_to_box=True)
        x_float, _ = km.data.cub("test", image_size=None, crop_to_box=True, dtype="float32")
        resized, _ = km.data.cub("test", image_size=84, crop_to_box=True)
        whole, _ = km.data.cub("test", image_size=84)
    examples = [cub_example(i) for i in range(200 * CUB_PER_CLASS) if i % 200 % 4 == 3]
    assert x.shape == (len(examples), 10, 15, 3) and y.tolist() == [
        ex["label"] for ex, _ in examples
    ]
    for image, (example, (top, left)) in zip(x, examples):
        np.testing.assert_array_equal(image, example["image"][top : top + 10, left : left + 15])
    np.testing.assert_array_equal(x * np.float32(1 / 255), x_float)
    assert resized.shape == whole.shape == (len(examples), 84, 84, 3)
    assert not np.array_equal(resized, whole)


def test_cub_with_tfds_random_mock():
    # TFDS's own mock draws boxes with ymin > ymax; the crop still keeps a pixel.
    with tfds.testing.mock_data(num_examples=40):
        x, y = km.data.cub("train", crop_to_box=True, image_size=8)
    assert x.shape == (len(y), 8, 8, 3) and set(y.tolist()) <= split_ids("cub")["train"]


def test_errors(tmp_path):
    for loader in (km.data.cifar_fs, km.data.fc100, km.data.cub):
        with pytest.raises(
            ValueError,
            match=r"`split` must be one of \['train', 'validation', 'test'\]; "
            r"received split='val'",
        ):
            loader("val")
    with pytest.raises(TypeError, match=r"`crop_to_box` must be"):
        km.data.cub("test", crop_to_box="yes")
    with pytest.raises(TypeError, match=r"`download` must be"):
        km.data.fc100("test", download="no")
    with pytest.raises(ValueError, match=r"`benchmark` must be one of .*'imagenet'"):
        km.data.benchmark_classes("imagenet", "test")
    (tmp_path / "fc100_test.txt").write_text("# made up\nbeaver\nunicorn\n")
    with pytest.raises(ValueError, match=r"fc100_test.txt names the class 'unicorn'.*cifar100"):
        benchmarks._split_classes("fc100", "test", tmp_path)
    (tmp_path / "cub_test.txt").write_text("004.Groove_billed_Ani\n201.Phoenix\n")
    with pytest.raises(ValueError, match=r"cub_test.txt names the class '201.Phoenix'.*001"):
        benchmarks._split_classes("cub", "test", tmp_path)
    (tmp_path / "cub_train.txt").write_text("# only a comment\n")
    with pytest.raises(ValueError, match=r"cub_train.txt lists no classes"):
        benchmarks._split_classes("cub", "train", tmp_path)
    (tmp_path / "cifar_fs_train.txt").write_text("seal\nseal\n")
    with pytest.raises(ValueError, match=r"cifar_fs_train.txt lists the class 'seal' twice"):
        benchmarks._split_classes("cifar_fs", "train", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"cub_validation.txt does not exist"):
        benchmarks._split_classes("cub", "validation", tmp_path)
