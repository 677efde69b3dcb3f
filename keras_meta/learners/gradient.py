"""The inner-loop learners: `InnerLoopLearner` and `GradientLearner`.

MAML, first-order MAML, Meta-SGD, ANIL and Reptile adapt by running the
inner loop of `keras_meta.inner_loop` on the wrapped model's weights.
`InnerLoopLearner` holds what they share (inner steps and rate, the support
loss, per-step forward passes, `adapt`); `GradientLearner` adds what the
learners that are differentiated through their inner loop have (MAML, Meta-SGD,
ANIL): `first_order`, `adapt_layers` and a per-weight update rule. Reptile,
which never differentiates through its inner loop, extends `InnerLoopLearner`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

from keras_meta import _keras_compat
from keras_meta.adapted import adapted_model, resolve_batch_norm
from keras_meta.inner_loop import inner_loop
from keras_meta.learners import _precision
from keras_meta.learners._episodes import Episode
from keras_meta.learners.base import MetaLearner
from keras_meta.validation import check_bool, check_int, check_positive


class InnerLoopLearner(MetaLearner):
    """A meta-learner whose adaptation is a few gradient steps on the support loss.

    Args:
        model: the wrapped `keras.Model`.
        inner_learning_rate: step size of the inner loop.
        inner_steps: inner steps in `fit`.
        eval_inner_steps: inner steps in `evaluate`, `predict`, `adapt` and
            `export` (default: `inner_steps`).
        bn_mode: see `MetaLearner`.

    A subclass implements `run_inner_loop` (see `GradientLearner` and
    `Reptile`); `adapt_and_predict`, `adapt` and export follow from it.

    >>> import keras, keras_meta as km, tensorflow as tf
    >>> from keras_meta.inner_loop import inner_loop, sgd_update
    >>> class PlainSGD(km.InnerLoopLearner):
    ...     def run_inner_loop(self, episode, state, training, steps=None, on_step=None):
    ...         return inner_loop(
    ...             self.support_loss_fn(episode, training), self.model_params(), state,
    ...             self.inner_steps_for(training, steps), sgd_update(0.1), first_order=True)
    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> learner = PlainSGD(net, inner_steps=2)
    >>> learner.compile(optimizer="sgd", loss="mse")
    >>> history = learner.fit(km.data.sinusoid(seed=0).batch(4),
    ...                       steps_per_epoch=2, verbose=0)
    """

    def __init__(
        self,
        model,
        inner_learning_rate: float = 0.01,
        inner_steps: int = 1,
        eval_inner_steps: int | None = None,
        bn_mode: str = "transductive",
        **kwargs,
    ):
        super().__init__(model, bn_mode=bn_mode, **kwargs)
        self.inner_learning_rate = check_positive("inner_learning_rate", inner_learning_rate)
        self.inner_steps = check_int("inner_steps", inner_steps)
        eval_inner_steps = check_int("eval_inner_steps", eval_inner_steps, allow_none=True)
        self.eval_inner_steps = eval_inner_steps or inner_steps
        self._eval_steps_given = eval_inner_steps

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "inner_learning_rate": self.inner_learning_rate,
                "inner_steps": self.inner_steps,
                "eval_inner_steps": self._eval_steps_given,
            }
        )
        return config

    def inner_steps_for(self, training: bool, steps: int | None = None) -> int:
        """`steps` if given, else the inner steps of training or evaluation."""
        if steps is not None:
            return check_int("steps", steps)
        return self.inner_steps if training else self.eval_inner_steps

    def step_forward(self, params, state, x, training: bool, step: int):
        """`forward` at inner step `step` (0-based), with the loop's `state`.

        The support pass of step `k` and the query pass after `k + 1` steps
        run at `step=k`. Default: the same model at every step; learners
        with per-step weights (MAML++'s per-step BatchNorm) override it.
        """
        return self.forward(params, state, x, training)

    def inner_loss_scale(self) -> float | None:
        """The inner loop's loss scale: `INNER_LOSS_SCALE` (1024) when the
        wrapped model computes in float16 (`keras.mixed_precision`), else
        `None` (see `keras_meta.inner_loop.inner_loop`)."""
        return _precision.INNER_LOSS_SCALE if _precision.uses_float16(self.model) else None

    def support_loss_fn(self, episode: Episode, training: bool, batches=None):
        """The inner loop's `loss_fn(params, state, step) -> (loss, state)`.

        The support loss (plus the model's regularisation losses) of the
        model called through `step_forward`; with `batches` (int indices
        `[steps, batch_size]`), step `k` sees the support examples
        `batches[k]` only.
        """
        layer_training = self._layer_training(training)

        def loss_fn(params, state, step):
            x, y = episode.support_x, episode.support_y
            if batches is not None:
                x, y = tf.gather(x, batches[step]), tf.gather(y, batches[step])
            pred, state, reg = self.step_forward(params, state, x, layer_training, step)
            return self.inner_loss(y, pred) + reg, state

        return loss_fn

    def run_inner_loop(self, episode: Episode, state, training: bool, steps=None, on_step=None):
        """Runs the inner loop on the support set of `episode`.

        `on_step(step, params, state)` is called after each inner step (e.g.
        for per-step query losses).

        Returns `(fast_params, state, support_losses)`.
        """
        raise NotImplementedError

    def adapt_and_predict(self, episode, state, training, steps=None):
        steps = self.inner_steps_for(training, steps)
        params, state, _ = self.run_inner_loop(episode, state, training, steps)
        pred, state, _ = self.step_forward(
            params, state, episode.query_x, self._layer_training(training), steps - 1
        )
        return pred, state

    def meta_forward(self, x, training: bool = False):
        """The meta-learned model's predictions, with the weights of the last
        training step where they depend on the step (MAML++'s per-step BatchNorm)."""
        pred, _, _ = self.step_forward(
            self.model_params(), self.loop_state(), x, training, self.inner_steps - 1
        )
        return pred

    def model_weights(self, params, state, step: int):
        """The wrapped model's `(trainable, non_trainable)` values that
        reproduce `step_forward(params, state, ..., step)` in a plain copy of
        the model (used by `adapt`). Default: `(params, state)`.
        """
        return params, state

    # ------------------------------------------------------------------
    # Model generator.
    # ------------------------------------------------------------------
    def adapt(
        self, support_x, support_y, steps: int | None = None, batch_norm: str | None = None
    ) -> keras.Model:
        """Adapts to one task and returns a standalone `keras.Model`.

        The returned model has the wrapped model's architecture and the
        adapted weights; the learner is unchanged. `batch_norm` says how its
        BatchNorm layers normalise (see `keras_meta.adapted` and the table in
        docs/guide.md): `"transductive"` (each call's own input, as the
        evaluation normalises the query set; the default with
        `bn_mode="transductive"`), `"support"` (the support set's statistics
        at the adapted weights: a per-example model) or `"running"` (the
        moving statistics; the default with `bn_mode="running"`).

        Example:

        >>> adapted = learner.adapt(support_x, support_y)  # doctest: +SKIP
        >>> adapted.predict(new_x)                           # doctest: +SKIP
        >>> adapted.export("adapted_model")                  # doctest: +SKIP
        """
        batch_norm = resolve_batch_norm(self, batch_norm)
        steps = self.inner_steps_for(False, steps)
        self._require_loss()
        ep = self._unpack(
            {"support_x": support_x, "support_y": support_y, "query_x": support_x},
            batched=False,
        )
        state = self.loop_state()
        params, _, _ = self.run_inner_loop(ep, state, training=False, steps=steps)
        params, state = self.model_weights(params, state, steps - 1)
        return adapted_model(self, params, state, ep.support_x, batch_norm)


class GradientLearner(InnerLoopLearner):
    """An inner-loop learner differentiated through its inner loop.

    Args:
        model, inner_learning_rate, inner_steps, eval_inner_steps, bn_mode:
            see `InnerLoopLearner` (the inner loop is SGD with this rate
            unless `inner_update` says otherwise).
        first_order: drop the second-order terms of the meta-gradient.
        adapt_layers: the layers adapted in the inner loop: `None` (all), a
            list of layer names, or a predicate `layer -> bool` (not
            serialisable; prefer names). The others are shared across tasks
            and only meta-learned.

    An algorithm overrides `inner_update` (the update rule), `adapted_mask`
    (which weights adapt) or `episode_gradients` (the meta-gradient); e.g. an
    inner loop with a step size that halves at every step:

    >>> import keras, keras_meta as km, tensorflow as tf
    >>> class HalvingMAML(km.GradientLearner):
    ...     def inner_update(self, step, index, param, grad):
    ...         rate = tf.constant(self.inner_learning_rate / 2**step, param.dtype)
    ...         return param - rate * grad
    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> learner = HalvingMAML(net, inner_learning_rate=0.1, inner_steps=3)
    >>> learner.compile(optimizer="adam", loss="mse")
    >>> history = learner.fit(km.data.sinusoid(seed=0).batch(4),
    ...                       steps_per_epoch=2, verbose=0)
    """

    def __init__(
        self,
        model,
        inner_learning_rate: float = 0.01,
        inner_steps: int = 1,
        eval_inner_steps: int | None = None,
        first_order: bool = False,
        adapt_layers: Sequence[str] | Callable | None = None,
        bn_mode: str = "transductive",
        **kwargs,
    ):
        super().__init__(
            model,
            inner_learning_rate=inner_learning_rate,
            inner_steps=inner_steps,
            eval_inner_steps=eval_inner_steps,
            bn_mode=bn_mode,
            **kwargs,
        )
        self.first_order = check_bool("first_order", first_order)
        if isinstance(adapt_layers, str):
            adapt_layers = [adapt_layers]
        if adapt_layers is not None and not callable(adapt_layers):
            adapt_layers = list(adapt_layers)
            if not adapt_layers:
                raise ValueError("`adapt_layers` must name at least one layer.")
        self.adapt_layers = adapt_layers

    def _needs_second_derivatives(self) -> bool:
        return not self.first_order

    def get_config(self):
        config = super().get_config()
        if callable(self.adapt_layers):
            raise ValueError(
                "A learner whose `adapt_layers` is a predicate cannot be "
                "serialised; pass a list of layer names instead."
            )
        config.update({"first_order": self.first_order, "adapt_layers": self.adapt_layers})
        return config

    # ------------------------------------------------------------------
    # Which weights adapt, and how.
    # ------------------------------------------------------------------
    def adapted_mask(self) -> list[bool]:
        """One bool per trainable weight of the model: adapted in the inner loop."""
        variables = self.model.trainable_variables
        if self.adapt_layers is None:
            return [True] * len(variables)
        layers = [layer for layer in _keras_compat.nested_layers(self.model)]
        if callable(self.adapt_layers):
            chosen = [layer for layer in layers if self.adapt_layers(layer)]
        else:
            by_name = {layer.name: layer for layer in layers}
            unknown = [n for n in self.adapt_layers if n not in by_name]
            if unknown:
                raise ValueError(
                    f"`adapt_layers` names layers {unknown} that the model does "
                    f"not have; its layers are {sorted(by_name)}."
                )
            chosen = [by_name[n] for n in self.adapt_layers]
        ids = {id(v) for layer in chosen for v in layer.trainable_variables}
        mask = [id(v) in ids for v in variables]
        if not any(mask):
            raise ValueError(
                "`adapt_layers` selects no trainable weight of the model; "
                f"selected layers: {[layer.name for layer in chosen]}."
            )
        return mask

    def inner_update(self, step: int, index: int, param, grad):
        """The inner update of weight `index` at inner step `step`."""
        return param - tf.constant(self.inner_learning_rate, param.dtype) * grad

    def run_inner_loop(
        self,
        episode: Episode,
        state,
        training: bool,
        steps=None,
        first_order: bool | None = None,
        on_step=None,
    ):
        """Runs the inner loop on the support set (see `InnerLoopLearner`).

        `first_order` overrides the learner's setting (evaluation is always
        first order).

        Returns `(fast_params, state, support_losses)`.
        """
        if first_order is None:
            first_order = self.first_order
        return inner_loop(
            self.support_loss_fn(episode, training),
            self.model_params(),
            state,
            steps=self.inner_steps_for(training, steps),
            update_fn=self.inner_update,
            adapted=self.adapted_mask(),
            first_order=first_order or not training,
            on_step=on_step,
            loss_scale=self.inner_loss_scale(),
        )


def clone_with_weights(model: keras.Model, params, state) -> keras.Model:
    """A standalone copy of `model` with the given trainable/non-trainable values.

    The copy of a model with float16/bfloat16 outputs (mixed precision) ends
    in a float32 cast, as the learners cast the outputs before any loss.

    Example:

    >>> import keras
    >>> net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> copy = clone_with_weights(net, [tf.ones((2, 1)), tf.zeros((1,))], [])
    >>> copy.predict(tf.ones((1, 2)), verbose=0).tolist()
    [[2.0]]
    """
    try:
        clone = keras.models.clone_model(model)
    except Exception as e:
        raise ValueError(
            f"Could not copy the wrapped model {model.name!r} "
            f"({type(model).__name__}): a subclassed model must implement "
            f"`get_config()` so that it can be re-created. Error: {e}"
        ) from e
    if not clone.built and model.built:
        clone.build_from_config(model.get_build_config())
    if len(clone.trainable_variables) != len(params) or len(clone.non_trainable_variables) != len(
        state
    ):
        raise ValueError(
            f"The copy of {model.name!r} has a different set of weights than the "
            "original; make sure its get_config() re-creates the same layers."
        )
    for v, value in zip(clone.trainable_variables, params):
        v.assign(value)
    for v, value in zip(clone.non_trainable_variables, state):
        v.assign(value)
    return _float32_outputs(clone)


def _float32_outputs(model: keras.Model) -> keras.Model:
    """`model` followed by a float32 cast if it computes in float16/bfloat16."""
    if not set(_precision.LOW_PRECISION) & _precision.compute_dtypes(model):
        return model
    if _keras_compat.is_functional(model):
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    else:
        shape = (model.get_build_config() or {}).get("input_shape")
        if shape is None:
            return model
        inputs = keras.Input(tuple(shape)[1:])
    outputs = model(inputs)
    if outputs.dtype == "float32":
        return model
    cast = keras.layers.Activation("linear", dtype="float32", name="float32_outputs")
    return keras.Model(inputs, cast(outputs), name=model.name)
