"""`EmbeddingLearner`: shared base of the metric and closed-form learners.

ProtoNet and R2D2 meta-learn an embedding and adapt in closed form: a head
is computed from the support embeddings (class prototypes, a ridge
solution) and classifies the query embeddings. There is no inner loop, so
the meta-gradient is the plain gradient of the query loss through the head
and the embedding. A subclass implements `fit_head` and `head_logits`
(traced, with TensorFlow ops) and `head_layer` (the same head as a Keras
layer for `adapt`).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from keras_meta.adapted import adapted_embedding, finish_adapted_model, resolve_batch_norm
from keras_meta.learners._episodes import Episode, EpisodeBatch
from keras_meta.learners.base import MetaLearner
from keras_meta.validation import check_int


def flatten_features(x: tf.Tensor) -> tf.Tensor:
    """`[N, ...]` embeddings as `[N, D]` (a conv trunk's feature maps included)."""
    if x.shape.rank == 2:
        return x
    tail = x.shape[1:]
    dim = math.prod(tail) if tail.is_fully_defined() else -1
    return tf.reshape(x, [-1, dim])


class EmbeddingLearner(MetaLearner):
    """A meta-learner that adapts a head in closed form on top of an embedding.

    Args:
        embedding_model: the wrapped `keras.Model` mapping inputs to
            embeddings `[N, D]` (higher-rank outputs are flattened).
        ways: number of classes per episode. `None` (default) infers it from
            each episode's support labels (`max(support_y) + 1`) at run time,
            which graph mode handles but XLA cannot compile; give it to
            train with `jit_compile=True` (it also enables the check that
            labels lie in `[0, ways)`).
        bn_mode: see `MetaLearner`. In meta-training the support and query
            sets are embedded as one batch (as in the reference code of
            ProtoNets and R2D2); in `"transductive"` evaluation BatchNorm
            uses the statistics of the support batch for the support
            embeddings and of the query batch for the query embeddings.

    The default compiled loss is
    `keras.losses.SparseCategoricalCrossentropy(from_logits=True)`: the
    learners output logits.
    """

    def __init__(
        self,
        embedding_model,
        ways: int | None = None,
        bn_mode: str = "transductive",
        **kwargs,
    ):
        super().__init__(embedding_model, bn_mode=bn_mode, **kwargs)
        self.ways = check_int("ways", ways, 2, allow_none=True)

    @property
    def embedding_model(self) -> keras.Model:
        """The wrapped embedding model (same object as `self.model`)."""
        return self.model

    def get_config(self):
        config = super().get_config()
        config["ways"] = self.ways
        return config

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """Like `MetaLearner.compile`; `loss` defaults to sparse CE on logits."""
        if self.ways is None and kwargs.get("jit_compile") is True:
            raise ValueError(
                f"{type(self).__name__} with `ways=None` infers the number of "
                "classes from the labels at run time, which XLA cannot "
                "compile. Pass `ways=` to the constructor to use "
                "`jit_compile=True`."
            )
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        super().compile(optimizer=optimizer, loss=loss, **kwargs)
        if self.ways is None and self.jit_compile:
            # jit_compile="auto" chose XLA (a GPU is present); fall back
            # rather than fail at the first step.
            self.jit_compile = False

    # ------------------------------------------------------------------
    # Labels.
    # ------------------------------------------------------------------
    def _num_outputs(self):
        # The wrapped model's output size is the embedding dimension, not the
        # number of classes; the base's range check uses this instead.
        return self.ways

    def _unpack(self, x, y=None, batched=True) -> EpisodeBatch | Episode:
        ep = super()._unpack(x, y, batched=batched)
        if not ep.is_classification:
            raise ValueError(
                f"{type(self).__name__} is a classifier: expected int labels in "
                f"`support_y`; received dtype {ep.support_y.dtype.name}."
            )
        if self.ways is None and ep.query_y is not None:
            ep = ep._replace(query_y=_check_query_labels(ep.support_y, ep.query_y))
        return ep

    def episode_ways(self, support_y):
        """The number of classes of an episode: `ways`, or inferred."""
        if self.ways is not None:
            return self.ways
        return tf.cast(tf.reduce_max(support_y), tf.int32) + 1

    # ------------------------------------------------------------------
    # What a subclass implements.
    # ------------------------------------------------------------------
    def fit_head(self, support_embeddings, support_y, ways):
        """Head parameters (tensors) fitted to `[S, D]` embeddings, `[S]` labels."""
        raise NotImplementedError

    def head_logits(self, query_embeddings, head):
        """`[Q, ways]` logits of `[Q, D]` embeddings under the head `head`."""
        raise NotImplementedError

    def head_layer(self, head) -> keras.layers.Layer:
        """A built Keras layer that computes `head_logits` with `head` as weights."""
        raise NotImplementedError

    # ------------------------------------------------------------------
    # Adaptation.
    # ------------------------------------------------------------------
    def embed(self, x, state, training: bool):
        """Embeds `x` with the meta-learned weights: `(embeddings, state, reg)`."""
        training = self._layer_training(training)
        emb, state, reg = self.forward(self.model_params(), state, x, training)
        return tf.cast(flatten_features(emb), self._pred_dtype()), state, reg

    def embed_episode(self, episode: Episode, state, training: bool):
        """Support and query embeddings: `(support, query, state, reg)`.

        In meta-training, and whenever BatchNorm uses its moving statistics,
        the support and query sets go through the model as one batch, as in
        the reference implementations of ProtoNets and R2D2 (so BatchNorm
        statistics in training cover both). In transductive evaluation they
        are separate batches, as `bn_mode="transductive"` documents, so the
        support embeddings, hence the head, do not depend on the query set.
        """
        if training or not self._layer_training(training):
            num = tf.shape(episode.support_x)[0]
            both = tf.concat([episode.support_x, episode.query_x], axis=0)
            emb, state, reg = self.embed(both, state, training)
            return emb[:num], emb[num:], state, reg
        support, state, reg_s = self.embed(episode.support_x, state, training)
        query, state, reg_q = self.embed(episode.query_x, state, training)
        # Weight penalties appear in both calls' losses; averaging counts them
        # once and gives each batch's activity penalties equal weight.
        return support, query, state, (reg_s + reg_q) / 2

    def _query_logits(self, episode: Episode, state, training: bool):
        """`(query_logits, state, regularization_loss)` of the fitted head."""
        support, query, state, reg = self.embed_episode(episode, state, training)
        head = self.fit_head(support, episode.support_y, self.episode_ways(episode.support_y))
        return self.head_logits(query, head), state, reg

    def adapt_and_predict(self, episode: Episode, state, training: bool):
        logits, state, _ = self._query_logits(episode, state, training)
        return logits, state

    def episode_loss(self, episode: Episode, state):
        # The outer loss is the only loss, so the embedding's regularisation
        # losses are added here (the inner loop of gradient learners adds
        # them to the support loss instead).
        logits, state, reg = self._query_logits(episode, state, training=True)
        loss = self.outer_loss(episode.query_y, logits)
        return loss + tf.cast(reg, loss.dtype), logits, state

    def adapt(
        self, support_x, support_y, steps: int | None = None, batch_norm: str | None = None
    ) -> keras.Model:
        """Fits the head to one support set and returns a standalone classifier.

        The result is a Functional `keras.Model`: a copy of the embedding
        with the learner's weights followed by the head with the fitted
        values built in as weights. It predicts logits, saves to `.keras`
        and exports like any Keras model. The support embeddings follow
        `bn_mode`; `batch_norm` says how the returned model's BatchNorm
        normalises (see `GradientLearner.adapt` and `keras_meta.adapted`).

        Args:
            support_x: `[S, *input_shape]` support examples of one episode.
            support_y: `[S]` int labels `0..ways-1`.
            steps: must be `None`: the head is fitted in closed form.
            batch_norm: `"support"`, `"transductive"` or `"running"`;
                default: the one that reproduces the evaluation's `bn_mode`.
        """
        batch_norm = resolve_batch_norm(self, batch_norm)
        if steps is not None:
            raise ValueError(
                f"{type(self).__name__} adapts in closed form and takes no "
                f"`steps`; received steps={steps!r}."
            )
        ep = self._unpack(
            {"support_x": support_x, "support_y": support_y, "query_x": support_x},
            batched=False,
        )
        state = self.model_state()
        support, _, _ = self.embed(ep.support_x, state, training=False)
        head = self.fit_head(support, ep.support_y, self.episode_ways(ep.support_y))

        spec = self._episode_spec
        inputs = keras.Input(shape=tuple(spec["input_shape"]), dtype=spec["input_dtype"], name="x")
        embedding = adapted_embedding(self, self.model_params(), state, ep.support_x, batch_norm)
        features = embedding(inputs)
        if len(features.shape) > 2:
            features = keras.layers.Flatten(name="flatten_embedding")(features)
        outputs = self.head_layer(head)(features)
        model = keras.Model(inputs, outputs, name=f"{self.name}_adapted")
        return finish_adapted_model(self, model, batch_norm)


def _check_query_labels(support_y, query_y):
    """Query labels must name a class of the support set of their episode.

    Returns `query_y`, which, when traced, runs the checks before any use.
    """
    ways = tf.reduce_max(support_y, axis=-1) + 1
    top = tf.reduce_max(query_y, axis=-1)
    if tf.executing_eagerly():
        lo = int(tf.reduce_min(support_y))
        if lo < 0 or bool(tf.reduce_any(top >= tf.cast(ways, top.dtype))):
            raise ValueError(
                "Expected the labels of `support_y` to be >= 0 and the query "
                "labels `y` to be classes of the episode's support set (below "
                "max(support_y) + 1)."
            )
        return query_y
    checks = [
        tf.debugging.assert_non_negative(support_y, message="labels in `support_y` must be >= 0"),
        tf.debugging.assert_less(
            top,
            tf.cast(ways, top.dtype),
            message="query labels `y` must be classes of the episode's support set",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(query_y)
