"""Update rules for the inner loop, as explicit functions of their state.

An `UpdateRule` is a pair of pure functions, as in optax:

- `init(params) -> state`: the optimizer state for a list of fast weights;
- `update(grads, state, params) -> (updates, state)`: the step to add to
  `params` (`params + updates`) and the next state.

Nothing is kept between calls: the state travels with the inner loop, so
a rule runs on fast weights (tensors, not variables), starts afresh for
every episode, and can be traced and differentiated. The step count is a
Python int, because the inner loop is unrolled; Adam's bias correction is
then computed in float64 on the host, as Keras computes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import tensorflow as tf

from keras_meta.validation import check_number, check_positive


class UpdateRule(NamedTuple):
    """`init(params) -> state` and `update(grads, state, params) -> (updates, state)`."""

    init: Callable
    update: Callable


def sgd(learning_rate: float) -> UpdateRule:
    """Plain gradient descent: `updates = -learning_rate * grads`; no state.

    Example:

    >>> rule = sgd(0.5)
    >>> updates, _ = rule.update([tf.constant(2.0)], rule.init([tf.constant(1.0)]), None)
    >>> float(updates[0])
    -1.0
    """
    learning_rate = check_positive("learning_rate", learning_rate)

    def init(params):
        return ()

    def update(grads, state, params=None):
        return [-tf.constant(learning_rate, g.dtype) * g for g in grads], state

    return UpdateRule(init, update)


class AdamState(NamedTuple):
    """Adam's state: the steps taken (a Python int) and the two moments."""

    count: int
    mu: list
    nu: list


def adam(
    learning_rate: float,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
) -> UpdateRule:
    """Adam in Keras's formulation (`keras.optimizers.Adam`), fresh moments.

    Example:

    >>> rule = adam(0.1)
    >>> state = rule.init([tf.constant(1.0)])
    >>> updates, state = rule.update([tf.constant(4.0)], state, None)
    >>> round(float(updates[0]), 4), state.count
    (-0.1, 1)
    """
    learning_rate = check_positive("learning_rate", learning_rate)
    beta_1 = check_number("beta_1", beta_1, minimum=0.0, exclusive_maximum=1.0)
    beta_2 = check_number("beta_2", beta_2, minimum=0.0, exclusive_maximum=1.0)
    epsilon = check_positive("epsilon", epsilon)

    def init(params):
        zeros = [tf.zeros_like(p) for p in params]
        return AdamState(0, zeros, list(zeros))

    def update(grads, state, params=None):
        t = state.count + 1
        alpha = learning_rate * math.sqrt(1.0 - beta_2**t) / (1.0 - beta_1**t)
        mu = [m + (g - m) * (1.0 - beta_1) for m, g in zip(state.mu, grads)]
        nu = [v + (tf.square(g) - v) * (1.0 - beta_2) for v, g in zip(state.nu, grads)]
        updates = [
            -tf.constant(alpha, m.dtype) * m / (tf.sqrt(v) + tf.constant(epsilon, v.dtype))
            for m, v in zip(mu, nu)
        ]
        return updates, AdamState(t, mu, nu)

    return UpdateRule(init, update)
