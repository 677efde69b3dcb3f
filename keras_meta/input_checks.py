"""Checks that keep bad inputs from passing silently.

Every episode a learner sees (in `fit`, `evaluate`, `predict`, `adapt` and
the exported `adapt_and_predict`) goes through `check_episode_inputs`:

- non-finite values (NaN, Inf) in the examples or float targets raise, and,
  in a traced step, raise before anything consumes them, so `fit` stops
  before the weights are updated (a NaN in the inputs would otherwise turn
  every weight into NaN while the reported loss can stay finite);
- an empty support set (S = 0) raises instead of skipping adaptation;
- labels of the wrong kind for the compiled loss raise: a sparse
  classification loss takes integer class ids `[S]`, never float targets,
  and a regression loss takes float targets `[S, d]`, never class ids;
- examples whose shape differs from the wrapped model's declared input shape
  (images of another domain) raise, naming both shapes and the fix
  (`keras_meta.data.match_images`).

Known values (eager calls such as `adapt`) raise a `ValueError` at once;
traced values get `tf.debugging` asserts that raise
`tf.errors.InvalidArgumentError` when the step runs.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_meta import _keras_compat

_CLASSIFICATION_LOSSES = (keras.losses.SparseCategoricalCrossentropy,)
_CLASSIFICATION_NAMES = ("sparse_categorical_crossentropy",)
_REGRESSION_LOSSES = (
    keras.losses.MeanSquaredError,
    keras.losses.MeanAbsoluteError,
    keras.losses.MeanSquaredLogarithmicError,
    keras.losses.MeanAbsolutePercentageError,
    keras.losses.Huber,
    keras.losses.LogCosh,
)
_REGRESSION_NAMES = (
    "mean_squared_error",
    "mean_absolute_error",
    "mean_squared_logarithmic_error",
    "mean_absolute_percentage_error",
    "huber",
    "log_cosh",
)


def loss_task(loss) -> str | None:
    """`"classification"`, `"regression"` or `None` (unknown) for a loss.

    Example:

    >>> import keras
    >>> loss_task(keras.losses.SparseCategoricalCrossentropy()), loss_task("mse")
    ('classification', 'regression')
    """
    if loss is None:
        return None
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if isinstance(loss, _CLASSIFICATION_LOSSES):
        return "classification"
    if isinstance(loss, _REGRESSION_LOSSES):
        return "regression"
    fn = getattr(loss, "fn", loss)  # a wrapped plain function
    name = getattr(fn, "__name__", "")
    if name in _CLASSIFICATION_NAMES:
        return "classification"
    if name in _REGRESSION_NAMES:
        return "regression"
    return None


def _shape(t) -> str:
    return str(tuple(None if d is None else int(d) for d in t.shape))


def check_finite(t, name: str):
    """Returns `t`, checked to hold no NaN or Inf (at once, or by an in-graph assert).

    Example:

    >>> check_finite(tf.constant([1.0, 2.0]), "support_x").numpy().tolist()
    [1.0, 2.0]
    >>> check_finite(tf.constant([1.0, float("nan")]), "support_x")
    Traceback (most recent call last):
    ...
    ValueError: Expected finite values in `support_x`; received 1 NaN/Inf value(s)...
    """
    if not tf.as_dtype(t.dtype).is_floating:
        return t
    value = t if isinstance(t, np.ndarray) else tf.get_static_value(t)
    if value is not None:
        bad = ~np.isfinite(value)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"Expected finite values in `{name}`; received {int(bad.sum())} NaN/Inf "
                f"value(s), the first at index {first} (shape {value.shape})."
            )
        return t
    check = tf.debugging.Assert(
        tf.reduce_all(tf.math.is_finite(t)),
        [f"Expected finite values in `{name}`; received NaN or Inf values (shape "
         f"{_shape(t)}). Nothing was updated."],
    )
    with tf.control_dependencies([check]):
        return tf.identity(t)


def _check_support_size(support_x, support_y, lead: int):
    """`(support_x, support_y)`, checked to hold at least one example per episode."""
    size = support_x.shape[lead]
    if size is not None:
        if size == 0:
            raise ValueError(
                "Expected at least one support example per episode (S >= 1); "
                f"received `support_x` of shape {_shape(support_x)}."
            )
        return support_x, support_y
    check = tf.debugging.Assert(
        tf.shape(support_x)[lead] > 0,
        ["Expected at least one support example per episode (S >= 1); received "
         "an empty `support_x`."],
    )
    # Both depend on the check: ops on the labels alone (the number of ways
    # of a ProtoNet) must not run on an empty set first.
    with tf.control_dependencies([check]):
        return tf.identity(support_x), tf.identity(support_y)


def _check_label_kind(loss, support_y, batched: bool):
    task = loss_task(loss)
    lead = "[B, " if batched else "["
    name = type(loss).__name__ if not isinstance(loss, str) else loss
    if task == "classification" and not support_y.dtype.is_integer:
        raise ValueError(
            f"The compiled loss {name} is a classification loss (the learner is a "
            f"classifier): expected integer class labels `support_y` {lead}S] (and query "
            f"labels {lead}Q]); received "
            f"{support_y.dtype.name} labels of shape {_shape(support_y)}. Cast them to "
            "int (e.g. `y.astype('int32')`, dropping a trailing axis of size 1), or "
            "compile a regression loss for float targets."
        )
    if task == "regression" and support_y.dtype.is_integer:
        raise ValueError(
            f"The compiled loss {name} is a regression loss: expected float targets "
            f"`support_y` {lead}S, d]; received {support_y.dtype.name} labels of shape "
            f"{_shape(support_y)}. Compile a classification loss (e.g. "
            "SparseCategoricalCrossentropy) for class ids, or pass float targets."
        )


def model_input_shape(model) -> tuple | None:
    """The example shape a model declares (its `Input` without the batch axis), or `None`.

    `None` for models that declare none (subclassed, not built) or several inputs.

    Example:

    >>> import keras
    >>> model_input_shape(keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten()]))
    (28, 28, 1)
    """
    if model is None or not _keras_compat.is_functional(model):
        return None
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):  # a Sequential model that is not built yet
        return None
    if not inputs or len(inputs) != 1:
        return None
    return tuple(None if d is None else int(d) for d in inputs[0].shape[1:])


def check_input_shape(learner, support_x, lead: int):
    """Raises a `ValueError` when `support_x`'s example shape differs from the model's.

    Example:

    >>> import keras, keras_meta as km
    >>> net = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
    ...                         keras.layers.Dense(5)])
    >>> check_input_shape(km.MAML(net), tf.zeros((5, 8, 8, 1)), lead=0)
    Traceback (most recent call last):
    ...
    ValueError: The episodes' examples have the shape (8, 8, 1) but the learner's model takes ...
    """
    expected = model_input_shape(getattr(learner, "model", None))
    received = tuple(support_x.shape[lead + 1 :])
    if expected is None or support_x.shape.rank is None:
        return
    if len(expected) == len(received) and all(
        a is None or b is None or a == b for a, b in zip(expected, received)
    ):
        return
    raise ValueError(
        f"The episodes' examples have the shape {_dims(received)} but the learner's model "
        f"takes inputs of shape {_dims(expected)}. For images of another domain, map them "
        "to the model's shape with `keras_meta.data.match_images(episodes, "
        f"{_dims(expected)})` (km.evaluate does it by default) or "
        "`keras_meta.data.match_image_array(images, ...)`."
    )


def _dims(shape) -> str:
    return str(tuple(None if d is None else int(d) for d in shape))


def check_episode_inputs(learner, episodes, batched: bool = True):
    """`episodes` (an `Episode` or `EpisodeBatch`) with its inputs checked, see the module.

    Example:

    >>> import keras, numpy as np, keras_meta as km
    >>> from keras_meta.learners import unpack_episodes
    >>> learner = km.MAML(keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)]))
    >>> learner.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> x = {"support_x": np.zeros((1, 0, 2), "float32"),
    ...      "support_y": np.zeros((1, 0), "int32"), "query_x": np.zeros((1, 4, 2), "float32")}
    >>> check_episode_inputs(learner, unpack_episodes(x))
    Traceback (most recent call last):
    ...
    ValueError: Expected at least one support example per episode (S >= 1); ...
    """
    lead = 1 if batched else 0
    check_input_shape(learner, episodes.support_x, lead)
    _check_label_kind(getattr(learner, "_episode_loss_fn", None), episodes.support_y, batched)
    support_x, support_y = _check_support_size(episodes.support_x, episodes.support_y, lead)
    replaced = {
        "support_x": check_finite(support_x, "support_x"),
        "query_x": check_finite(episodes.query_x, "query_x"),
        "support_y": check_finite(support_y, "support_y"),
    }
    if episodes.query_y is not None:
        replaced["query_y"] = check_finite(episodes.query_y, "y (query_y)")
    return episodes._replace(**replaced)


def check_single_output(model: keras.Model, outputs):
    """Returns `outputs` if it is one tensor; a clear error for multi-output models.

    Example:

    >>> import keras
    >>> net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)], name="net")
    >>> check_single_output(net, (tf.zeros((1, 3)), tf.zeros((1, 1))))
    Traceback (most recent call last):
    ...
    ValueError: keras_meta learners wrap models with a single output tensor ...
    """
    if isinstance(outputs, (list, tuple, dict)) and len(outputs) > 1:
        kind = type(outputs).__name__
        raise ValueError(
            f"keras_meta learners wrap models with a single output tensor (logits or "
            f"regression outputs); the model {model.name!r} returns a {kind} of "
            f"{len(outputs)} outputs. Wrap a model that returns one tensor, e.g. "
            "`keras.Model(model.inputs, model.outputs[0])`."
        )
    return outputs


def check_wrapped_model(model: keras.Model) -> keras.Model:
    """Refuses a Functional model with several outputs at construction.

    Example:

    >>> import keras
    >>> inputs = keras.Input((2,))
    >>> net = keras.Model(inputs, [keras.layers.Dense(3)(inputs), keras.layers.Dense(1)(inputs)])
    >>> check_wrapped_model(net)
    Traceback (most recent call last):
    ...
    ValueError: keras_meta learners wrap models with a single output tensor ...
    """
    outputs = getattr(model, "_outputs_struct", None)
    if outputs is not None and model.built:
        check_single_output(model, outputs)
    return model
