"""The inner update rules against Keras's own optimizers on a hand case."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_meta.inner_loop import inner_loop
from keras_meta.inner_optimizers import adam, sgd


def quadratic_loss(params, state, step):
    w, b = params
    return tf.reduce_sum((w - tf.constant([1.0, -2.0])) ** 2) + 3.0 * b**2 + w[0] * b, state


def keras_steps(optimizer, steps):
    w = keras.Variable(np.array([0.5, 0.5], "float32"))
    b = keras.Variable(np.float32(1.0))
    for step in range(steps):
        with tf.GradientTape() as tape:
            loss, _ = quadratic_loss([w, b], [], step)
        optimizer.apply_gradients(zip(tape.gradient(loss, [w, b]), [w, b]))
    return [w.numpy(), b.numpy()]


@pytest.mark.parametrize(
    "rule, optimizer",
    [
        (sgd(0.1), keras.optimizers.SGD(learning_rate=0.1)),
        (adam(0.05), keras.optimizers.Adam(learning_rate=0.05)),
        (
            adam(0.05, beta_1=0.0, beta_2=0.99, epsilon=1e-6),
            keras.optimizers.Adam(learning_rate=0.05, beta_1=0.0, beta_2=0.99, epsilon=1e-6),
        ),
    ],
)
def test_rule_in_the_inner_loop_matches_the_keras_optimizer(rule, optimizer):
    params = [tf.constant([0.5, 0.5]), tf.constant(1.0)]
    got, _, _ = inner_loop(quadratic_loss, params, [], steps=4, update_fn=rule, first_order=True)
    expected = keras_steps(optimizer, 4)
    # Keras computes Adam's bias correction in float32, the rule in float64
    # (as the Python-float learning rate): a few float32 ulps apart. A step
    # is about 0.05, so a wrong formula would be off by orders more.
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-5, atol=2e-6)
    # The comparison has power: the weights moved.
    assert abs(float(got[1]) - 1.0) > 1e-2


def test_adam_state_is_explicit_and_starts_afresh():
    rule = adam(0.1)
    state = rule.init([tf.zeros(2)])
    assert state.count == 0
    assert [m.numpy().tolist() for m in state.mu] == [[0.0, 0.0]]
    _, state = rule.update([tf.constant([1.0, -1.0])], state, None)
    assert state.count == 1
    np.testing.assert_allclose(state.mu[0].numpy(), [0.1, -0.1], rtol=1e-6)  # (1 - 0.9) * g
    np.testing.assert_allclose(state.nu[0].numpy(), [0.001, 0.001], rtol=1e-5)  # (1 - 0.999) g²


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="`learning_rate` must be .* > 0"):
        sgd(0.0)
    with pytest.raises(ValueError, match="`beta_1` must be"):
        adam(0.1, beta_1=1.0)
