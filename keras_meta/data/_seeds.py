"""Counter-based episode keys: episode `i` of seed `s` is a pure function of `(s, i)`.

Every sampler draws its random numbers with `tf.random.stateless_*` ops keyed on these
keys, never on global or per-iterator RNG state, so a seeded dataset gives identical
episodes across runs, machines, `num_parallel_calls` settings and re-iterations.
"""

import secrets

import tensorflow as tf

from keras_meta.validation import check_int

# Philox keys are 64-bit; keep user seeds in the positive int64 range so the key is portable.
_SEED_MODULUS = 2**63


def check_seed(seed):
    """Validates a user seed; returns it as a Python int (or `None`)."""
    seed = check_int("seed", seed, None, allow_none=True)
    return None if seed is None else seed % _SEED_MODULUS


def fresh_seed():
    """A seed from OS entropy, for an unseeded sampler that must be a fixed set."""
    return secrets.randbits(62)


def episode_keys(seed, num_episodes):
    """A dataset of int64 `[2]` stateless-RNG keys, one per episode.

    Args:
        seed: int or None (already checked by `check_seed`).
        num_episodes: int or None (infinite).

    Returns:
        `(keys_dataset, seed)`: `seed` is the seed actually used (drawn from OS entropy
        when a finite set is asked for without one, so that the set stays fixed across
        iterations), or None for an infinite unseeded stream, which re-randomises on
        every iteration.
    """
    if seed is None and num_episodes is not None:
        seed = fresh_seed()
    if num_episodes is not None:
        counter = tf.data.Dataset.range(num_episodes)
    else:
        counter = tf.data.Dataset.counter()
    if seed is None:
        # A new stream on every iteration (reproducible only under a global TF seed,
        # e.g. `keras.utils.set_random_seed`).
        streams = tf.data.Dataset.random(rerandomize_each_iteration=True)
        keys = tf.data.Dataset.zip(streams, counter).map(
            lambda r, i: tf.stack([r, tf.cast(i, tf.int64)]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        seed_t = tf.constant(seed, tf.int64)
        keys = counter.map(
            lambda i: tf.stack([seed_t, tf.cast(i, tf.int64)]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return keys, seed


def split_key(key, num):
    """`num` independent sub-keys of `key` (int64 `[num, 2]`)."""
    return tf.random.experimental.stateless_split(key, num=num)


def check_num_episodes(num_episodes):
    """`num_episodes`: an integer >= 1, or `None` (an infinite stream)."""
    return check_int("num_episodes", num_episodes, allow_none=True)
