"""Exact second derivatives through batch statistics.

`tf.nn.moments` (which Keras's TensorFlow backend uses for BatchNormalization)
computes the variance around `stop_gradient(mean)`. The first derivative is
unaffected (the derivative of the variance with respect to the mean is zero
at the mean), but second derivatives lose the mean's contribution, so a
second-order meta-gradient through BatchNorm would be slightly wrong. While
the learners trace the wrapped model, they swap in a variance that keeps the
gradient through the mean; values are the same. The swap itself (which Keras
function, thread safety, the error when Keras no longer has it) lives in
`keras_meta._keras_compat`.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf

from keras_meta._keras_compat import batch_moments_patch


def exact_moments_fn(x, axes, keepdims=False):
    """Mean and (biased) variance with exact derivatives of every order.

    Example:

    >>> mean, var = exact_moments_fn(tf.constant([[1.0], [3.0]]), axes=[0])
    >>> float(mean[0]), float(var[0])
    (2.0, 1.0)
    """
    mean = tf.reduce_mean(x, axes, keepdims=True)
    variance = tf.reduce_mean(tf.math.squared_difference(x, mean), axes, keepdims=True)
    if not keepdims:
        mean = tf.squeeze(mean, axes)
        variance = tf.squeeze(variance, axes)
    return mean, variance


@contextlib.contextmanager
def exact_moments():
    """Within the block, Keras layers compute batch moments exactly.

    Example:

    >>> import keras
    >>> bn = keras.layers.BatchNormalization()
    >>> with exact_moments():
    ...     y = bn(tf.constant([[1.0], [3.0]]), training=True)
    >>> [round(float(v), 3) for v in y[:, 0]]
    [-1.0, 1.0]
    """
    with batch_moments_patch.patched(exact_moments_fn):
        yield
