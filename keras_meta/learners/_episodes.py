"""Unpacking and validation of what the learners receive: episodes.

(Sampling episodes from a dataset is the job of `keras_meta.data.episodes`.)
An `Episode` is one task: a support set to adapt on and a query set to
predict; an `EpisodeBatch` holds B of them along a leading axis. A batch is
the `(x, y)` pair that `keras.Model.fit` hands to `train_step` (see
docs/api.md):

```python
x = {"support_x": [B, S, *input_shape],
     "support_y": [B, S] int labels (or [B, S, d] regression targets),
     "query_x":   [B, Q, *input_shape]}
y = query_y      # [B, Q] int labels (or [B, Q, d]); None in predict
```

Every learner goes through `unpack_episodes`, so every learner gives the same
error messages for the same mistakes.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

EPISODE_KEYS = ("support_x", "support_y", "query_x")


class _EpisodeTensors(NamedTuple):
    support_x: tf.Tensor
    support_y: tf.Tensor
    query_x: tf.Tensor
    query_y: tf.Tensor | None

    @property
    def is_classification(self) -> bool:
        """Whether the labels are integer class ids (else regression targets)."""
        return tf.as_dtype(self.support_y.dtype).is_integer


class Episode(_EpisodeTensors):
    """One validated episode: tensors without a leading episode axis.

    Fields: `support_x`, `support_y`, `query_x`, `query_y` (`None` in
    prediction).

    Example:

    >>> import numpy as np
    >>> ep = Episode(np.zeros((5, 3)), np.zeros(5, "int32"), np.zeros((4, 3)), None)
    >>> ep.support_x.shape, ep.is_classification
    ((5, 3), True)
    """

    __slots__ = ()


class EpisodeBatch(_EpisodeTensors):
    """A validated batch of episodes: the fields of `Episode` with a leading axis B.

    Example:

    >>> import numpy as np
    >>> batch = EpisodeBatch(np.zeros((2, 5, 3)), np.zeros((2, 5), "int32"),
    ...                      np.zeros((2, 4, 3)), None)
    >>> batch.episode(1).support_x.shape
    (5, 3)
    """

    __slots__ = ()

    def episode(self, i) -> Episode:
        """The `i`-th episode of the batch."""
        return Episode(
            self.support_x[i],
            self.support_y[i],
            self.query_x[i],
            None if self.query_y is None else self.query_y[i],
        )


def _shape_str(shape) -> str:
    return str(tuple(None if d is None else int(d) for d in shape))


def _dims_agree(a, b) -> bool:
    return a is None or b is None or a == b


def unpack_episodes(
    x, y=None, *, num_outputs: int | None = None, batched: bool = True
) -> EpisodeBatch | Episode:
    """Checks a batch of episodes (or one episode) and returns it as a tuple.

    Static shapes are checked at trace time (a `ValueError` that names the
    key, the expected and the received shape); what is only known at run time
    (the batch size B, label ranges) is checked with `tf.debugging` asserts.

    Args:
        x: dict with the keys `support_x`, `support_y`, `query_x`.
        y: the query targets, or `None` (prediction).
        num_outputs: size of the wrapped model's last output axis; integer
            labels must lie in `[0, num_outputs)`.
        batched: whether the tensors carry a leading episode axis B: an
            `EpisodeBatch` is returned, else an `Episode`.

    Example:

    >>> import numpy as np
    >>> x = {"support_x": np.zeros((2, 5, 3), "float32"),
    ...      "support_y": np.zeros((2, 5), "int32"),
    ...      "query_x": np.zeros((2, 4, 3), "float32")}
    >>> ep = unpack_episodes(x, np.zeros((2, 4), "int32"), num_outputs=5)
    >>> tuple(ep.query_x.shape)
    (2, 4, 3)
    """
    lead = 1 if batched else 0
    where = "batch of episodes" if batched else "episode"
    lead_dims = "[B, " if batched else "["
    if not isinstance(x, dict):
        raise ValueError(
            f"Expected the {where} inputs `x` to be a dict with the keys "
            f"{list(EPISODE_KEYS)}; received an object of type "
            f"{type(x).__name__}. Build episodes with keras_meta.data."
        )
    missing = [k for k in EPISODE_KEYS if k not in x]
    extra = [k for k in x if k not in EPISODE_KEYS]
    if missing or extra:
        raise ValueError(
            f"Expected the {where} dict to have exactly the keys "
            f"{list(EPISODE_KEYS)}; received the keys {sorted(x)} "
            f"(missing: {missing}, unexpected: {extra}). The query targets "
            "go in `y`, not in the dict."
        )
    support_x = tf.convert_to_tensor(x["support_x"])
    support_y = tf.convert_to_tensor(x["support_y"])
    query_x = tf.convert_to_tensor(x["query_x"])
    query_y = None if y is None else tf.convert_to_tensor(y)

    if not support_x.dtype.is_floating:
        support_x = tf.cast(support_x, "float32")
    if query_x.dtype != support_x.dtype:
        query_x = tf.cast(query_x, support_x.dtype)

    sx, sy, qx = support_x.shape, support_y.shape, query_x.shape
    if sx.rank is None or sx.rank < lead + 2:
        raise ValueError(
            f"Expected `support_x` of rank >= {lead + 2} "
            f"({lead_dims}S, *input_shape]); received shape {_shape_str(sx)}."
        )
    if qx.rank != sx.rank:
        raise ValueError(
            f"Expected `query_x` of rank {sx.rank} ({lead_dims}Q, *input_shape],"
            f" as `support_x` {_shape_str(sx)}); received shape "
            f"{_shape_str(qx)}."
        )
    for a, b in zip(sx[lead + 1 :], qx[lead + 1 :]):
        if not _dims_agree(a, b):
            raise ValueError(
                "Expected `support_x` and `query_x` to have the same feature "
                f"shape; received support_x {_shape_str(sx)} and query_x "
                f"{_shape_str(qx)}."
            )
    classification = support_y.dtype.is_integer
    label_rank = lead + (1 if classification else 2)
    kind = (
        "int labels " + lead_dims + "S]"
        if classification
        else "float targets " + lead_dims + "S, d]"
    )
    if sy.rank != label_rank:
        raise ValueError(
            f"Expected `support_y` to be {kind}; received dtype "
            f"{support_y.dtype.name} and shape {_shape_str(sy)}."
        )
    if not _dims_agree(sy[lead], sx[lead]):
        raise ValueError(
            f"Expected `support_y` to have S={sx[lead]} entries per episode "
            f"like `support_x` {_shape_str(sx)}; received shape "
            f"{_shape_str(sy)}."
        )
    if query_y is not None:
        qy = query_y.shape
        if query_y.dtype.is_integer != classification:
            raise ValueError(
                "Expected the query targets `y` to be of the same kind as "
                f"`support_y` ({support_y.dtype.name}); received dtype "
                f"{query_y.dtype.name}."
            )
        if qy.rank != label_rank:
            raise ValueError(
                f"Expected the query targets `y` to have rank {label_rank} "
                f"(like `support_y` {_shape_str(sy)}); received shape "
                f"{_shape_str(qy)}."
            )
        if not _dims_agree(qy[lead], qx[lead]):
            raise ValueError(
                f"Expected the query targets `y` to have Q={qx[lead]} entries "
                f"per episode like `query_x` {_shape_str(qx)}; received shape "
                f"{_shape_str(qy)}."
            )
        if not classification and not _dims_agree(qy[-1], sy[-1]):
            raise ValueError(
                "Expected the query targets `y` and `support_y` to have the "
                f"same last axis; received {_shape_str(qy)} and "
                f"{_shape_str(sy)}."
            )
    if batched:
        named = [("support_x", sx), ("support_y", sy), ("query_x", qx)]
        if query_y is not None:
            named.append(("y (query_y)", query_y.shape))
        known = [(k, s[0]) for k, s in named if s[0] is not None]
        if len({b for _, b in known}) > 1:
            raise ValueError(
                "Expected every key of the batch to have the same number of "
                "episodes B (first axis); received "
                + ", ".join(f"{k}: {b}" for k, b in known)
                + "."
            )
    if classification and num_outputs is not None:
        support_y = check_label_range(support_y, num_outputs, "support_y")
        if query_y is not None:
            query_y = check_label_range(query_y, num_outputs, "y (query_y)")
    if batched and any(s[0] is None for s in (sx, sy, qx)):
        b = tf.shape(support_x)[0]
        checks = [
            tf.debugging.assert_equal(
                tf.shape(t)[0],
                b,
                message=f"`{name}` and `support_x` disagree on the number of "
                "episodes B (first axis)",
            )
            for name, t in (("support_y", support_y), ("query_x", query_x))
        ]
        with tf.control_dependencies(checks):
            support_x = tf.identity(support_x)
    return (EpisodeBatch if batched else Episode)(support_x, support_y, query_x, query_y)


def check_label_range(labels, num_outputs: int, name: str):
    """Returns `labels`, checked to satisfy 0 <= labels < num_outputs.

    Known values raise a `ValueError` at once; traced values get run-time
    asserts that the returned tensor depends on, so that they fire before
    any op (such as the loss) consumes a wrong label.

    Example:

    >>> check_label_range(tf.constant([0, 2]), 3, "support_y").numpy().tolist()
    [0, 2]
    >>> check_label_range(tf.constant([0, 3]), 3, "support_y")
    Traceback (most recent call last):
    ...
    ValueError: Expected the labels in `support_y` to lie in [0, 3) ...
    """
    value = tf.get_static_value(labels)
    if value is not None:
        if value.size:
            lo, hi = int(value.min()), int(value.max())
            if lo < 0 or hi >= num_outputs:
                raise ValueError(
                    f"Expected the labels in `{name}` to lie in "
                    f"[0, {num_outputs}) because the model has {num_outputs} "
                    f"outputs; received labels from {lo} to {hi}."
                )
        return labels
    checks = [
        tf.debugging.assert_non_negative(labels, message=f"labels in `{name}` must be >= 0"),
        tf.debugging.assert_less(
            labels,
            tf.cast(num_outputs, labels.dtype),
            message=f"labels in `{name}` must be < {num_outputs}, the number "
            "of outputs of the model",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(labels)
