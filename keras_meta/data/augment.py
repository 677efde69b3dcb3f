"""Rotation augmentations of the few-shot literature.

Two protocols differ in what a rotated image *is*:

* **Rotations as new classes** (Vinyals et al. 2016, ProtoNets, Reptile): every class
  `c` becomes four classes, `c` rotated by 0, 90, 180 and 270 degrees. Use
  `rotate_classes()` on the arrays of one split, after `split_classes()`, so that no
  rotated copy of a test class reaches training.
* **Random rotation per class per episode** (MAML): the classes are unchanged, but in
  each episode all images of a class are rotated by the same random multiple of 90
  degrees. That is `episodes(..., augment="class_rotation")`.
"""

import numpy as np
import tensorflow as tf

from keras_meta.data._arrays import check_labels


def _check_square(shape, what):
    if len(shape) < 3 or shape[-3] != shape[-2]:
        raise ValueError(
            f"{what} needs square images of shape [n, size, size, channels]; received "
            "images of "
            f"shape {tuple(shape)}."
        )


def rotate_classes(images, labels) -> tuple[np.ndarray, np.ndarray]:
    """Rotations by multiples of 90 degrees as new classes (4x classes and examples).

    The image `images[i]` rotated by `k * 90` degrees counter-clockwise gets the label
    `labels[i] * 4 + k`, so `new_label // 4` is the original class and `new_label % 4`
    the rotation. The output holds the four rotations of the whole input, one after the
    other.

    Args:
        images: `[n, size, size, channels]` array of square images.
        labels: `[n]` non-negative integer class ids.

    Returns:
        `(images, labels)` of lengths `4 * n`; labels are int64.

    Example:

    >>> import numpy as np, keras_meta as km
    >>> x = np.zeros((6, 28, 28, 1), "float32"); y = np.array([0, 0, 1, 1, 2, 2])
    >>> x4, y4 = km.data.rotate_classes(x, y)
    >>> x4.shape, len(np.unique(y4))
    ((24, 28, 28, 1), 12)
    """
    images = np.asarray(images)
    _check_square(images.shape, "rotate_classes()")
    labels = check_labels(labels, num_examples=len(images))
    rotated = [np.rot90(images, k=k, axes=(1, 2)) for k in range(4)]
    new_labels = [labels * 4 + k for k in range(4)]
    return np.ascontiguousarray(np.concatenate(rotated)), np.concatenate(new_labels)


def rotate_images(images: tf.Tensor, quarter_turns: tf.Tensor) -> tf.Tensor:
    """Rotates each square image of a batch by its own multiple of 90 degrees.

    Args:
        images: `[n, size, size, channels]` tensor.
        quarter_turns: `[n]` integer tensor; image `i` is rotated by `quarter_turns[i] *
            90` degrees counter-clockwise (the direction of `np.rot90`).

    Returns:
        The rotated `[n, size, size, channels]` tensor.

    Example:

    >>> import numpy as np, keras_meta as km
    >>> x = np.arange(4, dtype="float32").reshape(1, 2, 2, 1)
    >>> r = km.data.rotate_images(x, np.array([1]))
    >>> bool((r.numpy()[0] == np.rot90(x[0])).all())
    True
    """
    images = tf.convert_to_tensor(images)
    _check_square(images.shape, "rotate_images()")
    size, channels = images.shape[1], images.shape[3]
    # A rotation permutes pixel positions: one gather of precomputed permutations is
    # several times faster in tf.data than computing all four rotations and selecting.
    grid = np.arange(size * size, dtype=np.int32).reshape(size, size)
    permutations = tf.constant(np.stack([np.rot90(grid, k).ravel() for k in range(4)]))
    k = tf.math.floormod(tf.cast(quarter_turns, tf.int32), 4)
    flat = tf.reshape(images, [-1, size * size, channels])
    rotated = tf.gather(flat, tf.gather(permutations, k), batch_dims=1)
    return tf.reshape(rotated, tf.shape(images))
