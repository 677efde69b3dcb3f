"""The inner loop, written once for every gradient-based learner.

Fast weights are plain tensors. Each step runs the wrapped model through
`keras.Model.stateless_call` with those tensors, takes the gradient of the
support loss with a `tf.GradientTape` and applies an update rule. When this
runs inside an outer tape (meta-training), the outer tape records the inner
gradient computation, so the meta-gradient flows through the adaptation
(second order) unless `first_order=True` stops it.

Under a mixed-precision policy the fast weights stay float32 (the model
casts them to its compute dtype as it reads them) and the support loss is
float32; with `loss_scale` the loss is multiplied before differentiation and
the gradients divided after, in float32, so that float16 gradients inside
the model do not underflow to zero.

With `keras_meta/learners/_episode_loop.py`, one of the two modules written
with TensorFlow's autodiff (`tf.GradientTape`): another Keras backend would
rewrite these two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from keras_meta.inner_optimizers import UpdateRule

LossFn = Callable[[list, list, int], tuple]
UpdateFn = Callable[[int, int, tf.Tensor, tf.Tensor], tf.Tensor]


def sgd_update(learning_rate) -> UpdateFn:
    """The plain inner update `p - learning_rate * g`.

    Example:

    >>> update = sgd_update(0.5)
    >>> float(update(0, 0, tf.constant(1.0), tf.constant(2.0)))
    0.0
    """

    def update(step, index, param, grad):
        return param - tf.convert_to_tensor(learning_rate, param.dtype) * grad

    return update


def inner_loop(
    loss_fn: LossFn,
    params: Sequence[tf.Tensor],
    state: Sequence[tf.Tensor],
    steps: int,
    update_fn: UpdateFn | UpdateRule,
    adapted: Sequence[bool] | None = None,
    first_order: bool = False,
    on_step: Callable[[int, list, list], None] | None = None,
    loss_scale: float | None = None,
) -> tuple[list, list, list]:
    """Runs `steps` gradient steps on the support loss.

    Args:
        loss_fn: `loss_fn(params, state, step) -> (loss, new_state)`; the
            support loss of the model called with the fast weights `params`
            and non-trainable `state` (e.g. BatchNorm statistics).
        params: the initial fast weights, one tensor per trainable variable
            of the wrapped model.
        state: the initial non-trainable state (any nest of tensors).
        steps: number of inner steps (a Python int: the loop is unrolled so
            that second-order gradients and XLA see a static graph).
        update_fn: `update_fn(step, index, param, grad) -> new_param`, or
            an `UpdateRule` of `keras_meta.inner_optimizers` (an update with
            a state, such as Adam's moments, fresh for this call).
        adapted: one bool per param; `False` keeps the param fixed in the
            inner loop (ANIL, layer selection). Default: all adapted.
        first_order: stop the gradient through the inner gradients.
        on_step: called as `on_step(step, params, state)` after each step
            (e.g. to add per-step query losses, as in MAML++).
        loss_scale: a factor (a number or a scalar tensor) the support loss
            is multiplied by before differentiation and the gradients are
            divided by after: loss scaling for float16 compute
            (`keras.mixed_precision`). Default: none.

    Returns:
        `(params, state, losses)`: the adapted fast weights, the final state
        and the support loss before each step.

    Example:

    >>> def loss_fn(params, state, step):
    ...     return tf.reduce_sum(params[0] ** 2), state
    >>> params, _, losses = inner_loop(
    ...     loss_fn, [tf.constant(1.0)], [], steps=1, update_fn=sgd_update(0.25))
    >>> float(params[0])  # 1 - 0.25 * 2
    0.5
    """
    params = list(params)
    if adapted is None:
        adapted = [True] * len(params)
    if len(adapted) != len(params):
        raise ValueError(f"`adapted` has {len(adapted)} entries for {len(params)} params.")
    indices = [i for i, a in enumerate(adapted) if a]
    rule = update_fn if isinstance(update_fn, UpdateRule) else None
    if rule is not None:
        rule_state = rule.init([params[i] for i in indices])
    losses = []
    for step in range(steps):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            for i in indices:
                tape.watch(params[i])
            loss, state = loss_fn(params, state, step)
            scaled = loss if loss_scale is None else loss * tf.cast(loss_scale, loss.dtype)
        grads = tape.gradient(
            scaled,
            [params[i] for i in indices],
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        if loss_scale is not None:
            grads = [g / tf.cast(loss_scale, g.dtype) for g in grads]
        if first_order:
            grads = [tf.stop_gradient(g) for g in grads]
        if rule is not None:
            updates, rule_state = rule.update(grads, rule_state, [params[i] for i in indices])
            for i, u in zip(indices, updates):
                params[i] = params[i] + u
        else:
            for i, g in zip(indices, grads):
                params[i] = update_fn(step, i, params[i], g)
        state = tf.nest.map_structure(tf.stop_gradient, state)
        losses.append(loss)
        if on_step is not None:
            on_step(step, params, state)
    return params, state, losses
