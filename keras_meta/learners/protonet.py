"""Prototypical Networks (Snell et al., 2017)."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from keras_meta.learners.embedding import EmbeddingLearner
from keras_meta.validation import check_bool, check_choice, check_positive

DISTANCES = ("euclidean", "cosine")
_DEFAULT_SCALE = {"euclidean": 1.0, "cosine": 10.0}


def prototypes(embeddings, labels, ways):
    """Class prototypes: the mean embedding of each class.

    Args:
        embeddings: `[S, D]` support embeddings.
        labels: `[S]` int labels in `[0, ways)`.
        ways: number of classes (int, or a scalar tensor in graph mode).

    Returns:
        `[ways, D]` prototypes.

    Example:

    >>> import numpy as np
    >>> p = prototypes(np.array([[0., 0.], [2., 2.], [5., 5.]], "float32"),
    ...                np.array([0, 0, 1]), 2)
    >>> p.numpy().tolist()
    [[1.0, 1.0], [5.0, 5.0]]
    """
    embeddings = tf.convert_to_tensor(embeddings)
    # A one-hot matmul rather than a segment mean: it compiles under XLA
    # whenever `ways` is static and its gradient is a plain matmul.
    one_hot = tf.one_hot(labels, ways, dtype=embeddings.dtype)
    counts = tf.reduce_sum(one_hot, axis=0)
    _check_counts(counts)
    return tf.matmul(one_hot, embeddings, transpose_a=True) / counts[:, None]


def _check_counts(counts):
    # An empty class would get a 0/0 prototype and NaN logits.
    if not tf.executing_eagerly():
        tf.debugging.assert_positive(
            counts, message="every class 0..ways-1 needs a support example"
        )
        return
    if bool(tf.reduce_any(counts <= 0)):
        missing = tf.where(counts <= 0)[:, 0].numpy().tolist()
        raise ValueError(
            "Every class 0..ways-1 needs at least one support example; the "
            f"support set has none of the classes {missing}."
        )


def prototype_logits(embeddings, protos, distance: str = "euclidean", scale=1.0):
    """Logits of embeddings against prototypes.

    `"euclidean"`: `-scale * ||e - p||²`; `"cosine"`:
    `scale * cos(e, p)`. Works on TensorFlow tensors and Keras symbolic
    tensors alike (it is the `call` of `PrototypeClassifier`).

    Args:
        embeddings: `[Q, D]`.
        protos: `[ways, D]`.
        distance: `"euclidean"` or `"cosine"`.
        scale: a positive scalar (float or tensor).

    Returns:
        `[Q, ways]` logits.

    Example:

    >>> import numpy as np
    >>> e = np.array([[1., 0.]], "float32")
    >>> p = np.array([[1., 0.], [0., 2.]], "float32")
    >>> np.asarray(prototype_logits(e, p)).tolist()
    [[-0.0, -5.0]]
    """
    check_choice("distance", distance, DISTANCES)
    embeddings = ops.convert_to_tensor(embeddings)
    protos = ops.cast(protos, embeddings.dtype)
    scale = ops.cast(scale, embeddings.dtype)
    if distance == "euclidean":
        # The direct difference rather than |e|² - 2e·p + |p|²: exact at
        # small distances, and Q·ways·D is small for few-shot episodes.
        diff = ops.expand_dims(embeddings, 1) - ops.expand_dims(protos, 0)
        return -scale * ops.sum(ops.square(diff), axis=-1)
    e = _l2_normalize(embeddings)  # cosine
    p = _l2_normalize(protos)
    return scale * ops.matmul(e, ops.transpose(p))


def _l2_normalize(x, epsilon=1e-12):
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), epsilon))


@keras.saving.register_keras_serializable(package="keras_meta")
class PrototypeClassifier(keras.layers.Layer):
    """Classifies embeddings by their distance to stored class prototypes.

    The head of the model that `ProtoNet.adapt` returns: the prototypes are
    a `[num_classes, D]` weight, so the adapted model saves, loads and
    exports like any Keras model.

    Args:
        num_classes: number of prototypes.
        distance: `"euclidean"` or `"cosine"`, see `prototype_logits`.
        scale: the logit scale.

    Example:

    >>> import numpy as np
    >>> layer = PrototypeClassifier(2)
    >>> layer.build((None, 3))
    >>> _ = layer.prototypes.assign(np.eye(2, 3, dtype="float32"))
    >>> layer(np.zeros((1, 3), "float32")).numpy().tolist()
    [[-1.0, -1.0]]
    """

    def __init__(self, num_classes: int, distance: str = "euclidean", scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        check_choice("distance", distance, DISTANCES)
        self.num_classes = int(num_classes)
        self.distance = distance
        self.scale = float(scale)

    def build(self, input_shape):
        self.prototypes = self.add_weight(
            shape=(self.num_classes, int(input_shape[-1])),
            initializer="zeros",
            name="prototypes",
        )
        self.built = True

    def call(self, inputs):
        return prototype_logits(inputs, self.prototypes, self.distance, self.scale)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "distance": self.distance,
                "scale": self.scale,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_meta")
class ProtoNet(EmbeddingLearner):
    """Prototypical Networks.

    Each class's prototype is the mean embedding of its support examples; a
    query's logits are minus its squared Euclidean distances to the
    prototypes (or, with `distance="cosine"`, the scaled cosine similarity).
    The compiled loss (default: sparse categorical cross-entropy on logits)
    of the query predictions is minimised through the embedding.

    Args:
        embedding_model: any `keras.Model` mapping inputs to embeddings.
        distance: `"euclidean"` (Snell et al.) or `"cosine"`.
        scale: the logit scale: logits are `-scale * ||e - p||²` or
            `scale * cos(e, p)`. Default: 1.0 for Euclidean (the paper's
            logits), 10.0 for cosine (cosine similarities lie in [-1, 1],
            too flat for a softmax without a scale).
        learn_scale: meta-learn the scale (a trainable weight of the
            learner, initialised to `scale`; metric scaling as in TADAM,
            Oreshkin et al. 2018). Default: fixed.
        ways: classes per episode, or `None` to infer them from the support
            labels at run time (see `EmbeddingLearner`; needed for XLA).
        bn_mode: `"transductive"` or `"running"`, see `MetaLearner`.

    Example:

    >>> import keras, numpy as np, keras_meta as km
    >>> net = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16)])
    >>> learner = km.ProtoNet(net)
    >>> learner.compile(optimizer="adam", metrics=["accuracy"])
    >>> x = {"support_x": np.random.rand(4, 5, 8).astype("float32"),
    ...      "support_y": np.tile(np.arange(5), (4, 1)),
    ...      "query_x": np.random.rand(4, 10, 8).astype("float32")}
    >>> y = np.tile(np.arange(5).repeat(2), (4, 1))
    >>> history = learner.fit(x, y, batch_size=2, epochs=1, verbose=0)
    >>> adapted = learner.adapt(x["support_x"][0], x["support_y"][0])
    >>> adapted.predict(x["query_x"][0], verbose=0).shape
    (10, 5)
    """

    def __init__(
        self,
        embedding_model,
        distance: str = "euclidean",
        scale: float | None = None,
        learn_scale: bool = False,
        ways: int | None = None,
        bn_mode: str = "transductive",
        **kwargs,
    ):
        super().__init__(embedding_model, ways=ways, bn_mode=bn_mode, **kwargs)
        self.distance = check_choice("distance", distance, DISTANCES)
        self._scale_given = scale
        self.initial_scale = (
            _DEFAULT_SCALE[distance] if scale is None else check_positive("scale", scale)
        )
        self.learn_scale = check_bool("learn_scale", learn_scale)
        self._scale = None
        if learn_scale:
            self._scale = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(self.initial_scale),
                name="scale",
            )

    @property
    def scale(self) -> float:
        """The current logit scale."""
        if self._scale is None:
            return self.initial_scale
        return float(ops.convert_to_numpy(self._scale))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "distance": self.distance,
                "scale": self._scale_given,
                "learn_scale": self.learn_scale,
            }
        )
        return config

    def _scale_tensor(self):
        if self._scale is None:
            return self.initial_scale
        return tf.convert_to_tensor(self._scale)

    def fit_head(self, support_embeddings, support_y, ways):
        return prototypes(support_embeddings, support_y, ways)

    def head_logits(self, query_embeddings, head):
        return prototype_logits(query_embeddings, head, self.distance, self._scale_tensor())

    def head_layer(self, head):
        # float32 whatever the global policy: the distances of the adapted
        # model are those of the learner (float32, see `MetaLearner.forward`).
        layer = PrototypeClassifier(
            int(head.shape[0]), self.distance, self.scale, name="prototypes", dtype="float32"
        )
        layer.build((None, int(head.shape[1])))
        layer.prototypes.assign(head)
        return layer
