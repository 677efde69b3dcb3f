"""Reptile (Nichol, Achiam and Schulman, 2018)."""

from __future__ import annotations

import random

import keras
import tensorflow as tf

from keras_meta import _keras_compat
from keras_meta.inner_loop import inner_loop
from keras_meta.inner_optimizers import adam, sgd
from keras_meta.learners.gradient import InnerLoopLearner
from keras_meta.validation import check_choice, check_int, check_number, check_positive

INNER_OPTIMIZERS = ("sgd", "adam")


def _mix32(h):
    """MurmurHash3's 32-bit finaliser."""
    for shift, factor in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):
        h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(shift, "uint32")))
        h = h * tf.constant(factor, "uint32")
    return tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(16, "uint32")))


def _random_keys(shape, seed):
    """Pseudo-random uint32 keys of `shape` from an int `seed` pair.

    Integer hashing rather than `tf.random`: TensorFlow's stateless random
    kernels give different numbers under XLA than without, and the same
    episode must get the same mini-batches in `predict`, a jit-compiled
    step and an exported SavedModel.
    """
    seed = tf.cast(seed, "uint32")
    golden = tf.constant(0x9E3779B9, "uint32")
    key = _mix32(tf.bitwise.bitwise_xor(_mix32(seed[0] + golden), seed[1]))
    index = tf.reshape(tf.cast(tf.range(tf.reduce_prod(shape)), "uint32"), shape)
    return _mix32(index * golden + key)


@keras.saving.register_keras_serializable(package="keras_meta")
class Reptile(InnerLoopLearner):
    """Reptile: move the initialisation toward the task-adapted weights.

    For each episode the inner loop takes `inner_steps` steps of SGD (or
    Adam) on the support loss, from the meta-weights `θ` to `φ`. The
    meta-update hands the compiled optimizer `θ − φ̄` (the mean over the
    episodes of the batch) as the gradient, so `SGD(learning_rate=ε)` gives
    Reptile's `θ ← θ + ε (φ̄ − θ)` exactly, and any other Keras optimizer
    (or learning-rate schedule, e.g. the paper's linearly annealed `ε`) can
    be used. Nothing is differentiated through the inner loop.

    The query set does not enter the update; `fit` reports the query loss
    and metrics of `φ` (after adaptation) for monitoring. `evaluate`,
    `predict`, `adapt` and `export` adapt with `eval_inner_steps` steps.

    Args:
        model: any `keras.Model` (Functional, Sequential or subclassed).
        inner_learning_rate: step size of the inner optimizer.
        inner_steps: inner steps during `fit`.
        inner_batch_size: support examples per inner step. `None` (default)
            uses the whole support set at every step; otherwise each step
            takes the next mini-batch of a pass over the shuffled support
            set, reshuffled for every pass, as the reference implementation
            does. Shuffling is seeded: in `fit` by `seed` and a counter saved
            with the learner (so resumed training draws the same batches), in
            evaluation by `seed` alone (so `predict`, `adapt` and the exported
            model give the same result for the same episode).
        inner_optimizer: `"sgd"` or `"adam"` (`keras_meta.inner_optimizers`).
            Adam runs functionally on the fast weights with fresh moments for
            every episode (the reference implementation keeps its Adam
            moments across tasks).
        eval_inner_steps: inner steps in `evaluate`/`predict`/`adapt`
            (default: `inner_steps`; the paper uses more at test time).
        adam_beta_1: Adam's first-moment decay (the paper uses 0).
        adam_beta_2: Adam's second-moment decay.
        adam_epsilon: Adam's epsilon.
        seed: seed of the inner mini-batch shuffling (default: drawn once
            from Python's `random`, which `keras.utils.set_random_seed`
            seeds, and then kept in the configuration).
        bn_mode: `"transductive"` or `"running"`, see `MetaLearner`.

    Example:

    >>> import keras, keras_meta as km
    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(64, "relu"),
    ...                         keras.layers.Dense(64, "relu"), keras.layers.Dense(1)])
    >>> learner = km.Reptile(net, inner_learning_rate=0.02, inner_steps=8,
    ...                      inner_batch_size=5)
    >>> learner.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    >>> tasks = km.data.sinusoid(shots=10, queries=10, seed=0).batch(4)
    >>> history = learner.fit(tasks, steps_per_epoch=2, epochs=1, verbose=0)
    """

    def __init__(
        self,
        model,
        inner_learning_rate: float = 0.02,
        inner_steps: int = 5,
        inner_batch_size: int | None = None,
        inner_optimizer: str = "sgd",
        eval_inner_steps: int | None = None,
        adam_beta_1: float = 0.0,
        adam_beta_2: float = 0.999,
        adam_epsilon: float = 1e-8,
        seed: int | None = None,
        **kwargs,
    ):
        for name in ("first_order", "adapt_layers"):
            if name in kwargs:
                raise TypeError(
                    f"Reptile does not take `{name}`: it adapts every weight "
                    "and never differentiates through the inner loop."
                )
        super().__init__(
            model,
            inner_learning_rate=inner_learning_rate,
            inner_steps=inner_steps,
            eval_inner_steps=eval_inner_steps,
            **kwargs,
        )
        check_int("inner_batch_size", inner_batch_size, allow_none=True)
        check_choice("inner_optimizer", inner_optimizer, INNER_OPTIMIZERS)
        for name, beta in (("adam_beta_1", adam_beta_1), ("adam_beta_2", adam_beta_2)):
            check_number(name, beta, minimum=0.0, exclusive_maximum=1.0)
        check_positive("adam_epsilon", adam_epsilon)
        if seed is None:
            seed = random.randint(0, 2**31 - 1)
        seed = check_int("seed", seed, None)
        self.inner_batch_size = inner_batch_size
        self.inner_optimizer = inner_optimizer
        self.adam_beta_1 = float(adam_beta_1)
        self.adam_beta_2 = float(adam_beta_2)
        self.adam_epsilon = float(adam_epsilon)
        self.seed = seed
        self._batch_counter = None
        if inner_batch_size is not None:
            # Counts the episodes trained on; with `seed`, it names the
            # shuffle of the next episode, so resumed training continues the
            # same sequence of mini-batches.
            self._batch_counter = self.add_weight(
                shape=(),
                dtype="int64",
                initializer="zeros",
                trainable=False,
                name="shuffle_counter",
            )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "inner_batch_size": self.inner_batch_size,
                "inner_optimizer": self.inner_optimizer,
                "adam_beta_1": self.adam_beta_1,
                "adam_beta_2": self.adam_beta_2,
                "adam_epsilon": self.adam_epsilon,
                "seed": self.seed,
            }
        )
        return config

    # ------------------------------------------------------------------
    # Inner loop.
    # ------------------------------------------------------------------
    def inner_update_rule(self):
        """The inner optimizer as an `UpdateRule` (`keras_meta.inner_optimizers`)."""
        if self.inner_optimizer == "adam":
            return adam(
                self.inner_learning_rate, self.adam_beta_1, self.adam_beta_2, self.adam_epsilon
            )
        return sgd(self.inner_learning_rate)

    def _mini_batches(self, num_examples, steps: int, training: bool):
        """Support indices of every inner step, `[steps, inner_batch_size]`."""
        size = self.inner_batch_size
        total = steps * size
        passes = (total + num_examples - 1) // num_examples
        if training:
            counter = tf.convert_to_tensor(self._batch_counter)
            self._batch_counter.assign_add(1)
            # Under tf.distribute every replica counts its own episodes from
            # the same value: interleave, so that no two episodes share a seed.
            context = tf.distribute.get_replica_context()
            if context is not None and context.num_replicas_in_sync > 1:
                counter = counter * context.num_replicas_in_sync + tf.cast(
                    context.replica_id_in_sync_group, "int64"
                )
            seed = tf.stack([tf.constant(self.seed, "int64"), counter])
        else:
            seed = tf.constant([self.seed, -1], "int64")
        keys = _random_keys(tf.stack([passes, num_examples]), seed)
        # float64 holds every uint32 exactly.
        order = tf.reshape(tf.argsort(tf.cast(keys, "float64"), axis=-1), [-1])[:total]
        return tf.reshape(order, [steps, size])

    def run_inner_loop(self, episode, state, training, steps=None, on_step=None):
        steps = self.inner_steps_for(training, steps)
        batches = None
        if self.inner_batch_size is not None:
            batches = self._mini_batches(tf.shape(episode.support_x)[0], steps, training)
        # Reptile never differentiates through the inner loop.
        return inner_loop(
            self.support_loss_fn(episode, training, batches),
            self.model_params(),
            state,
            steps=steps,
            update_fn=self.inner_update_rule(),
            first_order=True,
            on_step=on_step,
            loss_scale=self.inner_loss_scale(),
        )

    # ------------------------------------------------------------------
    # Meta-update.
    # ------------------------------------------------------------------
    def episode_gradients(self, episode, state, weight, **options):
        """Returns `weight · (θ − φ)` as the episode's "gradient"."""
        theta = self.model_params()
        phi, state, _ = self.run_inner_loop(episode, state, training=True)
        # Only reported: the query set plays no part in Reptile's update, and
        # the statistics of this pass are not kept.
        pred, _, _ = self.forward(phi, state, episode.query_x, True)
        loss = self.outer_loss(episode.query_y, pred)
        # Scaled as Keras scales a loss: by 1/replicas (tf.distribute sums
        # the replicas' gradients) and by a loss-scaling optimizer's factor
        # (which it divides out again).
        scale = self.optimizer.scale_loss(
            _keras_compat.scale_loss_for_distribution(tf.cast(weight, loss.dtype))
        )
        direction = {
            id(v): (t - p) * tf.cast(scale, t.dtype)
            for v, t, p in zip(self.model.trainable_variables, theta, phi)
        }
        grads = [direction.get(id(v), tf.zeros(v.shape, v.dtype)) for v in self.trainable_variables]
        return grads, loss, pred, state
