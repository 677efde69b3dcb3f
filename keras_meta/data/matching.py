"""Matching another domain's images to a learner's input shape.

A learner meta-trained on one image shape (Omniglot's 28x28x1) can be adapted
to tasks from another dataset (8x8 digits, 32x32x3 photos) once their images
have its shape: `match_images` maps every episode's `support_x` and `query_x`
to it with

- a bilinear, antialiased resize (`tf.image.resize(..., antialias=True)`:
  without the antialiasing, downsampling aliases fine strokes away);
- 1 -> 3 channels by repeating the gray level (`tf.image.grayscale_to_rgb`)
  and 3 -> 1 by the ITU-R 601 luminance weights 0.2989, 0.5870, 0.1140
  (`tf.image.rgb_to_grayscale`).

Any other difference (4 vs 2 channels, vectors instead of images) has no
meaningful conversion and is a `ValueError` that names both shapes.

Values must already be in [0, 1], like the package's samplers produce them:
resizing keeps the range, so a dataset of 0..255 or 0..16 pixels would reach
the learner far outside its training range. Such values raise an error
suggesting the sampler's `scale=` argument instead of being rescaled silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from keras_meta.validation import check_int

#: Pixel values above this are clearly not on the [0, 1] scale (0..16, 0..255).
MAX_PIXEL_VALUE = 1.5

_CONVERTIBLE_CHANNELS = {(1, 3), (3, 1)}


def _shape_str(shape) -> str:
    return str(tuple(None if d is None else int(d) for d in shape))


def _check_input_shape(input_shape) -> tuple[int, int, int]:
    if not isinstance(input_shape, Sequence) or len(input_shape) != 3:
        raise ValueError(
            "Expected `input_shape` to be an image shape (height, width, channels); "
            f"received {input_shape!r}."
        )
    return tuple(check_int(f"input_shape[{i}]", d) for i, d in enumerate(input_shape))


def _check_convertible(image_shape, input_shape) -> None:
    """Raises unless images of `image_shape` (h, w, c) can be matched to `input_shape`."""
    image_shape = tuple(image_shape)
    ok = len(image_shape) == 3 and image_shape[-1] is not None
    if ok:
        channels = (int(image_shape[-1]), input_shape[-1])
        ok = channels[0] == channels[1] or channels in _CONVERTIBLE_CHANNELS
    if not ok:
        raise ValueError(
            f"Cannot match images of shape {_shape_str(image_shape)} to the input shape "
            f"{_shape_str(input_shape)}: only images (height, width, channels) with a "
            "known number of channels are resized, and only 1 <-> 3 channels are "
            "converted (gray <-> RGB)."
        )


def _check_pixel_range(images, name: str):
    """`images`, checked to hold values on the [0, 1] scale (at once, or in the graph)."""
    def advice(received: str) -> str:
        return (
            f"Expected `{name}` values in [0, 1] (as the keras_meta samplers give them); "
            f"received {received}. Rescale them, e.g. with the sampler's `scale=` argument "
            "(`scale=255` for 8-bit pixels, `scale=16` for scikit-learn's load_digits)."
        )

    value = images if isinstance(images, np.ndarray) else tf.get_static_value(images)
    if value is not None:
        if value.size and float(np.max(value)) > MAX_PIXEL_VALUE:
            raise ValueError(advice(f"values up to {float(np.max(value)):g}"))
        return images
    check = tf.debugging.Assert(
        tf.reduce_max(images) <= MAX_PIXEL_VALUE,
        [advice(f"values above {MAX_PIXEL_VALUE}; the largest is"), tf.reduce_max(images)],
    )
    with tf.control_dependencies([check]):
        return tf.identity(images)


def _convert(images, input_shape, name: str = "images"):
    """Images `[..., h, w, c]` (c in {1, 3}, checked) as float32 `[..., *input_shape]`."""
    images = tf.convert_to_tensor(images)
    if not images.dtype.is_floating:
        images = tf.cast(images, tf.float32)
    images = _check_pixel_range(tf.cast(images, tf.float32), name)
    lead = tf.shape(images)[:-3]
    # tf.image ops take [N, h, w, c]: fold any leading axes (S, or B and S) into N.
    flat = tf.reshape(images, tf.concat([[-1], tf.shape(images)[-3:]], axis=0))
    channels, target = int(images.shape[-1]), input_shape[-1]
    if channels == 3 and target == 1:
        flat = tf.image.rgb_to_grayscale(flat)
    if tuple(images.shape[-3:-1]) != tuple(input_shape[:2]):
        flat = tf.image.resize(flat, input_shape[:2], method="bilinear", antialias=True)
    if channels == 1 and target == 3:
        flat = tf.image.grayscale_to_rgb(flat)
    return tf.reshape(flat, tf.concat([lead, input_shape], axis=0))


def match_image_array(images, input_shape: tuple[int, int, int]) -> tf.Tensor:
    """One set of images `[..., h, w, c]` with values in [0, 1], as `[..., *input_shape]`.

    The array version of `match_images` (same resize and channel conversion):
    e.g. to predict new images with the model that `learner.adapt` returns.

    Args:
        images: `[..., height, width, channels]` images (numpy array or tensor)
            with values in [0, 1].
        input_shape: the learner's `(height, width, channels)`.

    Returns:
        A float32 tensor `[..., *input_shape]`.

    Example:

    >>> import numpy as np, keras_meta as km
    >>> digits = np.random.rand(10, 8, 8, 1).astype("float32")
    >>> tuple(km.data.match_image_array(digits, (28, 28, 3)).shape)
    (10, 28, 28, 3)
    """
    input_shape = _check_input_shape(input_shape)
    images = tf.convert_to_tensor(images)
    _check_convertible(tuple(images.shape)[-3:], input_shape)
    return _convert(images, input_shape)


def episode_axes(element_spec) -> int:
    """How many leading axes the episodes of a dataset's `element_spec` have.

    1 for single episodes, 2 for batched ones (the episode axis B first).
    Integer labels are `[S]` per episode and `[B, S]` per batch; regression
    targets `[S, d]` and `[B, S, d]`. The dtype tells which rank to expect, so a
    batch of classification episodes is never taken for one regression episode.

    Example:

    >>> import numpy as np, keras_meta as km
    >>> x = np.random.rand(40, 8, 8, 1).astype("float32")
    >>> ds = km.data.episodes(x, np.repeat(np.arange(4), 10), ways=2, seed=0, queries=2)
    >>> episode_axes(ds.element_spec), episode_axes(ds.batch(3).element_spec)
    (1, 2)
    """
    x = element_spec[0] if isinstance(element_spec, tuple) else element_spec
    if not isinstance(x, Mapping) or "support_x" not in x or "support_y" not in x:
        raise ValueError(
            "Expected a dataset of episodes `(x, query_y)` with x = {'support_x', "
            "'support_y', 'query_x'} (see keras_meta.data); received elements with the "
            f"spec {element_spec}."
        )
    support_y = x["support_y"]
    single_rank = 1 if support_y.dtype.is_integer else 2
    return 2 if support_y.shape.rank == single_rank + 1 else 1


def episode_image_shape(element_spec) -> tuple:
    """The example shape of the episodes of a dataset's `element_spec` (batched or not).

    Example:

    >>> import numpy as np, keras_meta as km
    >>> x = np.random.rand(40, 8, 8, 1).astype("float32")
    >>> ds = km.data.episodes(x, np.repeat(np.arange(4), 10), ways=2, seed=0, queries=2)
    >>> episode_image_shape(ds.batch(3).element_spec)
    (8, 8, 1)
    """
    lead = episode_axes(element_spec)
    x = element_spec[0] if isinstance(element_spec, tuple) else element_spec
    return tuple(None if d is None else int(d) for d in x["support_x"].shape[lead:])


def match_images(episodes: tf.data.Dataset, input_shape: tuple[int, int, int]) -> tf.data.Dataset:
    """Maps the images of a dataset of episodes to a learner's input shape.

    `support_x` and `query_x` of every episode (single episodes, or batches of
    them) are resized bilinearly with antialiasing to `input_shape`'s height
    and width, and converted 1 -> 3 channels (gray to RGB) or 3 -> 1 (luminance);
    labels are untouched. `keras_meta.evaluate` calls it when the episodes'
    image shape differs from the learner's input shape, so cross-domain
    evaluation is `km.evaluate(learner, other_episodes)`.

    Args:
        episodes: a `tf.data.Dataset` of episodes `(x, query_y)` (see
            `keras_meta.data.episodes`) whose images have values in [0, 1]
            (e.g. `scale=255` or `scale=16` in the sampler): a value above 1.5
            in the first episode is a `ValueError` here, in a later one a
            `tf.errors.InvalidArgumentError` when it is read.
        input_shape: the learner's `(height, width, channels)`.

    Returns:
        The dataset with float32 images of shape `input_shape` (the same
        dataset when they already have it). Its `episode_config`, when the
        input has one, records `"matched_input_shape"`.

    Raises:
        ValueError: the images are not `(height, width, channels)` images,
            the channels are neither equal nor 1 <-> 3, or the values are not
            on the [0, 1] scale.

    Example:

    >>> import numpy as np, keras_meta as km
    >>> x = np.random.rand(100, 8, 8, 1).astype("float32")
    >>> y = np.repeat(np.arange(10), 10)
    >>> digits = km.data.episodes(x, y, ways=5, shots=1, queries=2, seed=0)
    >>> ex, _ = next(iter(km.data.match_images(digits, (28, 28, 1))))
    >>> tuple(ex["support_x"].shape), tuple(ex["query_x"].shape)
    ((5, 28, 28, 1), (10, 28, 28, 1))
    """
    if not isinstance(episodes, tf.data.Dataset):
        raise TypeError(
            "Expected `episodes` to be a tf.data.Dataset of episodes; received "
            f"{type(episodes).__name__}. For arrays of images use match_image_array."
        )
    input_shape = _check_input_shape(input_shape)
    image_shape = episode_image_shape(episodes.element_spec)
    _check_convertible(image_shape, input_shape)
    if image_shape == input_shape:
        return episodes
    # The first episode is checked here, so that a wrong scale is a ValueError at
    # once; the in-graph check of every episode raises only when it is read.
    for element in episodes.take(1):
        first = element[0] if isinstance(element, tuple) else element
        for key in ("support_x", "query_x"):
            _check_pixel_range(first[key].numpy(), key)

    def convert(x, *rest):
        x = dict(x)
        for key in ("support_x", "query_x"):
            x[key] = _convert(x[key], input_shape, key)
        # Prediction datasets hold the dict alone, training ones `(x, query_y)`.
        return (x, *rest) if rest else x

    matched = episodes.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    config = getattr(episodes, "episode_config", None)
    if config is not None:
        matched.episode_config = dict(config, matched_input_shape=list(input_shape))
    return matched
