"""The training, validation and test episodes of a `RunConfig`.

Example:

>>> from keras_meta.experiments import RunConfig
>>> source = EpisodeSource(RunConfig.from_protocol("maml-sinusoid"))
>>> x, y = next(iter(source.train(start=0)))
>>> tuple(y.shape)
(25, 10, 1)
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from keras_meta import data
from keras_meta.experiments import protocols
from keras_meta.experiments.config import RunConfig
from keras_meta.experiments.run_dir import RunError

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


def _require_data_dir(config: RunConfig) -> str:
    if not config.data_dir:
        raise RunError(
            f"the {config.dataset} dataset needs --data-dir (the folder "
            + (
                "holding images_background.zip and images_evaluation.zip"
                if config.dataset == "omniglot"
                else "with one sub-folder of images per class"
            )
            + ")"
        )
    if not os.path.exists(config.data_dir):
        raise RunError(f"the data directory {config.data_dir!r} does not exist")
    return config.data_dir


def _split(config, x, y, sizes) -> dict:
    split = data.split_classes(y, sizes, seed=config.split_seed)
    return {name: split.select(name, x, y) for name in split}


def _load(config: RunConfig, data_dir: str) -> dict:
    size = config.image_size
    if config.dataset == "omniglot" and config.split == "mixed":
        x, y = data.omniglot(data_dir, split="all", image_size=size)
        sizes = config.split_sizes or protocols.MAML_SPLIT_SIZES
        return _split(config, x, y, dict(zip(("train", "validation", "test"), sizes)))
    if config.dataset == "omniglot":
        x, y = data.omniglot(data_dir, split="background", image_size=size)
        num_val = int(
            config.split_sizes[1] if config.split_sizes else protocols.OFFICIAL_VALIDATION_CLASSES
        )
        parts = _split(
            config, x, y, {"train": len(np.unique(y)) - num_val, "validation": num_val}
        )
        parts["test"] = data.omniglot(data_dir, split="evaluation", image_size=size)
        return parts
    x, y, _ = data.image_folder(
        data_dir, image_size=size, color_mode=config.color_mode, invert=config.invert
    )
    sizes = config.split_sizes or protocols.FOLDER_SPLIT_FRACTIONS
    return _split(config, x, y, dict(zip(("train", "validation", "test"), sizes)))


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
        self._parts = None if config.is_regression else load_class_splits(config)

    def _sampler(self, split, ways, shots, queries, seed, num_episodes=None):
        images, labels = self._parts[split]
        augment = "class_rotation" if self.config.augmentation == "class_rotation" else None
        try:
            shape = dict(ways=ways, shots=shots, queries=queries)
            return data.EpisodeSampler(
                images, labels, **shape, seed=seed, num_episodes=num_episodes, augment=augment
            )
        except ValueError as error:
            raise RunError(
                f"the {split} split ({len(np.unique(labels))} classes, "
                f"{len(labels)} images) cannot make {ways}-way {shots}-shot "
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
