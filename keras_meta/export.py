"""Export of a learner as a SavedModel that adapts inside the graph."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_meta.learners._episodes import Episode


def episode_signature(learner, input_shape=None, label_shape=None, label_dtype=None):
    """`tf.TensorSpec`s of one episode: (support_x, support_y, query_x).

    Taken from the episodes the learner has seen, or from the arguments.

    Example:

    >>> import keras, keras_meta as km
    >>> net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
    >>> specs = episode_signature(km.MAML(net), input_shape=(3,))
    >>> [tuple(s.shape) for s in specs]
    [(None, 3), (None,), (None, 3)]
    """
    spec = dict(learner._episode_spec or {})
    if input_shape is not None:
        spec["input_shape"] = list(input_shape)
    if label_shape is not None:
        spec["label_shape"] = list(label_shape)
    if label_dtype is not None:
        spec["label_dtype"] = tf.as_dtype(label_dtype).name
    if "input_shape" not in spec:
        raise ValueError(
            "The learner has not seen an episode yet, so the input shape of "
            "the export is unknown: train or evaluate it first, or pass "
            "`input_shape=` (and for regression `label_shape=`/`label_dtype=`)."
        )
    spec.setdefault("label_shape", [])
    spec.setdefault("label_dtype", "int32")
    dtype = spec.get("input_dtype", "float32")
    x = tf.TensorSpec([None, *spec["input_shape"]], dtype)
    return (
        tf.TensorSpec([None, *spec["input_shape"]], dtype, name="support_x"),
        tf.TensorSpec([None, *spec["label_shape"]], spec["label_dtype"], name="support_y"),
        tf.TensorSpec(x.shape, dtype, name="query_x"),
    )


def export_learner(
    learner, filepath, verbose=True, input_shape=None, label_shape=None, label_dtype=None
):
    """Writes `learner` as a SavedModel with `adapt_and_predict` and `serve`.

    Example:

    >>> learner.export("meta_model")                       # doctest: +SKIP
    >>> served = tf.saved_model.load("meta_model")          # doctest: +SKIP
    >>> served.adapt_and_predict(support_x, support_y, query_x)  # doctest: +SKIP
    """
    support_x, support_y, query_x = episode_signature(
        learner, input_shape, label_shape, label_dtype
    )

    def adapt_and_predict(support_x, support_y, query_x):
        episode = Episode(support_x, support_y, query_x, None)
        pred, _ = learner.adapt_and_predict(episode, learner.loop_state(), training=False)
        return pred

    def serve(x):
        return learner.meta_forward(x, False)

    archive = keras.export.ExportArchive()
    archive.track(learner)
    archive.add_endpoint(
        "adapt_and_predict",
        adapt_and_predict,
        input_signature=[support_x, support_y, query_x],
    )
    archive.add_endpoint(
        "serve", serve, input_signature=[tf.TensorSpec(query_x.shape, query_x.dtype, name="x")]
    )
    archive.write_out(filepath, verbose=verbose)
    return filepath
