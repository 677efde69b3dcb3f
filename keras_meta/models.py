"""The networks of the published few-shot protocols.

`conv4` is the four-block convolutional network of the few-shot literature in
its two variants (max-pooling, as in Vinyals et al. and Prototypical Networks;
stride-2 convolutions, as in MAML's and Reptile's Omniglot code), and `mlp` is
MAML's sinusoid-regression network. The protocols of
`keras_meta.experiments.protocols`, the demo, the examples and the benchmarks
all build their networks here.

Example:

>>> from keras_meta import models
>>> models.conv4((28, 28, 1), num_outputs=5, pooling="strided").output_shape
(None, 5)
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_meta import validation

POOLINGS = ("max", "strided")


def conv4(
    input_shape: Sequence[int] = (28, 28, 1),
    num_outputs: int | None = None,
    filters: int = 64,
    pooling: str = "max",
    bn_scale: bool = True,
    name: str = "conv4",
) -> keras.Model:
    """The four-block convolutional network of the few-shot literature.

    Each block is a 3x3 convolution with `filters` filters, BatchNorm, ReLU,
    then 2x2 max-pooling (`pooling="max"`, Vinyals et al., ProtoNets) or, with
    `pooling="strided"`, a stride-2 convolution instead of the pooling and a
    mean over the last feature map (MAML and Reptile on Omniglot).

    Args:
        input_shape: `(height, width, channels)`.
        num_outputs: size of a final dense layer named `"head"` (the logits);
            `None` for an embedding network (flattened features).
        filters: filters per convolution.
        pooling: `"max"` or `"strided"`.
        bn_scale: whether BatchNorm learns a scale (MAML's does not).
        name: the model's name.

    Example:

    >>> net = conv4((28, 28, 1), num_outputs=5)
    >>> net.output_shape
    (None, 5)
    >>> conv4((28, 28, 1)).output_shape
    (None, 64)
    >>> conv4((28, 28, 1), pooling="strided", bn_scale=False).output_shape
    (None, 64)
    """
    validation.check_choice("pooling", pooling, POOLINGS)
    validation.check_int("filters", filters)
    validation.check_int("num_outputs", num_outputs, allow_none=True)
    validation.check_bool("bn_scale", bn_scale)
    inputs = keras.Input(tuple(input_shape), name="image")
    x = inputs
    strides = 2 if pooling == "strided" else 1
    for i in range(4):
        x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", name=f"conv{i + 1}")(x)
        x = keras.layers.BatchNormalization(scale=bn_scale, name=f"bn{i + 1}")(x)
        x = keras.layers.ReLU(name=f"relu{i + 1}")(x)
        if pooling == "max":
            x = keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    if pooling == "strided":
        x = keras.layers.GlobalAveragePooling2D(name="mean")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
    if num_outputs is not None:
        x = keras.layers.Dense(num_outputs, name="head")(x)
    return keras.Model(inputs, x, name=name)


def mlp(
    input_dim: int = 1,
    num_outputs: int = 1,
    hidden_units: Sequence[int] = (40, 40),
    name: str = "mlp",
) -> keras.Model:
    """MAML's regression network: ReLU hidden layers and a linear output.

    The defaults are the sinusoid network of Finn et al. (2017): 1-40-40-1.

    Args:
        input_dim: features per example.
        num_outputs: size of the linear output layer (named `"head"`).
        hidden_units: units of each ReLU hidden layer.
        name: the model's name.

    Example:

    >>> mlp().count_params()
    1761
    >>> mlp(3, 2, (8,)).output_shape
    (None, 2)
    """
    validation.check_int("input_dim", input_dim)
    validation.check_int("num_outputs", num_outputs)
    units = [validation.check_int("hidden_units", u) for u in hidden_units]
    inputs = keras.Input((input_dim,), name="x")
    x = inputs
    for i, width in enumerate(units):
        x = keras.layers.Dense(width, activation="relu", name=f"dense{i + 1}")(x)
    outputs = keras.layers.Dense(num_outputs, name="head")(x)
    return keras.Model(inputs, outputs, name=name)
