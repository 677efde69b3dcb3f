"""BatchNormalization inside the learners' traces: exact and fast.

Two swaps, both active only while a learner traces its wrapped model
(`learner_batch_norm()`); the swaps themselves (which Keras symbol, thread
safety, the error when Keras no longer has it) live in
`keras_meta._keras_compat`.

- **Exact second derivatives.** `tf.nn.moments` (which Keras's TensorFlow
  backend uses for BatchNormalization) computes the variance around
  `stop_gradient(mean)`. The first derivative is unaffected (the derivative
  of the variance with respect to the mean is zero at the mean), but second
  derivatives lose the mean's contribution, so a second-order meta-gradient
  through BatchNorm would be slightly wrong. `exact_moments()` swaps in a
  variance that keeps the gradient through the mean; values are the same.
- **One fused kernel.** Keras 3 computes a training-mode BatchNorm from
  separate element-wise ops (mean, variance, normalisation), each a pass
  over the activations, forward and backward; on ProtoNet's 360×28×28×64
  activations that is most of a step. `fused_batch_norm()` runs the layer's
  training-mode call as TensorFlow's `FusedBatchNormV3`, whose gradient (and
  gradient of the gradient) TensorFlow defines exactly. It applies to
  float32 (and mixed-precision) activations with the channels last; float64
  (the reference tests), masks, renorm, synchronized BatchNorm and an
  epsilon below the kernel's minimum go through Keras's own call. The moving
  statistics are updated as Keras does, from the biased batch variance; no
  gradient flows into them (the learners never differentiate them: their
  meta-training passes normalise with the batch's statistics).
  Learners whose meta-gradient is second order (MAML, Meta-SGD, ANIL unless
  `first_order=True`) keep Keras's ops: TensorFlow's gradient of the fused
  gradient is itself composite, and on MAML's small episodes the fused path
  measured 1.4× more CPU time per step (docs/performance.md); ProtoNet's
  large first-order BatchNorms take 1.37× less (1.40× faster).
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from keras_meta._keras_compat import batch_moments_patch, batch_norm_call_patch

# Keras's own training-mode call, for what the fused kernel does not cover.
_KERAS_CALL = keras.layers.BatchNormalization.call
# FusedBatchNormV3 raises a smaller epsilon to this (tf.nn.fused_batch_norm).
_MIN_FUSED_EPSILON = 1.001e-5


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


def _fusable(layer, inputs, training, mask) -> bool:
    if not (training and layer.trainable) or mask is not None:
        return False
    if layer.renorm or layer.synchronized or layer.epsilon < _MIN_FUSED_EPSILON:
        return False
    rank = inputs.shape.rank
    if rank is None or rank < 2 or layer.axis % rank != rank - 1:
        return False
    # One value per channel: the kernel's unbiased variance is undefined.
    if inputs.shape[:-1].num_elements() == 1:
        return False
    # float64 stays on Keras's path (the kernel has no float64 version).
    return keras.backend.result_type(inputs.dtype, "float32") == "float32"


def fused_batch_norm_call(layer, inputs, training=None, mask=None):
    """`BatchNormalization.call` with its training mode as one fused kernel.

    Same values (to float32 rounding), same moving-statistics update and
    the same first and second derivatives with respect to the inputs and
    the layer's weights as Keras's call; anything the kernel does not cover
    goes to Keras's call.

    Example:

    >>> import numpy as np
    >>> bn = keras.layers.BatchNormalization()
    >>> x = tf.constant(np.arange(8.0, dtype="float32").reshape(4, 2))
    >>> y = fused_batch_norm_call(bn, x, training=True)
    >>> [round(float(v), 2) for v in y[:, 0]]
    [-1.34, -0.45, 0.45, 1.34]
    """
    if not layer.built:
        layer.build(inputs.shape)
    if not _fusable(layer, tf.convert_to_tensor(inputs), training, mask):
        return _KERAS_CALL(layer, inputs, training=training, mask=mask)
    x = tf.cast(inputs, "float32")
    shape = tf.shape(x)
    channels = x.shape[-1]
    rank = x.shape.rank
    if rank != 4:
        # The kernel takes NHWC; moments over every axis but the last are the
        # same for any leading shape.
        x = tf.reshape(x, [1, -1, 1, channels])
    gamma = tf.cast(layer.gamma, "float32") if layer.scale else tf.ones([channels])
    beta = tf.cast(layer.beta, "float32") if layer.center else tf.zeros([channels])
    y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        x, gamma, beta, epsilon=layer.epsilon, is_training=True, data_format="NHWC"
    )
    # The kernel returns the unbiased variance (for its own running average);
    # Keras averages the biased one.
    count = tf.cast(tf.size(x) // channels, "float32")
    variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
    momentum = layer.momentum
    layer.moving_mean.assign(
        tf.cast(layer.moving_mean, "float32") * momentum + mean * (1.0 - momentum)
    )
    layer.moving_variance.assign(
        tf.cast(layer.moving_variance, "float32") * momentum + variance * (1.0 - momentum)
    )
    if rank != 4:
        y = tf.reshape(y, shape)
    return tf.cast(y, layer.compute_dtype)


@contextlib.contextmanager
def fused_batch_norm():
    """Within the block, training-mode BatchNormalization runs one fused kernel.

    Example:

    >>> bn = keras.layers.BatchNormalization()
    >>> with fused_batch_norm():
    ...     y = bn(tf.constant([[1.0], [3.0]]), training=True)
    >>> [round(float(v), 3) for v in y[:, 0]]
    [-1.0, 1.0]
    """
    with batch_norm_call_patch.patched(fused_batch_norm_call):
        yield


@contextlib.contextmanager
def learner_batch_norm(fused: bool = True):
    """What the learners trace their model under: the fused kernel where it
    applies (with `fused=True`), exact moments everywhere else.

    Example:

    >>> bn = keras.layers.BatchNormalization()
    >>> with learner_batch_norm():
    ...     y = bn(tf.constant([[1.0], [3.0]]), training=True)
    >>> [round(float(v), 3) for v in y[:, 0]]
    [-1.0, 1.0]
    """
    with exact_moments(), fused_batch_norm() if fused else contextlib.nullcontext():
        yield
