"""Regression task families: MAML's sinusoids and Bayesian linear regression.

Episodes have the same structure as classification episodes, with float32 targets:
`({"support_x": [S, d_in], "support_y": [S, d_out], "query_x": [Q, d_in]}, query_y [Q,
d_out])`.
"""

import math

import tensorflow as tf

from keras_meta.data import _seeds
from keras_meta.data._config import attach_config
from keras_meta.validation import check_int, check_number, check_positive, check_range


def _episode(support_x, support_y, query_x, query_y):
    return (
        {"support_x": support_x, "support_y": support_y, "query_x": query_x},
        query_y,
    )


def sinusoid(
    shots: int = 10,
    queries: int = 10,
    seed: int | None = None,
    num_episodes: int | None = None,
    amplitude_range: tuple[float, float] = (0.1, 5.0),
    phase_range: tuple[float, float] = (0.0, math.pi),
    input_range: tuple[float, float] = (-5.0, 5.0),
) -> tf.data.Dataset:
    """MAML's sinusoid regression family (Finn et al., 2017).

    Each episode is one function `y = A * sin(x - phase)` with `A ~ U(amplitude_range)`
    and `phase ~ U(phase_range)`; support and query inputs are drawn independently from
    `U(input_range)`. Episode `i` of a seeded dataset depends only on `(seed, i)`.

    Args:
        shots: number of support points `K`.
        queries: number of query points.
        seed: integer seed; the same seed gives the same episodes. `None` draws fresh
            episodes on every iteration (or one fixed random set when `num_episodes` is
            given).
        num_episodes: `None` for an infinite dataset, or the size of a finite fixed set.
        amplitude_range: `(low, high)` of the uniform amplitude.
        phase_range: `(low, high)` of the uniform phase.
        input_range: `(low, high)` of the uniform inputs.

    Returns:
        A `tf.data.Dataset` of single episodes
        `({"support_x": [K, 1], "support_y": [K, 1], "query_x": [Q, 1]}, query_y [Q,
        1])`, all float32. The dataset's `episode_config` attribute records the
        arguments.

    Example:

    >>> import keras_meta as km
    >>> ds = km.data.sinusoid(shots=5, queries=10, seed=0).batch(4)
    >>> x, y = next(iter(ds))
    >>> tuple(x["support_x"].shape), tuple(y.shape)
    ((4, 5, 1), (4, 10, 1))
    """
    shots = check_int("shots", shots)
    queries = check_int("queries", queries)
    seed = _seeds.check_seed(seed)
    num_episodes = _seeds.check_num_episodes(num_episodes)
    a_low, a_high = check_range("amplitude_range", amplitude_range)
    p_low, p_high = check_range("phase_range", phase_range)
    x_low, x_high = check_range("input_range", input_range)

    def make_episode(key):
        params_key, x_key = tf.unstack(_seeds.split_key(key, 2))
        u = tf.random.stateless_uniform([2], params_key, dtype=tf.float32)
        amplitude = a_low + (a_high - a_low) * u[0]
        phase = p_low + (p_high - p_low) * u[1]
        inputs = tf.random.stateless_uniform(
            [shots + queries, 1], x_key, minval=x_low, maxval=x_high, dtype=tf.float32
        )
        targets = amplitude * tf.sin(inputs - phase)
        return _episode(inputs[:shots], targets[:shots], inputs[shots:], targets[shots:])

    keys, used_seed = _seeds.episode_keys(seed, num_episodes)
    dataset = keys.map(make_episode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return attach_config(
        dataset,
        {
            "family": "sinusoid",
            "shots": shots,
            "queries": queries,
            "seed": used_seed,
            "num_episodes": num_episodes,
            "amplitude_range": (a_low, a_high),
            "phase_range": (p_low, p_high),
            "input_range": (x_low, x_high),
        },
    )


def linear_regression(
    dim: int = 1,
    shots: int = 10,
    queries: int = 10,
    noise: float = 0.0,
    weight_scale: float = 1.0,
    seed: int | None = None,
    num_episodes: int | None = None,
) -> tf.data.Dataset:
    """Bayesian linear regression tasks: a family with a closed-form optimal learner.

    Each episode draws weights `w ~ N(0, weight_scale^2 I_dim)` and inputs `x ~ N(0,
    I_dim)`, and sets `y = x . w + noise * eps` with `eps ~ N(0, 1)` (no bias term).
    Given the support set, the query predictor with the lowest expected squared error is
    the posterior mean, which is ridge regression with penalty `(noise /
    weight_scale)^2` (the minimum-norm least-squares solution when `noise == 0`);
    `linear_regression_optimum()` computes it, as a baseline for a learner.

    Args:
        dim: input dimension.
        shots: number of support points.
        queries: number of query points.
        noise: standard deviation of the observation noise (support and query).
        weight_scale: standard deviation of each weight.
        seed: integer seed, or `None` (see `sinusoid`).
        num_episodes: `None` for an infinite dataset, or the size of a finite fixed set.

    Returns:
        A `tf.data.Dataset` of single episodes
        `({"support_x": [S, dim], "support_y": [S, 1], "query_x": [Q, dim]}, query_y [Q,
        1])`, float32, with an `episode_config` attribute.

    Example:

    >>> import keras_meta as km
    >>> ds = km.data.linear_regression(dim=3, shots=8, queries=4, noise=0.1, seed=0)
    >>> x, y = next(iter(ds))
    >>> pred = km.data.linear_regression_optimum(
    ...     x["support_x"], x["support_y"], x["query_x"], noise=0.1)
    >>> tuple(pred.shape)
    (4, 1)
    """
    dim = check_int("dim", dim)
    shots = check_int("shots", shots)
    queries = check_int("queries", queries)
    noise = check_number("noise", noise, minimum=0.0)
    weight_scale = check_positive("weight_scale", weight_scale)
    seed = _seeds.check_seed(seed)
    num_episodes = _seeds.check_num_episodes(num_episodes)

    def make_episode(key):
        w_key, x_key, e_key = tf.unstack(_seeds.split_key(key, 3))
        weights = weight_scale * tf.random.stateless_normal([dim, 1], w_key, dtype=tf.float32)
        inputs = tf.random.stateless_normal([shots + queries, dim], x_key, dtype=tf.float32)
        eps = tf.random.stateless_normal([shots + queries, 1], e_key, dtype=tf.float32)
        targets = tf.matmul(inputs, weights) + noise * eps
        return _episode(inputs[:shots], targets[:shots], inputs[shots:], targets[shots:])

    keys, used_seed = _seeds.episode_keys(seed, num_episodes)
    dataset = keys.map(make_episode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return attach_config(
        dataset,
        {
            "family": "linear_regression",
            "dim": dim,
            "shots": shots,
            "queries": queries,
            "noise": noise,
            "weight_scale": weight_scale,
            "seed": used_seed,
            "num_episodes": num_episodes,
        },
    )


def linear_regression_optimum(
    support_x, support_y, query_x, noise: float = 0.0, weight_scale: float = 1.0
) -> tf.Tensor:
    """Bayes-optimal query predictions for `linear_regression` episodes.

    Computes the posterior mean of the weights, `(X^T X + lam I)^-1 X^T y` with
    `lam = (noise / weight_scale)^2` (the minimum-norm least-squares solution `pinv(X)
    y` when `noise == 0`), and applies it to `query_x`. Works on single episodes or
    batches (leading dims).

    Args:
        support_x: `[..., S, dim]` support inputs.
        support_y: `[..., S, 1]` support targets.
        query_x: `[..., Q, dim]` query inputs.
        noise: the `noise` the episodes were generated with.
        weight_scale: the `weight_scale` the episodes were generated with.

    Returns:
        float32 `[..., Q, 1]` predictions.

    Example:

    >>> import numpy as np, keras_meta as km
    >>> sx = np.eye(2, dtype="float32"); sy = np.array([[1.0], [2.0]], "float32")
    >>> km.data.linear_regression_optimum(sx, sy, sx).numpy().ravel().tolist()
    [1.0, 2.0]
    """
    sx = tf.cast(support_x, tf.float64)
    sy = tf.cast(support_y, tf.float64)
    qx = tf.cast(query_x, tf.float64)
    if noise == 0:
        weights = tf.matmul(tf.linalg.pinv(sx), sy)
    else:
        lam = (float(noise) / float(weight_scale)) ** 2
        gram = tf.matmul(sx, sx, transpose_a=True)
        eye = tf.eye(tf.shape(gram)[-1], dtype=tf.float64)
        weights = tf.linalg.solve(gram + lam * eye, tf.matmul(sx, sy, transpose_a=True))
    return tf.cast(tf.matmul(qx, weights), tf.float32)
