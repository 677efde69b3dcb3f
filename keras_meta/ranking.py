"""Learning to rank: listwise and pairwise ranking losses and the NDCG@k metric.

Keras has no ranking losses or metrics, so they are written once here, for ranking
tasks such as `keras_meta.data.ranking`. A *list* is the set of items the model scores
together; with a meta-learner the list is the support (inner loop) or query (outer
loop, metrics) set of one episode.

Shapes: `y_true` holds non-negative relevance grades and `y_pred` scores, both `[...,
n]` or `[..., n, 1]` (a trailing axis of size 1 is dropped, so `[n, 1]` is one list of
`n` items; a list of one item is `[..., 1, 1]`). Leading axes index separate lists: a
loss is averaged over them, and `NDCG` accumulates one value per list.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_meta.validation import check_int


def _as_lists(y_true, y_pred, dtype):
    """`(grades, scores)` as `[..., n]` tensors of `dtype`."""
    y_true = ops.cast(ops.convert_to_tensor(y_true), dtype)
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), dtype)

    def squeeze(t):
        if ops.ndim(t) >= 2 and t.shape[-1] == 1:
            return ops.squeeze(t, axis=-1)
        return t

    y_true, y_pred = squeeze(y_true), squeeze(y_pred)
    true_shape, pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
    if not true_shape or not pred_shape:
        raise ValueError(
            "Ranking losses and metrics need lists of items, `[..., n]` or `[..., n, 1]`; "
            f"received y_true of shape {y_true.shape} and y_pred of shape {y_pred.shape}."
        )
    # Unknown (None) dimensions match anything until the graph runs.
    if len(true_shape) != len(pred_shape) or any(
        a is not None and b is not None and a != b for a, b in zip(true_shape, pred_shape)
    ):
        raise ValueError(
            "`y_true` (grades) and `y_pred` (scores) must have the same shape `[..., n]`; "
            f"received y_true of shape {y_true.shape} and y_pred of shape {y_pred.shape}."
        )
    return y_true, y_pred


@keras.saving.register_keras_serializable(package="keras_meta")
class ListwiseSoftmaxLoss(keras.losses.Loss):
    """Listwise softmax cross-entropy (ListNet's top-one loss).

    For a list with grades `g` and scores `s`, the target distribution is `p_i = g_i /
    sum_j g_j` and the loss is the cross-entropy `-sum_i p_i log softmax(s)_i` (Cao et
    al., 2007; TF-Ranking's `SoftmaxLoss`). Its gradient with respect to `s` is
    `softmax(s) - p`. A list whose grades are all zero has nothing to rank: its loss is 0
    (and it still counts in the mean over lists).

    Args:
        reduction, name, dtype: as for `keras.losses.Loss`; the default reduction
            averages the loss over the lists.

    Example:

    >>> import numpy as np, keras_meta as km
    >>> loss = km.ranking.ListwiseSoftmaxLoss()
    >>> grades = np.array([[1.0], [0.0]]); scores = np.array([[0.0], [0.0]])
    >>> round(float(loss(grades, scores)), 4)  # -log(1/2)
    0.6931
    """

    def __init__(self, reduction="sum_over_batch_size", name="listwise_softmax_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        grades, scores = _as_lists(y_true, y_pred, self.dtype)
        total = ops.sum(grades, axis=-1, keepdims=True)
        target = ops.divide_no_nan(grades, total)
        return -ops.sum(target * ops.log_softmax(scores, axis=-1), axis=-1)


@keras.saving.register_keras_serializable(package="keras_meta")
class PairwiseLogisticLoss(keras.losses.Loss):
    """Pairwise logistic (RankNet) loss.

    For a list with grades `g` and scores `s`, the loss is the mean of `log(1 +
    exp(-(s_i - s_j)))` over the ordered pairs `(i, j)` with `g_i > g_j` (Burges et al.,
    2005). Pairs of equal grades do not count; a list without such a pair (all grades
    equal) has loss 0.

    Args:
        reduction, name, dtype: as for `keras.losses.Loss`; the default reduction
            averages the loss over the lists.

    Example:

    >>> import numpy as np, keras_meta as km
    >>> loss = km.ranking.PairwiseLogisticLoss()
    >>> grades = np.array([[2.0], [0.0]]); scores = np.array([[0.0], [0.0]])
    >>> round(float(loss(grades, scores)), 4)  # log(2)
    0.6931
    """

    def __init__(self, reduction="sum_over_batch_size", name="pairwise_logistic_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        grades, scores = _as_lists(y_true, y_pred, self.dtype)
        # [..., n, n]: entry (i, j) compares item i with item j.
        better = ops.cast(grades[..., :, None] > grades[..., None, :], scores.dtype)
        margins = scores[..., :, None] - scores[..., None, :]
        losses = ops.softplus(-margins) * better
        return ops.divide_no_nan(ops.sum(losses, axis=(-2, -1)), ops.sum(better, axis=(-2, -1)))


def _discounts(n, k, dtype):
    """`[n + 1]` cumulative discounts: entry `m` is `sum_{r <= min(m, k)} 1 / log2(r + 1)`."""
    ranks = ops.arange(1, n + 1, dtype=dtype)
    discount = 1.0 / ops.log2(ranks + 1.0)
    if k is not None:
        discount = ops.where(ranks <= k, discount, ops.zeros_like(discount))
    return ops.concatenate([ops.zeros((1,), dtype), ops.cumsum(discount)], axis=0)


def _ndcg_per_list(grades, scores, k):
    """NDCG@k of each `[..., n]` list (expected DCG over ties; 0 when all grades are 0)."""
    n = ops.shape(grades)[-1]
    cumulative = _discounts(n, k, grades.dtype)
    gains = ops.power(ops.cast(2.0, grades.dtype), grades) - 1.0
    # Items tied on score share their ranks a+1..a+t: each gets the mean discount of
    # those ranks, which is the expected DCG over the orders of the ties.
    above = ops.sum(ops.cast(scores[..., None, :] > scores[..., :, None], "int32"), axis=-1)
    tied = ops.sum(ops.cast(scores[..., None, :] == scores[..., :, None], "int32"), axis=-1)
    mean_discount = (ops.take(cumulative, above + tied) - ops.take(cumulative, above)) / (
        ops.cast(tied, grades.dtype)
    )
    dcg = ops.sum(gains * mean_discount, axis=-1)
    ideal_gains = ops.flip(ops.sort(gains, axis=-1), axis=-1)
    ideal_discount = cumulative[1:] - cumulative[:-1]
    idcg = ops.sum(ideal_gains * ideal_discount, axis=-1)
    return ops.divide_no_nan(dcg, idcg)


@keras.saving.register_keras_serializable(package="keras_meta")
class NDCG(keras.metrics.Metric):
    """Normalised discounted cumulative gain at `k`, the mean over lists.

    Items are ranked by descending score; the item at rank `r` (from 1) contributes
    the gain `2^g - 1` of its grade `g` times the discount `1 / log2(r + 1)` if `r <=
    k`, and nothing past `k`. NDCG@k is that sum (DCG@k) divided by the DCG@k of the
    ideal order (grades sorted in descending order), so it lies in `[0, 1]`.

    * Ties: items with equal scores share their ranks, each getting the mean discount
      of the ranks the tied group occupies; this is the expected DCG over the orders of
      the ties (McSherry and Najork, 2008), so a constant scorer gets the NDCG of a
      random order, not of the input order.
    * `k` larger than the list (or `k=None`): every item counts; NDCG@k is then the
      NDCG of the whole list.
    * A list whose grades are all zero has no ideal gain: its NDCG is 0 (as in
      scikit-learn's `ndcg_score`).

    The metric is the (weighted) mean of the per-list values over every list it has
    seen; `sample_weight`, if given, holds one weight per list (the leading shape).

    Args:
        k: the cutoff, an integer >= 1, or `None` for the whole list.
        name: the metric's name (default `"ndcg_{k}"`, or `"ndcg"` without a cutoff).
        dtype: the metric's dtype.

    Example:

    >>> import numpy as np, keras_meta as km
    >>> metric = km.ranking.NDCG(k=2)
    >>> metric.update_state([[3.0], [0.0], [1.0]], [[0.3], [0.2], [0.1]])
    >>> dcg = 7 + 0 / np.log2(3); ideal = 7 + 1 / np.log2(3)
    >>> bool(np.isclose(float(metric.result()), dcg / ideal))
    True
    """

    def __init__(self, k: int | None = None, name: str | None = None, dtype=None):
        k = check_int("k", k, allow_none=True)
        if name is None:
            name = "ndcg" if k is None else f"ndcg_{k}"
        super().__init__(name=name, dtype=dtype)
        self.k = k
        self.total = self.add_variable(
            shape=(), initializer="zeros", dtype=self.dtype, name="total"
        )
        self.count = self.add_variable(
            shape=(), initializer="zeros", dtype=self.dtype, name="count"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds the NDCG@k of each list of `(y_true, y_pred)`."""
        grades, scores = _as_lists(y_true, y_pred, self.dtype)
        values = _ndcg_per_list(grades, scores, self.k)
        if sample_weight is None:
            weights = ops.ones_like(values)
        else:
            weights = ops.broadcast_to(ops.cast(sample_weight, self.dtype), ops.shape(values))
        self.total.assign_add(ops.sum(values * weights))
        self.count.assign_add(ops.sum(weights))

    def result(self):
        """The mean NDCG@k of the lists seen (0 before any)."""
        return ops.divide_no_nan(self.total, self.count)

    def get_config(self) -> dict:
        """The metric's `k`, name and dtype."""
        return {**super().get_config(), "k": self.k}
