"""N-way K-shot classification episodes from labelled arrays."""

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from keras_meta.data import _pixels, _seeds
from keras_meta.data._arrays import check_examples, check_labels, materialize
from keras_meta.data._config import attach_config, describe_callable
from keras_meta.data.augment import _check_square
from keras_meta.data.transforms import _transform_dataset
from keras_meta.validation import check_callable, check_int, check_number

AUGMENTATIONS = (None, "class_rotation")

# How many small classes an error message names before it summarises.
_MAX_NAMED = 10


class EpisodeSampler:
    """Samples N-way K-shot classification episodes from labelled arrays.

    Each episode draws `ways` distinct classes, and `shots + queries` distinct examples
    of each class, all without replacement. The classes get the labels `0..ways-1` in a
    random order; support label `k` and query label `k` are the same class. Support and
    query examples are each in a shuffled order.

    Sampling runs inside the `tf.data` graph on one tensor holding all examples: episode
    `i` is a pure function of `(seed, i)` (stateless random ops), so seeded samplers
    give identical episodes on every run and machine, whatever the parallelism.

    Args:
        x: `[n, ...]` examples (numpy array or tensor); or a `tf.data.Dataset` of `(x,
            y)` examples (batched or not), which is read into memory, with `y=None`.
        y: `[n]` non-negative integer class ids (need not be contiguous).
        ways: classes per episode.
        shots: support examples per class.
        queries: query examples per class.
        seed: integer seed. `None` gives a different stream on every iteration (or, when
            `num_episodes` is given, one fixed random set whose seed `get_config()`
            reports).
        num_episodes: `None` (default) for an infinite dataset; an integer for a finite
            fixed set (e.g. 600 evaluation episodes).
        drop_small_classes: classes with fewer than `shots + queries` examples raise an
            error unless this is True, in which case they are left out (and listed in
            the config).
        augment: `None`, or `"class_rotation"`: rotate all images of each class of an
            episode by one random multiple of 90 degrees (MAML's Omniglot protocol;
            square images only; keeps the four rotations of `x` in memory). For
            rotations as new classes (ProtoNets/Reptile) use `rotate_classes()`.
        transform: optional callable applied to the images of each episode, e.g. a Keras
            preprocessing layer. It gets the `[S + Q, ...]` float32 tensor of the
            episode's support images followed by its query images, and returns a tensor
            with the same leading dimension. It runs after `augment`, inside `tf.data`.
            A callable with a `seed` argument (the noise transforms of
            `keras_meta.data.transforms`) is called as `transform(images, seed=key)`
            with a key derived from the episode's `(seed, i)`, so that its noise is
            seeded too; other callables (e.g. Keras layers) draw their own randomness.
        scale: `None` (default), or a divisor applied to the examples per episode
            after the cast to float32: `scale=255` turns uint8 pixels (e.g. from a
            loader's `dtype="uint8"`) into `[0, 1]`, bit for bit the loader's float32
            values.

    Images are kept in memory as 8 bits per value: uint8 examples as they are, and
    float32 examples too whenever they are exactly 8-bit levels (`u / 255`, `1 - u /
    255` or `u * (1 / 255)`, as the loaders return them); episodes are decoded to
    float32 on the fly with the same float32 ops, bit-identical to sampling the
    float32 array.

    Example:

    >>> import numpy as np, keras_meta as km
    >>> x = np.random.rand(100, 8, 8, 1).astype("float32")
    >>> y = np.repeat(np.arange(10), 10)
    >>> sampler = km.data.EpisodeSampler(x, y, ways=5, shots=1, queries=2, seed=0)
    >>> ex, qy = next(iter(sampler.dataset()))
    >>> tuple(ex["support_x"].shape), tuple(ex["query_x"].shape), tuple(qy.shape)
    ((5, 8, 8, 1), (10, 8, 8, 1), (10,))
    >>> sampler.get_config()["ways"]
    5
    """

    def __init__(
        self,
        x,
        y=None,
        ways: int = 5,
        shots: int = 1,
        queries: int = 15,
        seed: int | None = None,
        num_episodes: int | None = None,
        drop_small_classes: bool = False,
        augment: str | None = None,
        transform: Callable[[tf.Tensor], tf.Tensor] | None = None,
        scale: float | None = None,
    ):
        self._init_protocol(
            ways, shots, queries, seed, num_episodes, drop_small_classes, augment, transform
        )
        self.scale = None if scale is None else check_number("scale", scale, exclusive_minimum=0)

        x, y = materialize(x, y)
        x = check_examples(x)
        labels = check_labels(y, num_examples=len(x))
        if augment == "class_rotation":
            _check_square(x.shape, 'augment="class_rotation"')
        self._prepare_classes(labels)
        self.input_shape = tuple(x.shape[1:])
        self.num_examples = len(x)
        x, self._decode = _pixels.compact(x, self.scale)
        # One tensor for all examples: an episode is a handful of gathers from it.
        if augment == "class_rotation":
            # All four rotations stay in memory (4x x), so that rotating is part of the
            # one gather per episode: per-image rotation ops cost ~5x the sampling.
            x = np.concatenate([np.rot90(x, k=k, axes=(1, 2)) for k in range(4)])
        self._examples = tf.convert_to_tensor(x)

    def _init_protocol(
        self, ways, shots, queries, seed, num_episodes, drop_small_classes, augment, transform
    ):
        """Checks and sets the sampling arguments shared with the streaming sampler."""
        self.ways = check_int("ways", ways)
        self.shots = check_int("shots", shots)
        self.queries = check_int("queries", queries)
        self.num_episodes = _seeds.check_num_episodes(num_episodes)
        self.seed = _seeds.check_seed(seed)
        if self.seed is None and self.num_episodes is not None:
            # A finite set must be the same set on every iteration (e.g. evaluation episodes).
            self.seed = _seeds.fresh_seed()
        if augment not in AUGMENTATIONS:
            raise ValueError(
                f"`augment` must be one of {AUGMENTATIONS}; received "
                f"augment={augment!r}. "
                "For rotations as new classes, apply km.data.rotate_classes() to the "
                "arrays."
            )
        self.augment = augment
        self.transform = check_callable("transform", transform, allow_none=True)
        self.drop_small_classes = bool(drop_small_classes)

    def _prepare_classes(self, labels):
        per_episode = self.shots + self.queries
        classes, counts = np.unique(labels, return_counts=True)
        small = counts < per_episode
        if small.any():
            if not self.drop_small_classes:
                named = ", ".join(
                    f"class {c} has {n}"
                    for c, n in zip(
                        classes[small][:_MAX_NAMED],
                        counts[small][:_MAX_NAMED],
                        strict=True,
                    )
                )
                more = small.sum() - _MAX_NAMED
                raise ValueError(
                    f"Each class needs at least shots + queries = {self.shots} + "
                    f"{self.queries} "
                    f"= {per_episode} examples, but {small.sum()} classes have fewer: "
                    f"{named}"
                    + (f" (and {more} more)" if more > 0 else "")
                    + ". Pass drop_small_classes=True to leave them out, or lower "
                    "shots/queries."
                )
        self.dropped_classes = classes[small].tolist()
        keep = ~small
        self.class_ids = classes[keep]
        if len(self.class_ids) < self.ways:
            dropped = (
                f" ({len(self.dropped_classes)} classes with fewer than {per_episode} "
                "examples "
                "were dropped)"
                if self.dropped_classes
                else ""
            )
            raise ValueError(
                f"ways={self.ways} needs at least {self.ways} classes, but the data "
                "has "
                f"{len(self.class_ids)} usable classes{dropped}."
            )
        # Examples sorted by class: class j owns order[offsets[j]:offsets[j] + counts[j]].
        kept_labels = np.isin(labels, self.class_ids)
        order = np.nonzero(kept_labels)[0]
        order = order[np.argsort(labels[order], kind="stable")]
        kept_counts = counts[keep]
        offsets = np.concatenate([[0], np.cumsum(kept_counts)[:-1]])
        # int32 indices are faster; rows go up to 4n with class_rotation.
        index_dtype = tf.int32 if 4 * len(labels) < 2**31 else tf.int64
        self._order = tf.constant(order, index_dtype)
        self._counts = tf.constant(kept_counts, tf.int32)
        self._offsets = tf.constant(offsets, self._order.dtype)
        self._max_count = int(kept_counts.max())

    @property
    def num_classes(self) -> int:
        """Number of classes episodes are drawn from (after `drop_small_classes`)."""
        return len(self.class_ids)

    def get_config(self) -> dict[str, Any]:
        """The sampling protocol, as a JSON-friendly dict."""
        return {
            "family": "classification",
            "ways": self.ways,
            "shots": self.shots,
            "queries": self.queries,
            "seed": self.seed,
            "num_episodes": self.num_episodes,
            "augment": self.augment,
            "transform": describe_callable(self.transform),
            "drop_small_classes": self.drop_small_classes,
            "dropped_classes": list(self.dropped_classes),
            "num_classes": self.num_classes,
            "num_examples": self.num_examples,
            "input_shape": list(self.input_shape),
            "scale": self.scale,
        }

    def sample(self, key: tf.Tensor):
        """One episode from an int64 `[2]` stateless key (graph-compatible).

        Returns:
            `(x, query_y)` with `x = {"support_x", "support_y", "query_x"}`, plus
            nothing else; `transform` is not applied here (see `dataset()`).
        """
        support_idx, support_y, query_idx, query_y = self._select(key)
        support_x = self._decode(tf.gather(self._examples, support_idx))
        query_x = self._decode(tf.gather(self._examples, query_idx))
        return {
            "support_x": support_x,
            "support_y": support_y,
            "query_x": query_x,
        }, query_y

    def _select(self, key):
        """`(support_idx, support_y, query_idx, query_y)` of the episode of `key`.

        Indices are rows of the examples (with `class_rotation`, of the four rotated
        copies, rotation `k` of example `i` being row `k * num_examples + i`).
        """
        ways, shots, queries = self.ways, self.shots, self.queries
        per_class = shots + queries
        keys = _seeds.split_key(key, 5)

        # Top-k of i.i.d. uniforms = `ways` distinct classes in a uniformly random
        # order; that order is the label remapping.
        class_scores = tf.random.stateless_uniform([self.num_classes], keys[0])
        _, chosen = tf.math.top_k(class_scores, k=ways, sorted=True)
        counts = tf.gather(self._counts, chosen)
        offsets = tf.gather(self._offsets, chosen)

        # Distinct examples within each chosen class: top-k of uniforms, padding masked out.
        scores = tf.random.stateless_uniform([ways, self._max_count], keys[1])
        valid = tf.range(self._max_count)[tf.newaxis, :] < counts[:, tf.newaxis]
        scores = tf.where(valid, scores, -1.0)
        _, positions = tf.math.top_k(scores, k=per_class, sorted=False)
        positions = tf.cast(positions, offsets.dtype) + offsets[:, tf.newaxis]
        indices = tf.gather(self._order, positions)  # [ways, shots + queries]

        support_idx = tf.reshape(indices[:, :shots], [-1])
        query_idx = tf.reshape(indices[:, shots:], [-1])
        support_y = tf.constant(np.repeat(np.arange(ways, dtype=np.int32), shots))
        query_y = tf.constant(np.repeat(np.arange(ways, dtype=np.int32), queries))
        support_perm = tf.argsort(tf.random.stateless_uniform([ways * shots], keys[2]))
        query_perm = tf.argsort(tf.random.stateless_uniform([ways * queries], keys[3]))
        support_idx = tf.gather(support_idx, support_perm)
        support_y = tf.gather(support_y, support_perm)
        query_idx = tf.gather(query_idx, query_perm)
        query_y = tf.gather(query_y, query_perm)

        if self.augment == "class_rotation":
            # Rotation k of example i is row k * num_examples + i of the examples.
            turns = tf.random.stateless_uniform([ways], keys[4], minval=0, maxval=4, dtype=tf.int32)
            offsets = tf.cast(turns * self.num_examples, support_idx.dtype)
            support_idx += tf.gather(offsets, support_y)
            query_idx += tf.gather(offsets, query_y)
        return support_idx, support_y, query_idx, query_y

    def dataset(self) -> tf.data.Dataset:
        """The `tf.data.Dataset` of single episodes, with an `episode_config` dict."""
        keys, _ = _seeds.episode_keys(self.seed, self.num_episodes)
        dataset = keys.map(self.sample, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if self.transform is not None:
            dataset = _transform_dataset(dataset, self.transform, self.seed)
        return attach_config(dataset, self.get_config())


def episodes(
    x,
    y=None,
    ways: int = 5,
    shots: int = 1,
    queries: int = 15,
    seed: int | None = None,
    num_episodes: int | None = None,
    drop_small_classes: bool = False,
    augment: str | None = None,
    transform: Callable[[tf.Tensor], tf.Tensor] | None = None,
    scale: float | None = None,
) -> tf.data.Dataset:
    """A `tf.data.Dataset` of N-way K-shot episodes drawn from labelled arrays.

    Each element is `(x, query_y)` with
    `x = {"support_x": [ways*shots, ...] float32, "support_y": [ways*shots] int32,
    "query_x": [ways*queries, ...] float32}` and `query_y` `[ways*queries]` int32,
        labels in
    `0..ways-1`. Batch it with `.batch(meta_batch_size)`. The dataset's `episode_config`
    attribute records how it was made (see `EpisodeSampler`, which takes the same
    arguments).

    Example:

    >>> import numpy as np, keras_meta as km
    >>> x = np.random.rand(200, 28, 28, 1).astype("float32")
    >>> y = np.repeat(np.arange(10), 20)
    >>> train = km.data.episodes(x, y, ways=5, shots=1, queries=15, seed=0).batch(32)
    >>> test = km.data.episodes(
    ...     x, y, ways=5, shots=1, queries=15, seed=1, num_episodes=600)
    >>> ex, qy = next(iter(train))
    >>> tuple(ex["support_x"].shape), tuple(qy.shape)
    ((32, 5, 28, 28, 1), (32, 75))
    """
    return EpisodeSampler(
        x,
        y,
        ways=ways,
        shots=shots,
        queries=queries,
        seed=seed,
        num_episodes=num_episodes,
        drop_small_classes=drop_small_classes,
        augment=augment,
        transform=transform,
        scale=scale,
    ).dataset()
