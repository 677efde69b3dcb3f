"""A synthetic learning-to-rank task family: hidden scoring functions and graded items.

Episodes have the structure of regression episodes, with relevance grades as float32
targets: `({"support_x": [S, dim], "support_y": [S, 1], "query_x": [Q, dim]}, query_y
[Q, 1])`. Train on them with the losses and the metric of `keras_meta.ranking`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import tensorflow as tf

from keras_meta.data import _seeds
from keras_meta.data._config import attach_config, describe_callable
from keras_meta.data.transforms import _transform_dataset
from keras_meta.validation import check_callable, check_int, check_number

# Items per task on which a nonlinear scorer's mean and spread are measured.
_REFERENCE_ITEMS = 1024


def _grade_thresholds(grades):
    """The standard normal quantiles at `1/grades, ..., (grades-1)/grades`."""
    return [NormalDist().inv_cdf(k / grades) for k in range(1, grades)]


def ranking(
    dim: int = 8,
    shots: int = 20,
    queries: int = 20,
    grades: int = 5,
    hidden: int = 0,
    noise: float = 0.0,
    seed: int | None = None,
    num_episodes: int | None = None,
    transform: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> tf.data.Dataset:
    """Ranking tasks: each episode is a hidden scoring function over item features.

    An episode draws `shots + queries` items with features `x ~ N(0, I_dim)` and one
    scoring function `s`, standardised so that `s(x)` has mean 0 and variance 1 over the
    items of the task:

    * `hidden=0` (default): linear, `s(x) = x . w / |w|` with `w ~ N(0, I_dim)`; `s(x)`
      is then exactly `N(0, 1)`.
    * `hidden=h > 0`: a random one-hidden-layer network, `u(x) = v . tanh(W^T x /
      sqrt(dim) + b)` with `W [dim, h]`, `b [h]` and `v [h]` all `N(0, 1)`, and `s(x) =
      (u(x) - m) / sd`, where `m` and `sd` are the mean and standard deviation of `u`
      over 1024 reference items of the task (drawn with the task, not part of the
      episode).

    An item's relevance grade is the number of the thresholds `Phi^-1(k / grades)`, `k
    = 1 .. grades-1` (standard normal quantiles), that `s(x) + noise * eps` exceeds,
    with `eps ~ N(0, 1)` per item: a grade in `0 .. grades-1`, each grade having
    probability `1 / grades` for a linear scorer without noise. `noise > 0` makes the
    judgements noisy. The support set holds `shots` items with their grades; the query
    set `queries` other items, whose grades the learner ranks. Episode `i` of a seeded
    dataset depends only on `(seed, i)`.

    Args:
        dim: number of item features.
        shots: number of support items.
        queries: number of query items (the list that is ranked).
        grades: number of relevance grades, >= 2.
        hidden: `0` for linear scorers, or the hidden width of random nonlinear ones.
        noise: standard deviation of the judgement noise added to the standardised score
            before grading.
        seed: integer seed; the same seed gives the same episodes. `None` draws fresh
            episodes on every iteration (or one fixed random set when `num_episodes` is
            given).
        num_episodes: `None` for an infinite dataset, or the size of a finite fixed set.
        transform: optional noise on the item features (see
            `keras_meta.data.transforms`), e.g. `GaussianNoise(0.1)`: it gets the
            `[S + Q, dim]` features and, if it takes a `seed`, a key derived from `(seed,
            i)`. The grades are those of the clean features.

    Returns:
        A `tf.data.Dataset` of single episodes `({"support_x": [S, dim], "support_y":
        [S, 1], "query_x": [Q, dim]}, query_y [Q, 1])`, all float32, grades as
        `0.0 .. grades-1`. Its `episode_config` attribute records the arguments.

    Example:

    >>> import keras_meta as km
    >>> ds = km.data.ranking(dim=4, shots=10, queries=6, grades=3, seed=0)
    >>> x, y = next(iter(ds))
    >>> tuple(x["support_x"].shape), tuple(x["support_y"].shape), tuple(y.shape)
    ((10, 4), (10, 1), (6, 1))
    >>> sorted(set(x["support_y"].numpy().ravel().tolist()) | {0.0, 1.0, 2.0})
    [0.0, 1.0, 2.0]
    """
    dim = check_int("dim", dim)
    shots = check_int("shots", shots)
    queries = check_int("queries", queries)
    grades = check_int("grades", grades, minimum=2)
    hidden = check_int("hidden", hidden, minimum=0)
    noise = check_number("noise", noise, minimum=0.0)
    seed = _seeds.check_seed(seed)
    num_episodes = _seeds.check_num_episodes(num_episodes)
    transform = check_callable("transform", transform, allow_none=True)
    thresholds = tf.constant(_grade_thresholds(grades), tf.float32)
    n = shots + queries

    def linear_scores(key, items):
        weights = tf.random.stateless_normal([dim, 1], key, dtype=tf.float32)
        return tf.matmul(items, weights / tf.norm(weights))

    def network_scores(key, items):
        w_key, b_key, v_key, ref_key = tf.unstack(_seeds.split_key(key, 4))
        w = tf.random.stateless_normal([dim, hidden], w_key, dtype=tf.float32)
        b = tf.random.stateless_normal([hidden], b_key, dtype=tf.float32)
        v = tf.random.stateless_normal([hidden, 1], v_key, dtype=tf.float32)
        reference = tf.random.stateless_normal([_REFERENCE_ITEMS, dim], ref_key, dtype=tf.float32)

        def score(x):
            return tf.matmul(tf.tanh(tf.matmul(x, w) / math.sqrt(dim) + b), v)

        ref_scores = score(reference)
        mean = tf.reduce_mean(ref_scores)
        # A floor keeps a (practically impossible) constant scorer finite.
        std = tf.maximum(tf.math.reduce_std(ref_scores), 1e-6)
        return (score(items) - mean) / std

    def make_episode(key):
        f_key, x_key, e_key = tf.unstack(_seeds.split_key(key, 3))
        items = tf.random.stateless_normal([n, dim], x_key, dtype=tf.float32)
        scores = network_scores(f_key, items) if hidden else linear_scores(f_key, items)
        judged = scores + noise * tf.random.stateless_normal([n, 1], e_key, dtype=tf.float32)
        labels = tf.reduce_sum(tf.cast(judged > thresholds, tf.float32), axis=-1, keepdims=True)
        return (
            {"support_x": items[:shots], "support_y": labels[:shots], "query_x": items[shots:]},
            labels[shots:],
        )

    keys, used_seed = _seeds.episode_keys(seed, num_episodes)
    dataset = keys.map(make_episode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if transform is not None:
        dataset = _transform_dataset(dataset, transform, used_seed)
    return attach_config(
        dataset,
        {
            "family": "ranking",
            "dim": dim,
            "shots": shots,
            "queries": queries,
            "grades": grades,
            "hidden": hidden,
            "noise": noise,
            "seed": used_seed,
            "num_episodes": num_episodes,
            "transform": describe_callable(transform),
        },
    )
