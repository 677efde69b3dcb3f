"""Episodes streamed from image files, for datasets that do not fit in memory.

The streaming sampler draws each episode's classes and files with exactly the rule of
`EpisodeSampler` (the same stateless keys, so episode `i` is a function of `(seed, i)`),
then reads and decodes only that episode's files inside `tf.data`, in parallel, with
prefetching. Only the file names stay in memory.
"""

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from keras_meta.data import _images, _seeds
from keras_meta.data._config import attach_config
from keras_meta.data.augment import _check_square, rotate_images
from keras_meta.data.episodes import EpisodeSampler
from keras_meta.data.folders import _list_class_files
from keras_meta.data.transforms import _transform_dataset
from keras_meta.validation import check_choice

# The formats `tf.io.decode_image` reads.
STREAM_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
_METHODS = ("bilinear", "lanczos3", "lanczos5", "bicubic", "area", "gaussian", "mitchellcubic")


def _class_files(source, extensions):
    """`(class_names, files_per_class)` of a folder or a `{class: [files]}` mapping."""
    if isinstance(source, Mapping):
        names, files = [], []
        for name, paths in source.items():
            if isinstance(paths, (str, os.PathLike)):
                raise TypeError(
                    f"`source` maps each class to a list of image files; received the single "
                    f"path {paths!r} for class {name!r}."
                )
            paths = [os.fspath(p) for p in paths]
            if paths:
                names.append(str(name))
                files.append(paths)
        if not files:
            raise ValueError("`source` maps no class to any image file.")
        return names, files
    if isinstance(source, (str, os.PathLike)):
        return _list_class_files(os.fspath(source), extensions, stacklevel=4)
    raise TypeError(
        "`source` must be a folder path (<path>/<class_name>/<image>) or a mapping of "
        f"class names to lists of image files; received {type(source).__name__}."
    )


class StreamingEpisodeSampler(EpisodeSampler):
    """N-way K-shot episodes read from image files on the fly (see `stream_episodes`).

    Classes and files are chosen exactly as `EpisodeSampler` chooses them from the
    images of `image_folder(source)` (class `c` = the `c`-th sorted class folder, its
    examples in sorted file order): with the same seed, episode `i` is made of the same
    files in the same order, with the same labels. Images are decoded by
    `tf.io.decode_image` as 8-bit pixels and divided by 255 (then `1 - x` with
    `invert`), so where no resize happens they equal `image_folder`'s float32 values
    bit for bit.

    Args:
        source: a folder with one sub-folder of images per class, or a mapping of class
            names to lists of image files (classes in the mapping's order).
        ways, shots, queries, seed, num_episodes, drop_small_classes, augment,
            transform: as for `EpisodeSampler`.
        image_size: an int or `(height, width)`: images of another size are resized
            with `tf.image.resize(method=interpolation, antialias=True)`; `None` takes
            the source's `image_size` (a `ClassFiles` from `mini_imagenet` or
            `tiered_imagenet` has one), else keeps the stored size, which must then be
            that of the first image for all.
        color_mode: `"rgb"`, `"grayscale"` or `"rgba"`.
        interpolation: `tf.image.resize` method, e.g. `"bilinear"` or `"area"`.
        invert: return `1 - image`.
        extensions: file name endings (case-insensitive) that count as images in a
            folder.

    Example:

    >>> import numpy as np, tensorflow as tf, keras_meta as km
    >>> for c in range(3):
    ...     for i in range(4):
    ...         png = tf.io.encode_png(np.full((8, 8, 3), 10 * c + i, np.uint8))
    ...         tf.io.write_file(f"images/class{c}/{i}.png", png)
    >>> sampler = km.data.StreamingEpisodeSampler("images", ways=3, shots=1, queries=2, seed=0)
    >>> ex, qy = next(iter(sampler.dataset()))
    >>> tuple(ex["support_x"].shape), ex["support_x"].dtype.name, tuple(qy.shape)
    ((3, 8, 8, 3), 'float32', (6,))
    """

    def __init__(
        self,
        source: str | os.PathLike | Mapping[str, Sequence[str | os.PathLike]],
        ways: int = 5,
        shots: int = 1,
        queries: int = 15,
        image_size: int | tuple[int, int] | None = None,
        color_mode: str = "rgb",
        seed: int | None = None,
        num_episodes: int | None = None,
        drop_small_classes: bool = False,
        augment: str | None = None,
        transform: Callable[[tf.Tensor], tf.Tensor] | None = None,
        interpolation: str = "bilinear",
        invert: bool = False,
        extensions: Sequence[str] = STREAM_EXTENSIONS,
    ):
        self._init_protocol(
            ways, shots, queries, seed, num_episodes, drop_small_classes, augment, transform
        )
        self.scale = None
        self.color_mode = check_choice("color_mode", color_mode, tuple(_CHANNELS))
        self.interpolation = check_choice("interpolation", interpolation, _METHODS)
        self.invert = bool(invert)
        if image_size is None:
            # A loader's source (e.g. mini_imagenet's ClassFiles) knows its benchmark size.
            image_size = getattr(source, "image_size", None)
        self.image_size = _images.check_image_size(image_size)
        self.class_names, class_files = _class_files(source, extensions)
        files = [f for paths in class_files for f in paths]
        labels = np.repeat(np.arange(len(class_files)), [len(p) for p in class_files])
        self._prepare_classes(labels)
        self.num_examples = len(files)
        self._files = tf.constant(files)
        channels = _CHANNELS[self.color_mode]
        if self.image_size is None:
            # The episode spec needs a static shape: the first image sets it.
            first = tf.io.decode_image(
                tf.io.read_file(files[0]), channels=channels, expand_animations=False
            )
            self.input_shape = tuple(first.shape[:2]) + (channels,)
        else:
            self.input_shape = self.image_size + (channels,)
        if augment == "class_rotation":
            _check_square((None,) + self.input_shape, 'augment="class_rotation"')

    def get_config(self) -> dict[str, Any]:
        """The sampling protocol, as a JSON-friendly dict."""
        config = super().get_config()
        config.update(
            streaming=True,
            image_size=None if self.image_size is None else list(self.image_size),
            color_mode=self.color_mode,
            interpolation=self.interpolation,
            invert=self.invert,
        )
        return config

    def _load(self, path):
        """One float32 image in `[0, 1]` from its file (graph-compatible)."""
        height, width, channels = self.input_shape
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=channels, expand_animations=False
        )
        stored = tf.shape(image)[:2]
        if self.image_size is None:
            same = tf.reduce_all(stored == [height, width])
            check = tf.debugging.Assert(
                same,
                [
                    f"All images must have the size of the first, {height}x{width}, or "
                    "pass image_size= to resize them; this image has another size:",
                    path,
                    stored,
                ],
            )
            # Before the shape check below, whose own error would not say how to fix it.
            with tf.control_dependencies([check]):
                image = tf.cast(image, tf.float32)
        else:
            # Resizing to the stored size is skipped, so that such files decode exactly.
            image = tf.cond(
                tf.reduce_all(stored == [height, width]),
                lambda: tf.cast(image, tf.float32),
                lambda: tf.clip_by_value(
                    tf.image.resize(
                        image, (height, width), method=self.interpolation, antialias=True
                    ),
                    0.0,
                    255.0,
                ),
            )
        image = tf.ensure_shape(image / 255.0, self.input_shape)
        return 1.0 - image if self.invert else image

    def _episode_files(self, key):
        """`(paths, turns, labels)` of the `S + Q` images of an episode, support first."""
        support_idx, support_y, query_idx, query_y = self._select(key)
        rows = tf.concat([support_idx, query_idx], axis=0)
        # With class_rotation, row k * num_examples + i is example i turned k times.
        num = tf.cast(self.num_examples, rows.dtype)
        paths = tf.gather(self._files, rows % num)
        turns = tf.cast(rows // num, tf.int32)
        return paths, turns, tf.concat([support_y, query_y], axis=0)

    def _assemble(self, images, turns, labels):
        if self.augment == "class_rotation":
            images = rotate_images(images, turns)
        num_support = self.ways * self.shots
        return {
            "support_x": images[:num_support],
            "support_y": labels[:num_support],
            "query_x": images[num_support:],
        }, labels[num_support:]

    def sample(self, key: tf.Tensor):
        """One episode from an int64 `[2]` stateless key, its files read one by one."""
        paths, turns, labels = self._episode_files(key)
        images = tf.map_fn(
            self._load, paths, fn_output_signature=tf.TensorSpec(self.input_shape, tf.float32)
        )
        return self._assemble(images, turns, labels)

    def dataset(self) -> tf.data.Dataset:
        """The `tf.data.Dataset` of single episodes, with an `episode_config` dict."""
        per_episode = self.ways * (self.shots + self.queries)
        keys, _ = _seeds.episode_keys(self.seed, self.num_episodes)
        # One stream of files, decoded in parallel (in order), regrouped into episodes.
        files = keys.map(self._episode_files, num_parallel_calls=tf.data.AUTOTUNE)
        files = files.flat_map(lambda p, t, y: tf.data.Dataset.from_tensor_slices((p, t, y)))
        images = files.map(
            lambda p, t, y: (self._load(p), t, y),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        dataset = images.batch(per_episode, drop_remainder=True).map(
            self._assemble, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        if self.transform is not None:
            dataset = _transform_dataset(dataset, self.transform, self.seed)
        return attach_config(dataset.prefetch(tf.data.AUTOTUNE), self.get_config())


def stream_episodes(
    source: str | os.PathLike | Mapping[str, Sequence[str | os.PathLike]],
    ways: int = 5,
    shots: int = 1,
    queries: int = 15,
    image_size: int | tuple[int, int] | None = None,
    color_mode: str = "rgb",
    seed: int | None = None,
    num_episodes: int | None = None,
    drop_small_classes: bool = False,
    augment: str | None = None,
    transform: Callable[[tf.Tensor], tf.Tensor] | None = None,
    interpolation: str = "bilinear",
    invert: bool = False,
) -> tf.data.Dataset:
    """Episodes read from image files on the fly: `episodes()` for data too big for memory.

    Same elements as `episodes()` (`support_x`, `support_y`, `query_x` and `query_y`,
    float32 images, int32 labels `0..ways-1`), same seeding guarantees; only the file
    names are held in memory. See `StreamingEpisodeSampler` for the arguments.

    Example:

    >>> import numpy as np, tensorflow as tf, keras_meta as km
    >>> for c in range(6):
    ...     for i in range(3):
    ...         jpeg = tf.io.encode_jpeg(np.full((100, 90, 3), 40 * c, np.uint8))
    ...         tf.io.write_file(f"train/n{c:03d}/{i}.jpg", jpeg)
    >>> train = km.data.stream_episodes("train", ways=5, shots=1, queries=2,
    ...                                 image_size=84, seed=0).batch(4)
    >>> ex, qy = next(iter(train))
    >>> tuple(ex["support_x"].shape), tuple(qy.shape)
    ((4, 5, 84, 84, 3), (4, 10))
    """
    return StreamingEpisodeSampler(
        source,
        ways=ways,
        shots=shots,
        queries=queries,
        image_size=image_size,
        color_mode=color_mode,
        seed=seed,
        num_episodes=num_episodes,
        drop_small_classes=drop_small_classes,
        augment=augment,
        transform=transform,
        interpolation=interpolation,
        invert=invert,
    ).dataset()
