"""The loop over the episodes of a batch, and the meta-gradient of one episode.

With `keras_meta/inner_loop.py`, this is where keras_meta uses TensorFlow's
own control flow and autodiff: `tf.GradientTape`, `tf.while_loop`,
`tf.TensorArray` and `tf.distribute` replica contexts. Another Keras backend
would be added by writing these two modules again (JAX: `jax.grad`,
`jax.lax.fori_loop`/`scan`); the learners only call the functions below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import tensorflow as tf

logger = logging.getLogger("keras_meta")

# Episodes of a meta-batch whose graphs may run at the same time in the
# episode loop (`tf.while_loop(parallel_iterations=...)`). Each episode's ops
# are small, so running a few at once keeps the cores busy; results do not
# change (gradients and state are still accumulated in episode order).
DEFAULT_PARALLEL_EPISODES = 4
# Under XLA, meta-batches up to this size are unrolled (see should_unroll).
MAX_UNROLLED_EPISODES = 8


def gradients(loss_fn: Callable, variables) -> tuple:
    """`(grads, *aux)` of `loss_fn() -> (loss, *aux)` for `variables`.

    Zeros stand for weights the loss does not use; TensorFlow's own
    `UnconnectedGradients.ZERO` fails on Keras variables (string dtype).

    Example:

    >>> v = tf.Variable(3.0)
    >>> grads, = gradients(lambda: (v * v,), [v])
    >>> float(grads[0])
    6.0
    """
    with tf.GradientTape() as tape:
        loss, *aux = loss_fn()
    grads = tape.gradient(loss, variables)
    grads = [
        tf.zeros(v.shape, v.dtype) if g is None else tf.convert_to_tensor(g)
        for v, g in zip(variables, grads)
    ]
    return (grads, *aux)


def should_unroll(jit_compile: bool, static_b: int | None) -> bool:
    """Whether the loop over episodes is unrolled (XLA with a small static B).

    XLA on CPU runs a while loop whose body holds convolution gradients
    (the inner loop) 10-30x slower than the same ops outside a loop, and
    compiling an unrolled meta-batch takes minutes past a few episodes
    (docs/performance.md). So with XLA a static B up to
    `MAX_UNROLLED_EPISODES` is unrolled.

    Example:

    >>> should_unroll(True, 4), should_unroll(False, 4), should_unroll(True, None)
    (True, False, False)
    """
    return bool(jit_compile) and static_b is not None and static_b <= MAX_UNROLLED_EPISODES


def warn_xla_while_loop(static_b: int | None) -> None:
    """Logs the cost of a `tf.while_loop` over episodes under XLA on CPU."""
    if tf.config.list_physical_devices("GPU"):
        return
    size = "of unknown size" if static_b is None else f"of {static_b} episodes"
    logger.warning(
        "jit_compile=True with a meta-batch %s: the episodes run in a "
        "tf.while_loop, which XLA on CPU executes 10-30x slower than "
        "without XLA when the loop differentiates through convolutions. "
        "Compile with jit_compile=False on CPU, or use a static meta-batch "
        "of at most %d episodes (`.batch(B, drop_remainder=True)`), which "
        "is unrolled.",
        size,
        MAX_UNROLLED_EPISODES,
    )


def loop_over_episodes(
    batch,
    fn: Callable,
    initial_state,
    grads_like=(),
    dtype="float32",
    parallel_episodes: int = DEFAULT_PARALLEL_EPISODES,
    unroll: bool = False,
):
    """Runs `fn` over the episodes of `batch` (an `EpisodeBatch`).

    `fn(episode, state, weight) -> (grads or [], loss, pred, state)` with
    `weight = 1/B`; the state (any nest of tensors) is carried from one
    episode to the next, without gradient. With `unroll` (a static B), a
    Python loop; otherwise a `tf.while_loop`, so that a step is one graph
    whatever B is and memory grows with one episode, not B.

    Returns `(summed_grads, losses [B], preds [B, ...], final_state)`.

    Example:

    >>> from keras_meta.learners import EpisodeBatch
    >>> batch = EpisodeBatch(tf.ones((3, 2, 1)), tf.zeros((3, 2), "int32"),
    ...                      tf.ones((3, 1, 1)), None)
    >>> def fn(episode, state, weight):
    ...     return [], tf.reduce_sum(episode.query_x), episode.query_x[:, 0], state + 1
    >>> _, losses, preds, state = loop_over_episodes(batch, fn, tf.constant(0.0))
    >>> losses.numpy().tolist(), float(state)
    ([1.0, 1.0, 1.0], 3.0)
    """
    static_b = batch.support_x.shape[0]
    b = tf.shape(batch.support_x)[0] if static_b is None else static_b
    weight = 1.0 / tf.cast(b, dtype)
    grads0 = [tf.zeros(v.shape, v.dtype) for v in grads_like]

    def step(i, grads, state):
        g, loss, pred, new_state = fn(batch.episode(i), state, weight)
        grads = [a + tf.cast(d, a.dtype) for a, d in zip(grads, g)]
        new_state = tf.nest.map_structure(
            lambda s, s0: tf.cast(tf.stop_gradient(s), s0.dtype), new_state, state
        )
        return grads, new_state, tf.cast(loss, dtype), tf.cast(pred, dtype)

    if unroll:
        grads, state, losses, preds = grads0, initial_state, [], []
        for i in range(static_b):
            grads, state, loss, pred = step(i, grads, state)
            losses.append(loss)
            preds.append(pred)
        return grads, tf.stack(losses), tf.stack(preds), state

    loss_ta = tf.TensorArray(dtype, size=b)
    pred_ta = tf.TensorArray(dtype, size=b)

    def body(i, grads, state, loss_ta, pred_ta):
        grads, state, loss, pred = step(i, grads, state)
        return i + 1, grads, state, loss_ta.write(i, loss), pred_ta.write(i, pred)

    _, grads, state, loss_ta, pred_ta = tf.while_loop(
        lambda i, *_: i < b,
        body,
        (tf.constant(0), grads0, initial_state, loss_ta, pred_ta),
        parallel_iterations=parallel_episodes,
    )
    return grads, loss_ta.stack(), pred_ta.stack(), state


def mean_over_replicas(state):
    """The mean over replicas of each replica's float state (a nest).

    Under tf.distribute each replica carries the state (BatchNorm moving
    statistics) through its own episodes. The state variables are mirrored
    without an aggregation, so assigning each replica's value would leave
    the copies out of sync (reads, saves and exports see the first
    replica's, which saw only its share of the episodes); their mean is
    assigned on every replica instead. Outside a multi-replica context the
    state is returned as is.

    Example:

    >>> float(mean_over_replicas([tf.constant(1.0)])[0])
    1.0
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return state
    return tf.nest.map_structure(
        lambda s: context.all_reduce(tf.distribute.ReduceOp.MEAN, s) if s.dtype.is_floating else s,
        state,
    )
