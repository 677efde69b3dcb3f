"""Image-classification datasets from TensorFlow Datasets, and the CIFAR-FS split."""

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_meta.data import _images
from keras_meta.validation import check_choice

# CIFAR-FS (Bertinetto et al., 2019, "Meta-learning with differentiable closed-form
# solvers"): 64/16/20 CIFAR-100 fine classes, as distributed with the paper's code and
# reproduced in torchmeta
# (torchmeta/datasets/assets/cifar100/cifar-fs/{train,val,test}.json).
CIFAR_FS_CLASSES: dict[str, tuple[str, ...]] = {
    "train": (
        "dolphin",
        "seal",
        "aquarium_fish",
        "ray",
        "trout",
        "orchid",
        "sunflower",
        "tulip",
        "bottle",
        "bowl",
        "can",
        "cup",
        "plate",
        "apple",
        "mushroom",
        "orange",
        "pear",
        "clock",
        "keyboard",
        "chair",
        "couch",
        "bee",
        "caterpillar",
        "cockroach",
        "bear",
        "lion",
        "tiger",
        "wolf",
        "bridge",
        "castle",
        "house",
        "road",
        "skyscraper",
        "cloud",
        "forest",
        "mountain",
        "elephant",
        "kangaroo",
        "porcupine",
        "possum",
        "raccoon",
        "skunk",
        "lobster",
        "spider",
        "boy",
        "girl",
        "dinosaur",
        "lizard",
        "snake",
        "turtle",
        "hamster",
        "mouse",
        "rabbit",
        "shrew",
        "squirrel",
        "oak_tree",
        "palm_tree",
        "pine_tree",
        "willow_tree",
        "bus",
        "train",
        "lawn_mower",
        "streetcar",
        "tank",
    ),
    "validation": (
        "beaver",
        "otter",
        "flatfish",
        "shark",
        "lamp",
        "television",
        "beetle",
        "butterfly",
        "sea",
        "camel",
        "cattle",
        "crab",
        "crocodile",
        "maple_tree",
        "motorcycle",
        "tractor",
    ),
    "test": (
        "whale",
        "poppy",
        "rose",
        "sweet_pepper",
        "telephone",
        "bed",
        "table",
        "wardrobe",
        "leopard",
        "plain",
        "chimpanzee",
        "fox",
        "snail",
        "worm",
        "baby",
        "man",
        "woman",
        "bicycle",
        "pickup_truck",
        "rocket",
    ),
}


# CIFAR-100's fine label ids are the alphabetical ranks of the names (its meta file's order).
CIFAR100_FINE_LABELS: tuple[str, ...] = tuple(
    sorted(name for names in CIFAR_FS_CLASSES.values() for name in names)
)


def _class_ids(classes, names):
    """Maps class names or ids to ids, with a clear error for unknown ones."""
    ids = []
    for c in classes:
        if isinstance(c, str):
            if names is None or c not in names:
                raise ValueError(
                    f"Unknown class name {c!r}; this dataset's label has "
                    + (f"the classes {list(names)[:20]}..." if names else "no class names")
                    + "."
                )
            ids.append(names.index(c))
        else:
            ids.append(int(c))
    return ids


def from_tfds(
    name: str,
    split: str = "train",
    image_size: int | tuple[int, int] | None = None,
    classes: Sequence[int | str] | None = None,
    color_mode: str | None = None,
    invert: bool = False,
    image_key: str = "image",
    label_key: str = "label",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    with_info: bool = False,
    dtype: str = "float32",
):
    """Reads a TFDS image-classification dataset into `(images, labels)` arrays.

    Args:
        name: TFDS name, e.g. `"omniglot"`, `"cifar100"`, `"mnist"`.
        split: TFDS split expression, e.g. `"train"` or `"train+test"`.
        image_size: an int or `(height, width)`: resize with
            `tf.image.resize(antialias=True)` (bilinear); `None` keeps the stored size.
        classes: keep only these classes, given as label ids or label names (ids are
            kept unchanged, since `episodes()` remaps labels per episode).
        color_mode: `None` (as stored), `"grayscale"` or `"rgb"`.
        invert: return `1 - image` (e.g. TFDS Omniglot, black ink on white, to ink = 1).
        image_key: feature holding the image.
        label_key: feature holding the integer class label.
        data_dir: TFDS data directory.
        download: let TFDS download and prepare the dataset if it is not in `data_dir`.
        with_info: also return `{"class_names": [...] or None, "tfds_info":
            DatasetInfo}`.
        dtype: `"float32"` (values in `[0, 1]`) or `"uint8"` (the stored 8-bit
            pixels, a quarter of the memory; `255 - pixel` with `invert`; resized
            images are rounded to the nearest level): sample them with
            `episodes(..., scale=255)`.

    Returns:
        `(images, labels)` (plus `info` with `with_info=True`): float32 `[n, h, w, c]`
        in `[0, 1]` (or uint8) and int64 `[n]` label ids.

    Example:

    >>> import keras_meta as km
    >>> x, y = km.data.from_tfds("omniglot", split="train", image_size=28,
    ...                          color_mode="grayscale", invert=True)   # doctest: +SKIP
    """
    import tensorflow_datasets as tfds

    check_choice("color_mode", color_mode, (None, "grayscale", "rgb"))
    check_choice("dtype", dtype, ("float32", "uint8"))
    size = _images.check_image_size(image_size)
    dataset, info = tfds.load(
        name,
        split=split,
        data_dir=os.fspath(data_dir) if data_dir is not None else None,
        download=download,
        with_info=True,
        shuffle_files=False,
    )
    features = info.features
    for key, what in ((image_key, "image_key"), (label_key, "label_key")):
        if key not in features:
            raise ValueError(
                f"The TFDS dataset {name!r} has no feature {key!r} (from `{what}`); "
                "its "
                f"features are {list(features.keys())}."
            )
    label_feature = features[label_key]
    names = list(label_feature.names) if hasattr(label_feature, "names") else None

    dataset = dataset.map(lambda ex: (ex[image_key], ex[label_key]))
    if classes is not None:
        keep = tf.constant(_class_ids(classes, names), tf.int64)
        dataset = dataset.filter(
            lambda image, label: tf.reduce_any(tf.equal(tf.cast(label, tf.int64), keep))
        )

    def convert(image, label):
        image = tf.image.convert_image_dtype(image, tf.float32)
        if color_mode == "grayscale" and image.shape[-1] != 1:
            image = tf.image.rgb_to_grayscale(image)
        elif color_mode == "rgb" and image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        if size is not None:
            image = tf.image.resize(image, size, antialias=True)
            image = tf.clip_by_value(image, 0.0, 1.0)
        if invert:
            image = 1.0 - image
        return image, tf.cast(label, tf.int64)

    def convert_uint8(image, label):
        image = tf.image.convert_image_dtype(image, tf.uint8, saturate=True)
        if color_mode == "grayscale" and image.shape[-1] != 1:
            image = tf.image.rgb_to_grayscale(image)
        elif color_mode == "rgb" and image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        if size is not None:
            image = tf.image.resize(image, size, antialias=True)
            image = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
        if invert:
            image = 255 - image
        return image, tf.cast(label, tf.int64)

    dataset = dataset.map(
        convert_uint8 if dtype == "uint8" else convert, num_parallel_calls=tf.data.AUTOTUNE
    )
    images, labels = [], []
    try:
        for x, y in dataset.batch(1024).as_numpy_iterator():
            images.append(x)
            labels.append(y)
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(
            f"Could not stack the images of {name!r} into one array "
            f"({error.message.splitlines()[0]}"
            "); they probably differ in size: pass image_size=."
        ) from error
    if not images:
        raise ValueError(f"No examples in TFDS {name!r} split {split!r} for classes={classes}.")
    images, labels = np.concatenate(images), np.concatenate(labels)
    if with_info:
        return images, labels, {"class_names": names, "tfds_info": info}
    return images, labels


def cifar_fs(
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    image_size: int | tuple[int, int] | None = None,
    dtype: str = "float32",
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-FS: one of its 64/16/20-class splits of CIFAR-100, 600 images per class.

    Reads TFDS `cifar100` (`train+test`) and keeps the classes of
    `CIFAR_FS_CLASSES[split]`, the split of Bertinetto et al. (2019) as distributed with
    torchmeta.

    Args:
        split: `"train"` (64 classes), `"validation"` (16) or `"test"` (20).
        data_dir: TFDS data directory.
        download: let TFDS download CIFAR-100 if needed.
        image_size: optional resize (CIFAR-FS uses the native 32x32).
        dtype: `"float32"` or `"uint8"` (a quarter of the memory), as in `from_tfds`.

    Returns:
        `(images, labels)`: float32 `[n, 32, 32, 3]` in `[0, 1]`, int64 CIFAR-100 fine
        label ids.

    Example:

    >>> import keras_meta as km
    >>> x, y = km.data.cifar_fs("test")                       # doctest: +SKIP
    >>> test_episodes = km.data.episodes(x, y, ways=5, shots=1, queries=15,
    ...                                  seed=0, num_episodes=600)   # doctest: +SKIP
    """
    if split not in CIFAR_FS_CLASSES:
        raise ValueError(
            f"`split` must be one of {list(CIFAR_FS_CLASSES)}; received split={split!r}."
        )
    return from_tfds(
        "cifar100",
        split="train+test",
        image_size=image_size,
        classes=[CIFAR100_FINE_LABELS.index(c) for c in CIFAR_FS_CLASSES[split]],
        data_dir=data_dir,
        download=download,
        dtype=dtype,
    )
