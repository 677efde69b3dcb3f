"""Validation and materialisation of labelled example arrays shared by the samplers."""

import numpy as np
import tensorflow as tf


def materialize(x, y):
    """Returns `(x, y)` as numpy arrays, reading a `tf.data.Dataset` of pairs if given.

    A dataset may be batched or not (its labels' rank says which).
    """
    if isinstance(x, tf.data.Dataset):
        if y is not None:
            raise ValueError(
                "When `x` is a tf.data.Dataset of (x, y) examples, `y` must be None; "
                "received "
                f"y of type {type(y).__name__}."
            )
        spec = x.element_spec
        if not (isinstance(spec, tuple) and len(spec) == 2):
            raise ValueError(
                "Expected a tf.data.Dataset whose elements are (x, y) pairs of an "
                "example and "
                f"its integer class id; received elements with spec {spec}."
            )
        batched = spec[1].shape.rank is not None and spec[1].shape.rank >= 1
        dataset = x if batched else x.batch(4096)
        xs, ys = [], []
        for xb, yb in dataset.as_numpy_iterator():
            xs.append(np.asarray(xb))
            ys.append(np.asarray(yb).reshape(len(xb), -1) if np.ndim(yb) > 1 else np.asarray(yb))
        if not xs:
            raise ValueError("The tf.data.Dataset of (x, y) examples is empty.")
        return np.concatenate(xs), np.concatenate(ys)
    if y is None:
        raise ValueError("`y` (integer class ids, one per example of `x`) is required.")
    return np.asarray(x), np.asarray(y)


def check_labels(y, num_examples=None):
    """Returns `y` as 1-D int64 non-negative class ids, or raises a clear error."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            "Expected labels `y` of shape [n] (one integer class id per example); "
            "received "
            f"shape {y.shape}."
        )
    if num_examples is not None and len(y) != num_examples:
        raise ValueError(
            f"`x` and `y` must have the same length; received {num_examples} examples "
            "in x and "
            f"{len(y)} labels in y."
        )
    if y.dtype.kind in "iu":
        labels = y.astype(np.int64)
    elif y.dtype.kind == "f":
        # Integral floats (e.g. labels read from a CSV) are accepted; fractional ones
        # are not.
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            first = int(np.argmax(bad))
            raise ValueError(
                "Expected integer class ids in `y`; received non-integer value "
                f"{y[first].item()!r} at index {first} (dtype {y.dtype})."
            )
        labels = y.astype(np.int64)
    else:
        raise TypeError(f"Expected integer class ids in `y`; received an array of dtype {y.dtype}.")
    if len(labels) and labels.min() < 0:
        first = int(np.argmax(labels < 0))
        raise ValueError(
            "Expected non-negative integer class ids in `y`; received "
            f"{labels[first]} at index {first}."
        )
    return labels


def check_examples(x):
    """Returns `x` as an array of numeric examples, storing floats as float32."""
    x = np.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"Expected examples `x` of shape [n, ...]; received shape {x.shape}.")
    if x.dtype.kind == "f" and x.dtype != np.float32:
        x = x.astype(np.float32)
    elif x.dtype.kind not in "fiub":
        raise TypeError(f"Expected numeric examples in `x`; received dtype {x.dtype}.")
    if x.dtype.kind == "f":
        # Checked once here, so that no episode drawn from `x` is non-finite.
        from keras_meta.input_checks import check_finite

        check_finite(x, "x")
    return x
