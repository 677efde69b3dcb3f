"""The model that `learner.adapt(...)` returns, and how its BatchNorm normalises.

A learner's evaluation normalises BatchNorm according to its `bn_mode`; a
plain copy of the wrapped model with the adapted weights would normalise with
the moving statistics of meta-training instead, which MAML-style training
never uses, and predict far worse than the evaluation says. `adapt(...,
batch_norm=...)` picks what the returned model does:

- `"transductive"` (default when `bn_mode="transductive"`): every call
  normalises with its own input (layers with a `training` argument run in
  training mode, without updating any variable), as the learner's
  transductive evaluation does for the query set; `predict` takes its whole
  input as one batch, so `adapted.predict(query_x)` is exactly the learner's
  prediction.
- `"support"`: BatchNorm's moving statistics are replaced by the support
  set's batch statistics, computed at the adapted weights in one
  training-mode pass (so every layer's statistics are those of its inputs as
  normalised by the layers before it). The result is an ordinary per-example
  inference model; on the support set itself it reproduces exactly what the
  learner computes for a query batch equal to it, and on other inputs it is
  a few points less accurate than the transductive evaluation when the
  support set is small (docs/guide.md has the measurement).
- `"running"` (default when `bn_mode="running"`): the moving statistics
  (Keras inference semantics), exactly the learner's running-mode evaluation.

In every case the adaptation itself (inner loop, head fitting) runs as the
learner's evaluation runs it, under the learner's `bn_mode`.

Adapting many tasks creates many models; their `predict` shares one traced
function per learner and architecture (the weights are arguments), so a loop
over tasks traces once and stays quiet.
"""

from __future__ import annotations

import weakref

import keras
import tensorflow as tf

from keras_meta import _keras_compat
from keras_meta._serialization import from_config_with_model
from keras_meta.validation import check_choice

BATCH_NORM_CHOICES = ("support", "transductive", "running")


def default_batch_norm(bn_mode: str) -> str:
    """The `batch_norm` of `adapt` that reproduces the evaluation in `bn_mode`.

    Example:

    >>> default_batch_norm("transductive"), default_batch_norm("running")
    ('transductive', 'running')
    """
    return "running" if bn_mode == "running" else "transductive"


def resolve_batch_norm(learner, batch_norm: str | None) -> str:
    """`batch_norm` checked, or the learner's default when `None`.

    Example:

    >>> import keras, keras_meta as km
    >>> net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    >>> resolve_batch_norm(km.MAML(net, bn_mode="running"), None)
    'running'
    """
    if batch_norm is None:
        return default_batch_norm(learner.bn_mode)
    return check_choice("batch_norm", batch_norm, BATCH_NORM_CHOICES)


def _moving_statistics(model: keras.Model):
    """BatchNorm layers of `model` and the indices of their moving statistics."""
    index = {id(v): i for i, v in enumerate(model.non_trainable_variables)}
    layers, positions = [], set()
    for layer in _keras_compat.nested_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layers.append(layer)
            for v in (layer.moving_mean, layer.moving_variance):
                if id(v) in index:
                    positions.add(index[id(v)])
    return layers, positions


def support_statistics(learner, params, state, support_x):
    """`state` with each BatchNorm's moving statistics set to the support batch's.

    One training-mode pass of the wrapped model with the weights `params`
    over `support_x`, with every BatchNorm's momentum at 0 for the pass, so
    that the "moving" statistics it writes are the batch statistics it
    normalised with; other state (e.g. a dropout seed) is left as it was.

    Example:

    >>> import keras, numpy as np, keras_meta as km
    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.BatchNormalization()])
    >>> learner = km.MAML(net)
    >>> state = support_statistics(learner, learner.model_params(), learner.model_state(),
    ...                            np.array([[1.0], [3.0]], "float32"))
    >>> [float(s[0]) for s in state]  # mean, variance
    [2.0, 1.0]
    """
    layers, positions = _moving_statistics(learner.model)
    if not layers:
        return list(state)
    momenta = [layer.momentum for layer in layers]
    try:
        for layer in layers:
            layer.momentum = 0.0
        _, new_state, _ = learner.forward(list(params), list(state), support_x, True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return [
        tf.cast(new, old.dtype) if i in positions else old
        for i, (old, new) in enumerate(zip(state, new_state))
    ]


@keras.saving.register_keras_serializable(package="keras_meta")
class TransductiveModel(keras.Model):
    """Wraps a model so that every call normalises with its own batch.

    The wrapped model runs with `training=True` (BatchNorm uses the batch
    statistics; dropout is active), and nothing it would update (moving
    statistics) is written. This is what `adapt(..., batch_norm=
    "transductive")` returns. Its predictions depend on the whole input, so
    `predict` takes an array input as one batch unless `batch_size` is
    given; serve it a whole query set per call.

    Example:

    >>> import keras, numpy as np
    >>> net = keras.Sequential([keras.Input((2,)), keras.layers.BatchNormalization()])
    >>> model = TransductiveModel(net)
    >>> out = model(np.array([[1.0, 2.0], [3.0, 2.0]], "float32"))
    >>> np.round(np.asarray(out), 2).tolist()
    [[-1.0, 0.0], [1.0, 0.0]]
    >>> net.layers[0].moving_mean.numpy().tolist()
    [0.0, 0.0]
    """

    def __init__(self, model: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.model = model

    def call(self, inputs, training=None):
        if _keras_compat.in_stateless_scope():
            # A caller's stateless scope already collects (and drops) updates.
            return self.model(inputs, training=True)
        with keras.StatelessScope():
            return self.model(inputs, training=True)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        if batch_size is None and steps is None and hasattr(x, "shape") and len(x.shape):
            # Keras would split the input into batches of 32, each normalised
            # with its own statistics.
            batch_size = max(int(x.shape[0]), 1)
        return super().predict(
            x, batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks
        )

    def get_config(self):
        config = super().get_config()
        config["model"] = keras.saving.serialize_keras_object(self.model)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return from_config_with_model(cls, config, custom_objects)


# learner -> {(training, variable signature): (template model, traced step)}
_PREDICT_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _signature(model):
    return tuple((tuple(v.shape), str(v.dtype)) for v in model.variables)


def _shared_step(learner, model: keras.Model, training: bool):
    """One traced `(trainable, non_trainable, x) -> outputs` per architecture."""
    cache = _PREDICT_CACHE.setdefault(learner, {})
    key = (training, type(model).__name__, _signature(model))
    if key not in cache:
        template = model

        @tf.function(reduce_retracing=True)
        def step(trainable, non_trainable, x):
            mapping = list(zip(template.trainable_variables, trainable)) + list(
                zip(template.non_trainable_variables, non_trainable)
            )
            with keras.StatelessScope(state_mapping=mapping):
                return template(x, training=training)

        cache[key] = step
    return cache[key]


def _install_shared_predict(learner, model: keras.Model, inner: keras.Model, training: bool):
    """Makes `model.predict` run the shared traced step with `inner`'s weights."""
    step = _shared_step(learner, inner, training)

    def predict_function(data):
        outputs = []
        for batch in data:
            x, _, _ = keras.utils.unpack_x_y_sample_weight(batch)
            trainable = [tf.convert_to_tensor(v) for v in inner.trainable_variables]
            non_trainable = [tf.convert_to_tensor(v) for v in inner.non_trainable_variables]
            outputs.append(step(trainable, non_trainable, x))
        return outputs[0] if len(outputs) == 1 else tf.concat(outputs, axis=0)

    # Keras builds `predict_function` only while it is None; compiling the
    # model again resets it to Keras's own.
    model.predict_function = predict_function


def finish_adapted_model(learner, model: keras.Model, batch_norm: str) -> keras.Model:
    """Wraps `model` for `batch_norm="transductive"`; gives it the shared predict.

    Example:

    >>> import keras, keras_meta as km
    >>> net = keras.Sequential([keras.Input((2,)), keras.layers.BatchNormalization()])
    >>> learner = km.MAML(net)
    >>> copy = keras.models.clone_model(net)
    >>> type(finish_adapted_model(learner, copy, "transductive")).__name__
    'TransductiveModel'
    """
    inner = model
    spec = learner._episode_spec or {}
    symbolic = None
    if "input_shape" in spec:
        symbolic = keras.KerasTensor((None, *spec["input_shape"]), spec.get("input_dtype"))
    if symbolic is not None and not _keras_compat.is_functional(inner):
        # A subclassed model must have been called to export; its predict
        # (the shared step) never calls it, so call it once symbolically.
        inner(symbolic)
    # Without BatchNorm there is nothing to normalise: the plain model (with
    # Dropout off, not a stochastic one) for every choice.
    transductive = batch_norm == "transductive" and bool(_moving_statistics(inner)[0])
    if transductive:
        model = TransductiveModel(inner, name=f"{inner.name}_transductive")
        if symbolic is not None:
            model(symbolic)
    _install_shared_predict(learner, model, inner, training=transductive)
    return model


def adapted_model(learner, params, state, support_x, batch_norm: str) -> keras.Model:
    """A copy of the wrapped model with `params`/`state`, normalising per `batch_norm`.

    Example:

    >>> import keras, numpy as np, keras_meta as km
    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.BatchNormalization()])
    >>> learner = km.MAML(net)
    >>> x = np.array([[1.0], [3.0]], "float32")
    >>> model = adapted_model(learner, learner.model_params(), learner.model_state(), x,
    ...                       "support")
    >>> model.layers[0].moving_mean.numpy().tolist()
    [2.0]
    """
    from keras_meta.learners.gradient import clone_with_weights

    if batch_norm == "support":
        state = support_statistics(learner, params, state, support_x)
    clone = clone_with_weights(learner.model, params, state)
    return finish_adapted_model(learner, clone, batch_norm)


def adapted_embedding(learner, params, state, support_x, batch_norm: str) -> keras.Model:
    """The embedding copy of an embedding learner's adapted model (no wrapping).

    Example:

    >>> import keras, numpy as np, keras_meta as km
    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.BatchNormalization()])
    >>> learner = km.ProtoNet(net)
    >>> x = np.array([[1.0], [3.0]], "float32")
    >>> copy = adapted_embedding(learner, learner.model_params(), learner.model_state(), x,
    ...                          "running")
    >>> copy.layers[0].moving_mean.numpy().tolist()
    [0.0]
    """
    from keras_meta.learners.gradient import clone_with_weights

    if batch_norm == "support":
        state = support_statistics(learner, params, state, support_x)
    return clone_with_weights(learner.model, params, state)
