"""Noise and corruption transforms for the inputs of episodes ("noisy task variants").

A transform is a callable `transform(inputs, seed=key)` that maps the `[n, ...]` float32
inputs of one episode (its support inputs followed by its query inputs) to a tensor of
the same leading dimension; `key` is an int `[2]` key for TensorFlow's stateless random
ops. There are two ways to corrupt a task family:

* the `transform=` argument of the samplers that take one (`episodes`,
  `EpisodeSampler`, `stream_episodes`, `ranking`);
* `apply(dataset, transform)` on any dataset of single episodes, e.g. `sinusoid` or
  `linear_regression`.

Either way, the key of episode `i` is derived from the episode's own key `(seed, i)`,
so a seeded dataset stays a function of `(seed, i)`: the same episode gets the same
noise on every run, and `apply(sampler_dataset, t)` equals the sampler with
`transform=t`. A callable without a `seed` argument (a plain function, a Keras
preprocessing layer) is called as `transform(inputs)` and draws its own randomness.

The ready-made transforms are `GaussianNoise`, `SaltAndPepper`, `RandomErasing` and
`Compose` (several in order).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

from keras_meta.data import _seeds
from keras_meta.data._config import attach_config, describe_callable
from keras_meta.validation import check_callable, check_int, check_number, check_range

__all__ = ["Compose", "GaussianNoise", "RandomErasing", "SaltAndPepper", "Transform", "apply"]

# Folded into an episode's key to give its transform a key of its own: the sampler's
# draws and the transform's noise never share a random stream.
_TRANSFORM_SALT = 0x6E6F6973


def _transform_key(key: tf.Tensor) -> tf.Tensor:
    """The int64 `[2]` transform key of the episode whose key is `key`."""
    key = tf.cast(key, tf.int64)
    return tf.cast(tf.random.experimental.stateless_fold_in(key, _TRANSFORM_SALT), tf.int64)


def _accepts_seed(transform: Callable) -> bool:
    """Whether `transform` takes a `seed=` argument (a stateless key)."""
    if isinstance(transform, Transform):
        return True
    try:
        parameters = inspect.signature(transform).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False
    seed = parameters.get("seed")
    return seed is not None and seed.kind in (seed.POSITIONAL_OR_KEYWORD, seed.KEYWORD_ONLY)


def _call_transform(transform: Callable, inputs: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
    """`transform(inputs)` for the episode of `key`, checked to keep the leading dimension."""
    if _accepts_seed(transform):
        outputs = transform(inputs, seed=_transform_key(key))
    else:
        outputs = transform(inputs)
    outputs = tf.convert_to_tensor(outputs)
    n = inputs.shape[0]
    if n is not None and outputs.shape.rank and outputs.shape[0] not in (None, n):
        raise ValueError(
            f"A transform must keep the leading dimension of its inputs (the {n} support "
            f"and query inputs of an episode); {describe_callable(transform)['name']} "
            f"returned a tensor of shape {outputs.shape}."
        )
    return outputs


def _transform_episode(transform: Callable, x: dict, query_y, key: tf.Tensor):
    """The episode `(x, query_y)` with `transform` applied to its support and query inputs."""
    num_support = tf.shape(x["support_x"])[0]
    inputs = tf.concat([x["support_x"], x["query_x"]], axis=0)
    outputs = _call_transform(transform, inputs, key)
    x = dict(x)
    x["support_x"] = outputs[:num_support]
    x["query_x"] = outputs[num_support:]
    return x, query_y


def _transform_dataset(dataset: tf.data.Dataset, transform: Callable, seed) -> tf.data.Dataset:
    """`dataset`'s episodes transformed, episode `i` with the key `(seed, i)`."""
    keys, _ = _seeds.episode_keys(seed, None)
    return tf.data.Dataset.zip(dataset, keys).map(
        lambda episode, key: _transform_episode(transform, *episode, key),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def apply(
    dataset: tf.data.Dataset, transform: Callable, seed: int | None = None
) -> tf.data.Dataset:
    """Corrupts the support and query inputs of every episode of a dataset.

    Works on any dataset of single (unbatched) episodes `({"support_x", "support_y",
    "query_x"}, query_y)`; apply it to a sampler's dataset before `.batch()`. The labels
    are left as they are.

    Args:
        dataset: a dataset of single episodes, e.g. `km.data.sinusoid(seed=0)`.
        transform: a callable `transform(inputs)` or `transform(inputs, seed=key)` (see
            the module docstring), e.g. `GaussianNoise(0.1)`.
        seed: the seed of the transform's keys: episode `i` gets the key derived from
            `(seed, i)`. `None` (default) takes the seed of the dataset's
            `episode_config` (so that noise and episode are both functions of `(seed,
            i)`, and the result equals the sampler's own `transform=`), or draws fresh
            noise on every iteration if the dataset has no seed.

    Returns:
        The transformed dataset, with the `episode_config` of `dataset` plus a
        `"transform"` entry.

    Example:

    >>> import keras_meta as km
    >>> clean = km.data.linear_regression(dim=4, seed=0)
    >>> noisy = km.data.transforms.apply(clean, km.data.transforms.GaussianNoise(0.5))
    >>> (x, _), (nx, _) = next(iter(clean)), next(iter(noisy))
    >>> tuple(nx["support_x"].shape), bool((nx["support_x"] != x["support_x"]).numpy().any())
    ((10, 4), True)
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            "`dataset` must be a tf.data.Dataset of episodes; received "
            f"{type(dataset).__name__}."
        )
    transform = check_callable("transform", transform)
    config = dict(getattr(dataset, "episode_config", None) or {})
    if seed is None:
        seed = config.get("seed")
    seed = _seeds.check_seed(seed)
    config["transform"] = describe_callable(transform)
    return attach_config(_transform_dataset(dataset, transform, seed), config)


class Transform:
    """Base class of the seeded transforms: `transform(inputs, seed=None)`.

    Subclasses implement `call(inputs, key)` with stateless random ops keyed on `key`
    (an int `[2]` tensor) and `get_config()`. Called without a seed, a transform draws
    a key from TensorFlow's global generator (reproducible only under
    `keras.utils.set_random_seed`).

    Example:

    >>> import tensorflow as tf
    >>> class Negate(Transform):
    ...     def call(self, inputs, key):
    ...         return -inputs
    >>> Negate()(tf.ones((1, 2)), seed=[0, 0]).numpy().tolist()
    [[-1.0, -1.0]]
    """

    def __call__(self, inputs, seed=None) -> tf.Tensor:
        inputs = tf.convert_to_tensor(inputs)
        if not inputs.dtype.is_floating:
            inputs = tf.cast(inputs, tf.float32)
        if seed is None:
            seed = tf.random.uniform([2], maxval=tf.int64.max, dtype=tf.int64)
        return self.call(inputs, tf.cast(seed, tf.int64))

    def call(self, inputs: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
        """The transformed `inputs` for the stateless key `key`."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The transform's arguments (`cls(**config)` rebuilds it)."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        """The transform of a `get_config()` dict."""
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _check_clip(clip):
    return None if clip is None else check_range("clip", clip)


def _clip(values, clip):
    if clip is None:
        return values
    return tf.clip_by_value(values, clip[0], clip[1])


@keras.saving.register_keras_serializable(package="keras_meta")
class GaussianNoise(Transform):
    """Adds i.i.d. Gaussian noise `N(0, stddev^2)` to every input value.

    Works on images and feature vectors alike. For images in `[0, 1]` pass
    `clip=(0.0, 1.0)` to keep them there; the default leaves values unbounded (features
    of regression and ranking tasks).

    Args:
        stddev: standard deviation of the noise, >= 0.
        clip: `None`, or `(low, high)`: the noisy values are clipped to this range.

    Example:

    >>> import numpy as np, keras_meta as km
    >>> noise = km.data.transforms.GaussianNoise(0.1, clip=(0.0, 1.0))
    >>> out = noise(np.full((2, 4, 4, 1), 0.5, "float32"), seed=[1, 2])
    >>> out.shape, bool(out.numpy().min() >= 0.0)
    (TensorShape([2, 4, 4, 1]), True)
    """

    def __init__(self, stddev: float, clip: tuple[float, float] | None = None):
        self.stddev = check_number("stddev", stddev, minimum=0.0)
        self.clip = _check_clip(clip)

    def call(self, inputs, key):
        noise = tf.random.stateless_normal(tf.shape(inputs), key, dtype=inputs.dtype)
        return _clip(inputs + self.stddev * noise, self.clip)

    def get_config(self):
        return {"stddev": self.stddev, "clip": self.clip}


@keras.saving.register_keras_serializable(package="keras_meta")
class SaltAndPepper(Transform):
    """Replaces each input value, with probability `rate`, by `low` or `high` (half each).

    Each value is corrupted independently (for colour images, each channel of a pixel
    on its own).

    Args:
        rate: probability that a value is replaced, in `[0, 1]`.
        low: the "pepper" value (0 for images in `[0, 1]`).
        high: the "salt" value (1 for images in `[0, 1]`).

    Example:

    >>> import numpy as np, keras_meta as km
    >>> out = km.data.transforms.SaltAndPepper(0.5)(np.full((1, 100), 0.5), seed=[0, 1])
    >>> sorted(set(np.round(out.numpy().ravel(), 1).tolist()))
    [0.0, 0.5, 1.0]
    """

    def __init__(self, rate: float, low: float = 0.0, high: float = 1.0):
        self.rate = check_number("rate", rate, minimum=0.0, maximum=1.0)
        self.low, self.high = check_range("(low, high)", (low, high))

    def call(self, inputs, key):
        hit_key, salt_key = tf.unstack(_seeds.split_key(key, 2))
        hit = tf.random.stateless_uniform(tf.shape(inputs), hit_key) < self.rate
        salt = tf.random.stateless_uniform(tf.shape(inputs), salt_key) < 0.5
        values = tf.where(
            salt, tf.constant(self.high, inputs.dtype), tf.constant(self.low, inputs.dtype)
        )
        return tf.where(hit, values, inputs)

    def get_config(self):
        return {"rate": self.rate, "low": self.low, "high": self.high}


@keras.saving.register_keras_serializable(package="keras_meta")
class RandomErasing(Transform):
    """Occludes a `size x size` square of each image with a constant `value`.

    The square's position is uniform over the positions where it lies inside the image,
    drawn independently for each image; all channels are erased (Zhong et al., 2020,
    with a fixed square size).

    Args:
        size: side of the square in pixels, >= 1 and at most the image's height and
            width.
        value: the value written into the square (0 is black for images in `[0, 1]`).

    Example:

    >>> import numpy as np, keras_meta as km
    >>> out = km.data.transforms.RandomErasing(2)(np.ones((3, 5, 5, 1)), seed=[0, 0])
    >>> (out.numpy() == 0).sum(axis=(1, 2, 3)).tolist()
    [4, 4, 4]
    """

    def __init__(self, size: int, value: float = 0.0):
        self.size = check_int("size", size)
        self.value = check_number("value", value)

    def call(self, inputs, key):
        if inputs.shape.rank != 4:
            raise ValueError(
                "RandomErasing needs images `[n, height, width, channels]`; received "
                f"inputs of shape {inputs.shape}."
            )
        height, width = inputs.shape[1], inputs.shape[2]
        if height is not None and width is not None and self.size > min(height, width):
            raise ValueError(
                f"RandomErasing(size={self.size}) needs images of at least {self.size} x "
                f"{self.size} pixels; received images of {height} x {width}."
            )
        shape = tf.shape(inputs)
        n, h, w = shape[0], shape[1], shape[2]
        y_key, x_key = tf.unstack(_seeds.split_key(key, 2))
        top = tf.random.stateless_uniform([n, 1], y_key, 0, h - self.size + 1, dtype=tf.int32)
        left = tf.random.stateless_uniform([n, 1], x_key, 0, w - self.size + 1, dtype=tf.int32)
        rows = tf.range(h)[tf.newaxis, :]
        cols = tf.range(w)[tf.newaxis, :]
        in_rows = (rows >= top) & (rows < top + self.size)  # [n, h]
        in_cols = (cols >= left) & (cols < left + self.size)  # [n, w]
        mask = in_rows[:, :, tf.newaxis, tf.newaxis] & in_cols[:, tf.newaxis, :, tf.newaxis]
        return tf.where(mask, tf.constant(self.value, inputs.dtype), inputs)

    def get_config(self):
        return {"size": self.size, "value": self.value}


@keras.saving.register_keras_serializable(package="keras_meta")
class Compose(Transform):
    """Applies several transforms in order, each with its own sub-key of the episode's.

    Args:
        transforms: the transforms (any callables, seeded or not), applied first to
            last.

    Example:

    >>> import numpy as np, keras_meta as km
    >>> t = km.data.transforms
    >>> noisy = t.Compose([t.GaussianNoise(0.1), t.SaltAndPepper(0.05)])
    >>> noisy(np.zeros((2, 8, 8, 1), "float32"), seed=[0, 0]).shape
    TensorShape([2, 8, 8, 1])
    """

    def __init__(self, transforms: Sequence[Callable]):
        if isinstance(transforms, (str, bytes)) or not isinstance(transforms, Sequence):
            raise TypeError(
                "`transforms` must be a list of callables; received "
                f"{type(transforms).__name__} {transforms!r}."
            )
        self.transforms = [
            check_callable(f"transforms[{i}]", t) for i, t in enumerate(transforms)
        ]

    def call(self, inputs, key):
        if not self.transforms:
            return inputs
        keys = _seeds.split_key(key, len(self.transforms))
        for i, transform in enumerate(self.transforms):
            if _accepts_seed(transform):
                inputs = transform(inputs, seed=keys[i])
            else:
                inputs = transform(inputs)
            inputs = tf.convert_to_tensor(inputs)
        return inputs

    def get_config(self):
        return {"transforms": [describe_callable(t) for t in self.transforms]}

    @classmethod
    def from_config(cls, config):
        transforms = []
        for item in config["transforms"]:
            registered = keras.saving.get_registered_object(f"keras_meta>{item['class_name']}")
            if registered is None or "config" not in item:
                raise ValueError(f"Cannot rebuild the transform {item!r} from its config.")
            transforms.append(registered.from_config(item["config"]))
        return cls(transforms)
