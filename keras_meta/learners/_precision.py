"""Mixed precision (`keras.mixed_precision`) in the learners.

A wrapped model built under `"mixed_float16"` or `"mixed_bfloat16"` keeps
float32 variables and computes in float16/bfloat16. The learners keep
everything around the model in float32: the fast weights of the inner loop,
the model's outputs (cast before any loss, head or metric), the losses and
the meta-gradients. With float16 two loss scales guard the gradients
against underflow: the outer one is Keras's `LossScaleOptimizer` (dynamic;
`compile` wraps the optimizer in one), the inner one the fixed
`INNER_LOSS_SCALE` (the inner loop runs in evaluation and export too, where
no optimizer adjusts a scale).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_meta import _keras_compat

LOW_PRECISION = ("float16", "bfloat16")
# 2**10: the float16 gradients of a support loss as small as ~1e-7 per
# output stay above float16's smallest normal number (6e-5), while an output
# gradient up to 64 does not overflow (65504).
INNER_LOSS_SCALE = 2.0**10


def compute_dtypes(model: keras.Model) -> set:
    """The compute dtypes of `model` and of every layer inside it.

    Example:

    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, dtype="mixed_float16")])
    >>> sorted(compute_dtypes(net))
    ['float16', 'float32']
    """
    layers = [model] + _keras_compat.nested_layers(model)
    return {layer.dtype_policy.compute_dtype for layer in layers}


def uses_float16(model: keras.Model) -> bool:
    """Whether some layer of `model` computes in float16 (needs loss scaling).

    Example:

    >>> uses_float16(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    False
    """
    return "float16" in compute_dtypes(model)


def to_float32(outputs: tf.Tensor) -> tf.Tensor:
    """`outputs` cast to float32 if they are float16 or bfloat16.

    Example:

    >>> to_float32(tf.constant(1.0, "bfloat16")).dtype.name
    'float32'
    """
    if outputs.dtype.name in LOW_PRECISION:
        return tf.cast(outputs, "float32")
    return outputs


def loss_scale_optimizer(optimizer, model: keras.Model):
    """`optimizer` wrapped in a `keras.optimizers.LossScaleOptimizer` when
    `model` computes in float16 (and it is not wrapped already).

    Keras wraps it itself only when the learner's own dtype policy is
    `"mixed_float16"`; a model built under that policy may be wrapped by a
    learner created after the policy was reset.

    Example:

    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, dtype="mixed_float16")])
    >>> type(loss_scale_optimizer("sgd", net)).__name__
    'LossScaleOptimizer'
    """
    if not uses_float16(model) or isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(keras.optimizers.get(optimizer))


def all_finite(grads) -> tf.Tensor:
    """Whether every gradient is finite (a loss-scaled step is applied).

    Example:

    >>> bool(all_finite([tf.constant([1.0, float("inf")])]))
    False
    """
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
