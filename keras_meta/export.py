"""Export of a learner as a SavedModel that adapts inside the graph."""

from __future__ import annotations

import keras
import tensorflow as tf


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

    `adapt_and_predict(support_x, support_y, query_x)` runs the learner's
    input checks (finite values, a non-empty support set, labels of the
    loss's kind and in the model's range) and, for class labels, accepts
    both int32 and int64 (unless `label_dtype` names one).

    Example:

    >>> learner.export("meta_model")                       # doctest: +SKIP
    >>> served = tf.saved_model.load("meta_model")          # doctest: +SKIP
    >>> served.adapt_and_predict(support_x, support_y, query_x)  # doctest: +SKIP
    """
    support_x, support_y, query_x = episode_signature(
        learner, input_shape, label_shape, label_dtype
    )
    label_dtypes = [support_y.dtype]
    if label_dtype is None and support_y.dtype.is_integer:
        # Class ids as a user naturally passes them (numpy's int64, TF's int32),
        # whatever dtype the learner saw last.
        label_dtypes = [tf.int32, tf.int64]

    @tf.function(autograph=False)
    def adapt_and_predict(support_x, support_y, query_x):
        # The learner's own checks: finite inputs, a non-empty support set,
        # labels of the loss's kind and within the model's outputs.
        episode = learner._unpack(
            {"support_x": support_x, "support_y": support_y, "query_x": query_x},
            batched=False,
        )
        pred, _ = learner.adapt_and_predict(episode, learner.loop_state(), training=False)
        return pred

    recorded = learner._episode_spec
    try:
        for dtype in label_dtypes:
            adapt_and_predict.get_concrete_function(
                support_x, tf.TensorSpec(support_y.shape, dtype, name="support_y"), query_x
            )
    finally:
        # Tracing records the traced episode's spec; the learner's stays its own.
        learner._episode_spec = recorded

    def serve(x):
        return learner.meta_forward(x, False)

    archive = keras.export.ExportArchive()
    archive.track(learner)
    archive.add_endpoint("adapt_and_predict", adapt_and_predict)
    archive.add_endpoint(
        "serve", serve, input_signature=[tf.TensorSpec(query_x.shape, query_x.dtype, name="x")]
    )
    archive.write_out(filepath, verbose=verbose)
    return filepath
