"""The training, validation and test episodes of a `RunConfig`.

Each split is loaded when first asked for: the images of Omniglot and
folders (all splits at once, split here), the arrays of a TFDS benchmark
(`cifar_fs`, `fc100`, `cub`, as uint8), or, for `mini_imagenet` and
`tiered_imagenet`, the per-class file lists that a
`keras_meta.data.StreamingEpisodeSampler` reads episode by episode. Images are
loaded at the configuration's `image_size` and `color_mode`, so that a run's
learner can be evaluated on another dataset (`runs.evaluate(..., dataset=)`).

Example:

>>> from keras_meta.experiments import RunConfig
>>> source = EpisodeSource(RunConfig.from_protocol("maml-sinusoid"))
>>> x, y = next(iter(source.train(start=0)))
>>> tuple(y.shape)
(25, 10, 1)
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from keras_meta import data
from keras_meta.experiments import datasets, protocols
from keras_meta.experiments.config import RunConfig
from keras_meta.experiments.run_dir import RunError
from keras_meta.validation import check_choice

# Offsets of the validation and test episode seeds from the run's seed, so
# that the three streams never share episodes.
SEED_OFFSETS = {"validation": 1, "test": 2}


def eval_seed(config: RunConfig, split: str, seed: int | None = None) -> int:
    """The seed of the fixed episodes of `split` (`seed` when given).

    Example:

    >>> eval_seed(RunConfig(seed=10), "test")
    12
    """
    return config.seed + SEED_OFFSETS[split] if seed is None else seed


def _require_data_dir(config: RunConfig) -> str | None:
    spec = datasets.SPECS[config.dataset]
    if not config.data_dir:
        if spec.data_dir == "required":
            raise RunError(f"the {config.dataset} dataset needs --data-dir ({spec.data_dir_help})")
        return None
    if not os.path.exists(config.data_dir):
        raise RunError(f"the data directory {config.data_dir!r} does not exist")
    return config.data_dir


def _split(config, x, y, sizes) -> dict:
    split = data.split_classes(y, sizes, seed=config.split_seed)
    return {name: split.select(name, x, y) for name in split}


def _channels(images: np.ndarray, color_mode: str) -> np.ndarray:
    """`images` with the channels of `color_mode` (e.g. Omniglot for an RGB learner)."""
    have, want = images.shape[-1], 1 if color_mode == "grayscale" else 3
    if have == want:
        return images
    if want == 3:
        return np.repeat(images, 3, axis=-1)
    gray = tf.image.rgb_to_grayscale(images).numpy()
    return gray.astype(images.dtype)


def _load(config: RunConfig, data_dir: str) -> dict:
    size = config.image_size
    if config.dataset == "omniglot":
        parts = _load_omniglot(config, data_dir)
        return {k: (_channels(x, config.color_mode), y) for k, (x, y) in parts.items()}
    x, y, _ = data.image_folder(
        data_dir, image_size=size, color_mode=config.color_mode, invert=config.invert
    )
    sizes = config.split_sizes or protocols.FOLDER_SPLIT_FRACTIONS
    return _split(config, x, y, dict(zip(("train", "validation", "test"), sizes)))


def _load_omniglot(config: RunConfig, data_dir: str) -> dict:
    size = config.image_size
    if config.split == "mixed":
        x, y = data.omniglot(data_dir, split="all", image_size=size)
        sizes = config.split_sizes or protocols.MAML_SPLIT_SIZES
        return _split(config, x, y, dict(zip(("train", "validation", "test"), sizes)))
    x, y = data.omniglot(data_dir, split="background", image_size=size)
    # A run without validation (val_episodes=0) trains on every background
    # character unless split_sizes says otherwise.
    default_val = protocols.OFFICIAL_VALIDATION_CLASSES if config.val_episodes else 0
    num_val = int(config.split_sizes[1] if config.split_sizes else default_val)
    parts = _split(config, x, y, {"train": len(np.unique(y)) - num_val, "validation": num_val})
    parts["test"] = data.omniglot(data_dir, split="evaluation", image_size=size)
    return parts


def _load_benchmark_split(config: RunConfig, data_dir: str | None, split: str):
    """One split of a benchmark: uint8 `(images, labels)`, or a streaming source."""
    spec = datasets.SPECS[config.dataset]
    # Looked up by name when needed: a loader missing from keras_meta.data is
    # an error of the run that asks for it, not of importing this module.
    loader = getattr(data, config.dataset, None)
    if loader is None:
        raise RunError(
            f"this version of keras_meta has no keras_meta.data.{config.dataset} loader"
        )
    if spec.streams:
        return loader(data_dir, split, image_size=config.image_size)
    # The stored size is kept as it is, bit for bit.
    size = None if config.image_size == spec.native_size else config.image_size
    x, y = loader(split, data_dir=data_dir, image_size=size, dtype="uint8")
    return _channels(x, config.color_mode), y


def load_split(config: RunConfig, split: str):
    """One split of a classification dataset: `(images, labels)` or a streaming source.

    `(images, labels)` arrays (float32 in `[0, 1]`, or uint8 for the TFDS
    benchmarks), or, for `mini_imagenet` and `tiered_imagenet`, what
    `keras_meta.data.StreamingEpisodeSampler` takes.

    Example:

    >>> config = RunConfig(dataset="cifar_fs")                      # doctest: +SKIP
    >>> x, y = load_split(config, "test")                           # doctest: +SKIP
    """
    spec = datasets.SPECS[config.dataset]
    if spec.kind == "memory":
        return load_class_splits(config)[split]
    data_dir = _require_data_dir(config)
    try:
        part = _load_benchmark_split(config, data_dir, split)
    except (OSError, ValueError, TypeError) as error:
        raise RunError(f"could not load the {config.dataset} data: {error}") from None
    if config.augmentation == "rotations_as_classes":
        part = data.rotate_classes(*part)
    return part


def load_class_splits(config: RunConfig) -> dict:
    """Loads a classification dataset as `{split: (images, labels)}`.

    Splits are `"train"`, `"validation"` and `"test"`, disjoint in classes;
    with `augmentation="rotations_as_classes"` each split's classes are
    multiplied by four rotations within the split.

    Example:

    >>> config = RunConfig(dataset="folder", data_dir="images",
    ...                    split="random")                      # doctest: +SKIP
    >>> sorted(load_class_splits(config))                       # doctest: +SKIP
    ['test', 'train', 'validation']
    """
    if datasets.SPECS[config.dataset].kind != "memory":
        return {name: load_split(config, name) for name in ("train", "validation", "test")}
    data_dir = _require_data_dir(config)
    try:
        parts = _load(config, data_dir)
    except (OSError, ValueError, TypeError) as error:
        raise RunError(f"could not load the {config.dataset} data: {error}") from None
    if config.augmentation == "rotations_as_classes":
        parts = {
            name: data.rotate_classes(xs, ys) if len(xs) else (xs, ys)
            for name, (xs, ys) in parts.items()
        }
    return parts


def target_config(config: RunConfig, dataset: str | None = None, data_dir=None) -> RunConfig:
    """The configuration whose test episodes evaluate a run on `dataset`.

    The run's own (with `data_dir`, if the data moved) when `dataset` is
    `None` or the run's; otherwise `dataset`'s benchmark or default split,
    with the run's episode shape, image size and colour mode (the learner's
    input), and no augmentation.

    Example:

    >>> run = RunConfig(dataset="folder", split="random", ways=2)
    >>> target = target_config(run, "cifar_fs")
    >>> target.dataset, target.split, target.input_shape, target.eval_episode_shape
    ('cifar_fs', 'benchmark', (28, 28, 1), (2, 1, 15))
    """
    if dataset is None or dataset == config.dataset:
        if data_dir is None:
            return config
        return config.override(data_dir=os.fspath(data_dir))
    try:
        check_choice("dataset", dataset, protocols.DATASETS)
    except ValueError as error:
        raise RunError(str(error)) from None
    if config.is_regression or dataset == "sinusoid":
        raise RunError(
            f"a run trained on {config.dataset} cannot be evaluated on {dataset}: one is "
            "regression, the other image classification"
        )
    try:
        return config.override(
            dataset=dataset,
            data_dir=None if data_dir is None else os.fspath(data_dir),
            split=None,
            split_sizes=None,
            augmentation=None,
            invert=False,
        )
    except (TypeError, ValueError) as error:
        raise RunError(str(error)) from None


class EpisodeSource:
    """The training, validation and test episodes of a configuration.

    Example:

    >>> source = EpisodeSource(RunConfig.from_protocol("maml-sinusoid"))
    >>> x, _ = next(iter(source.fixed("test", 2)))
    >>> tuple(x["query_x"].shape)
    (100, 1)
    """

    def __init__(self, config: RunConfig):
        self.config = config
        self._parts = {}
        if not config.is_regression:
            # Checked now, so that a missing --data-dir is the first error.
            _require_data_dir(config)

    def _part(self, split: str):
        if split not in self._parts:
            if datasets.SPECS[self.config.dataset].kind == "memory":
                self._parts.update(load_class_splits(self.config))
            else:
                self._parts[split] = load_split(self.config, split)
        return self._parts[split]

    def _sampler(self, split, ways, shots, queries, seed, num_episodes=None):
        c = self.config
        part = self._part(split)
        shape = dict(ways=ways, shots=shots, queries=queries, seed=seed, num_episodes=num_episodes)
        shape["augment"] = "class_rotation" if c.augmentation == "class_rotation" else None
        try:
            if isinstance(part, tuple):
                images, labels = part
                scale = 255 if images.dtype == np.uint8 else None
                what = f"{len(np.unique(labels))} classes, {len(labels)} images"
                return data.EpisodeSampler(images, labels, **shape, scale=scale)
            what = f"{len(part)} classes" if isinstance(part, Mapping) else "streamed"
            return data.StreamingEpisodeSampler(
                part, **shape, image_size=c.image_size, color_mode=c.color_mode, invert=c.invert
            )
        except ValueError as error:
            raise RunError(
                f"the {split} split ({what}) cannot make {ways}-way {shots}-shot "
                f"episodes with {queries} queries per class: {error}"
            ) from None

    def train_episodes(self, start: int = 0) -> tf.data.Dataset:
        """Single (unbatched) training episodes, from meta-iteration `start` on.

        Episode `i` of the stream is the same whatever `start` is, so a
        resumed run trains on the episodes an uninterrupted one would; batch
        it by `meta_batch_size` (or give it to
        `keras_meta.distribute.distribute_episodes`).
        """
        c = self.config
        ways, shots, queries = c.train_episode_shape
        first = start * c.meta_batch_size
        if c.is_regression:
            # The sinusoid stream is sequential: the episodes already trained
            # on are sampled and dropped (seconds per thousand iterations).
            episodes = data.sinusoid(shots=shots, queries=queries, seed=c.seed)
            return episodes.skip(first) if first else episodes
        sampler = self._sampler("train", ways, shots, queries, c.seed)
        seed = tf.constant(c.seed, tf.int64)
        # Episode i of the stream is a pure function of (seed, i), so
        # starting the counter at the episodes already seen resumes the
        # exact stream without sampling the skipped ones.
        return tf.data.Dataset.counter(first, dtype=tf.int64).map(
            lambda i: sampler.sample(tf.stack([seed, i])),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    def train(self, start: int = 0) -> tf.data.Dataset:
        """Batches of training episodes, from meta-iteration `start` on."""
        episodes = self.train_episodes(start)
        batches = episodes.batch(self.config.meta_batch_size, drop_remainder=True)
        return batches.prefetch(tf.data.AUTOTUNE)

    def fixed(self, split: str, num_episodes: int, seed: int | None = None) -> tf.data.Dataset:
        """A fixed set of single validation or test episodes."""
        ways, shots, queries = self.config.eval_episode_shape
        seed = eval_seed(self.config, split, seed)
        if self.config.is_regression:
            return data.sinusoid(shots=shots, queries=queries, seed=seed, num_episodes=num_episodes)
        return self._sampler(split, ways, shots, queries, seed, num_episodes).dataset()
