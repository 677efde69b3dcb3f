"""Image-classification datasets from TensorFlow Datasets, read into arrays.

The few-shot benchmarks built on them (CIFAR-FS, FC100, CUB) are in `benchmarks`.
"""

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_meta.data import _images
from keras_meta.validation import check_bool, check_choice

# CIFAR-100's fine label names by label id (its meta file's order, which is alphabetical);
# written out rather than read from TFDS, whose mocked or unprepared info has no names.
CIFAR100_FINE_LABELS: tuple[str, ...] = tuple(
    """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
    butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch
    crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo
    keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse
    mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
    porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper
    snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television
    tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()
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
    images, labels, names, info = _read_tfds(
        name,
        split,
        image_size=image_size,
        classes=classes,
        color_mode=color_mode,
        invert=invert,
        image_key=image_key,
        label_key=label_key,
        data_dir=data_dir,
        download=download,
        dtype=dtype,
    )
    if with_info:
        return images, labels, {"class_names": names, "tfds_info": info}
    return images, labels


def _crop_to_box(image: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
    """Crops an `[h, w, c]` image to a TFDS bounding box `[ymin, xmin, ymax, xmax]`.

    The box is in fractions of the image; its edges are rounded to the nearest pixel
    (TFDS stores pixel boxes divided by the image size, so this recovers them), and
    the crop keeps at least one pixel in each direction.
    """
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    box = tf.cast(box, tf.float32)

    def edges(low, high, size):
        low = tf.cast(tf.round(low * tf.cast(size, tf.float32)), tf.int32)
        high = tf.cast(tf.round(high * tf.cast(size, tf.float32)), tf.int32)
        low = tf.clip_by_value(low, 0, size - 1)
        return low, tf.clip_by_value(high, low + 1, size)

    top, bottom = edges(box[0], box[2], height)
    left, right = edges(box[1], box[3], width)
    return image[top:bottom, left:right]


def _read_tfds(
    name,
    split,
    *,
    image_size=None,
    classes=None,
    color_mode=None,
    invert=False,
    image_key="image",
    label_key="label",
    data_dir=None,
    download=True,
    dtype="float32",
    box_key=None,
):
    """`from_tfds`, returning `(images, labels, label_names, tfds_info)`.

    With `box_key`, each image is first cropped to the bounding box in that feature.
    """
    import tensorflow_datasets as tfds

    check_choice("color_mode", color_mode, (None, "grayscale", "rgb"))
    check_choice("dtype", dtype, ("float32", "uint8"))
    check_bool("download", download)
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
    keys = ((image_key, "image_key"), (label_key, "label_key"))
    for key, what in keys + (((box_key, "box_key"),) if box_key is not None else ()):
        if key not in features:
            raise ValueError(
                f"The TFDS dataset {name!r} has no feature {key!r} (from `{what}`); "
                "its "
                f"features are {list(features.keys())}."
            )
    label_feature = features[label_key]
    names = list(label_feature.names) if hasattr(label_feature, "names") else None

    if box_key is None:
        dataset = dataset.map(lambda ex: (ex[image_key], ex[label_key]))
    else:
        dataset = dataset.map(lambda ex: (_crop_to_box(ex[image_key], ex[box_key]), ex[label_key]))
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
    return np.concatenate(images), np.concatenate(labels), names, info
