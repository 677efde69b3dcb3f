"""Ranking losses and NDCG@k (keras_meta.ranking) against hand-computed values and
float64 numpy references, and MAML meta-trained on ranking tasks."""

import itertools
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_meta as km


# ---------------------------------------------------------------------------
# numpy float64 references.
# ---------------------------------------------------------------------------
def ref_dcg(grades_in_order, k):
    cut = len(grades_in_order) if k is None else min(k, len(grades_in_order))
    return sum((2.0 ** g - 1.0) / math.log2(r + 2) for r, g in enumerate(grades_in_order[:cut]))


def ref_ndcg(grades, scores, k):
    """Expected NDCG@k over every order of the items that sorts the scores
    descending (each such order equally likely): brute force over permutations."""
    grades, scores = np.asarray(grades, np.float64), np.asarray(scores, np.float64)
    ideal = ref_dcg(sorted(grades, reverse=True), k)
    if ideal == 0:
        return 0.0
    orders = [
        p for p in itertools.permutations(range(len(grades)))
        if all(scores[p[i]] >= scores[p[i + 1]] for i in range(len(p) - 1))
    ]
    return float(np.mean([ref_dcg(grades[list(p)], k) for p in orders]) / ideal)


def ref_softmax_loss(grades, scores):
    grades, scores = np.asarray(grades, np.float64), np.asarray(scores, np.float64)
    if grades.sum() == 0:
        return 0.0
    target = grades / grades.sum()
    log_p = scores - scores.max() - np.log(np.exp(scores - scores.max()).sum())
    return float(-(target * log_p).sum())


def ref_pairwise_loss(grades, scores):
    terms = [
        math.log1p(math.exp(-(scores[i] - scores[j])))
        for i in range(len(grades))
        for j in range(len(grades))
        if grades[i] > grades[j]
    ]
    return float(np.mean(terms)) if terms else 0.0


def ndcg(grades, scores, k):
    metric = km.ranking.NDCG(k=k, dtype="float64")
    metric.update_state(np.asarray(grades, np.float64), np.asarray(scores, np.float64))
    return float(metric.result())


# ---------------------------------------------------------------------------
# NDCG.
# ---------------------------------------------------------------------------
def test_ndcg_hand_computed():
    # Ranked order: grades 3, 0, 1. DCG@2 = (2^3 - 1) / log2(2) + 0 = 7;
    # ideal order 3, 1, 0: IDCG@2 = 7 + 1 / log2(3).
    assert ndcg([3, 0, 1], [0.3, 0.2, 0.1], k=2) == pytest.approx(7 / (7 + 1 / math.log2(3)))
    # The whole list: DCG = 7 + 0 + 1 / 2, IDCG = 7 + 1 / log2(3).
    assert ndcg([3, 0, 1], [0.3, 0.2, 0.1], k=None) == pytest.approx(
        7.5 / (7 + 1 / math.log2(3))
    )
    assert ndcg([3, 0, 1], [0.3, 0.1, 0.2], k=3) == pytest.approx(1.0)


def test_ndcg_ties_are_the_expectation_over_orders():
    # Two tied items, grades 1 and 0: the relevant one is first half the time.
    assert ndcg([1, 0], [0.0, 0.0], k=None) == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert ndcg([1, 0], [0.0, 0.0], k=1) == pytest.approx(0.5)
    # The input order never breaks ties.
    assert ndcg([0, 1], [5.0, 5.0], k=1) == ndcg([1, 0], [5.0, 5.0], k=1)


def test_ndcg_all_zero_grades_and_k_beyond_the_list():
    assert ndcg([0, 0, 0], [0.3, 0.1, 0.2], k=2) == 0.0
    assert ndcg([2, 1, 0], [0.1, 0.3, 0.2], k=10) == pytest.approx(
        ndcg([2, 1, 0], [0.1, 0.3, 0.2], k=None)
    )


@pytest.mark.parametrize("k", [1, 3, None])
def test_ndcg_matches_brute_force_reference_with_ties(k):
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 7))
        grades = rng.integers(0, 4, size=n).astype(float)
        scores = rng.integers(0, 3, size=n).astype(float)  # many ties
        assert ndcg(grades, scores, k) == pytest.approx(ref_ndcg(grades, scores, k), abs=1e-12)


def test_ndcg_is_a_mean_over_lists_of_any_leading_shape():
    rng = np.random.default_rng(1)
    grades = rng.integers(0, 5, size=(3, 2, 6, 1)).astype(float)
    scores = rng.normal(size=(3, 2, 6, 1))
    expected = np.mean(
        [ref_ndcg(g[:, 0], s[:, 0], 4) for g, s in zip(grades.reshape(6, 6, 1),
                                                       scores.reshape(6, 6, 1))]
    )
    metric = km.ranking.NDCG(4, dtype="float64")
    metric.update_state(grades[:2], scores[:2])
    metric.update_state(grades[2:], scores[2:])
    assert float(metric.result()) == pytest.approx(expected, abs=1e-12)
    # Per-list weights: only the first list counts.
    weights = np.zeros((3, 2))
    weights[0, 0] = 1.0
    metric.reset_state()
    metric.update_state(grades, scores, sample_weight=weights)
    assert float(metric.result()) == pytest.approx(
        ref_ndcg(grades[0, 0, :, 0], scores[0, 0, :, 0], 4)
    )


def test_random_and_constant_scorers_match_the_expected_ndcg():
    rng = np.random.default_rng(2)
    grades = rng.integers(0, 5, size=(2000, 10)).astype(float)
    gains = 2.0 ** grades - 1
    discounts = 1 / np.log2(np.arange(2, 12))
    # A uniformly random order gives each of the first k ranks the list's mean gain.
    ideal = (np.sort(gains, axis=1)[:, ::-1][:, :5] * discounts[:5]).sum(axis=1)
    expected = gains.mean(axis=1) * discounts[:5].sum() / ideal
    # All scores tied: exactly that expectation, list by list.
    metric = km.ranking.NDCG(5, dtype="float64")
    metric.update_state(grades, np.zeros_like(grades))
    assert float(metric.result()) == pytest.approx(expected.mean(), abs=1e-12)
    # Random scores: close to it.
    metric.reset_state()
    metric.update_state(grades, rng.normal(size=grades.shape))
    assert abs(float(metric.result()) - expected.mean()) < 0.01
    # A perfect scorer: 1.
    metric.reset_state()
    metric.update_state(grades, grades + rng.uniform(0, 0.5, size=grades.shape))
    assert float(metric.result()) == pytest.approx(1.0)


def test_ndcg_config_round_trip_and_bad_k():
    metric = km.ranking.NDCG(k=7)
    assert metric.name == "ndcg_7" and km.ranking.NDCG().name == "ndcg"
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert isinstance(clone, km.ranking.NDCG) and clone.k == 7 and clone.name == "ndcg_7"
    with pytest.raises(ValueError, match=r"`k` must be an integer >= 1; received k=0"):
        km.ranking.NDCG(k=0)
    with pytest.raises(ValueError, match=r"same shape.*y_true of shape \(3,\)"):
        metric.update_state(np.zeros(3), np.zeros(4))


# ---------------------------------------------------------------------------
# Losses.
# ---------------------------------------------------------------------------
LOSSES = [
    (km.ranking.ListwiseSoftmaxLoss, ref_softmax_loss),
    (km.ranking.PairwiseLogisticLoss, ref_pairwise_loss),
]


def test_losses_hand_computed():
    softmax = km.ranking.ListwiseSoftmaxLoss()
    # Target (2/3, 1/3, 0) against softmax of (0, 0, 0) = 1/3 each: log 3.
    assert float(softmax(np.array([[2.0], [1.0], [0.0]]), np.zeros((3, 1)))) == pytest.approx(
        math.log(3), rel=1e-6
    )
    pairwise = km.ranking.PairwiseLogisticLoss()
    # Pairs (0 > 1), (0 > 2), (1 > 2) with margins 1, 2, 1.
    expected = (2 * math.log1p(math.exp(-1)) + math.log1p(math.exp(-2))) / 3
    assert float(pairwise([2.0, 1.0, 0.0], [[2.0], [1.0], [0.0]])) == pytest.approx(
        expected, rel=1e-6
    )
    # Nothing to rank: loss 0 (and finite).
    for loss in (softmax, pairwise):
        assert float(loss(np.zeros((4, 1)), np.arange(4.0)[:, None])) == 0.0
    assert float(pairwise(np.full((4, 1), 2.0), np.arange(4.0)[:, None])) == 0.0


@pytest.mark.parametrize("loss_cls,reference", LOSSES)
def test_losses_match_reference_and_average_over_lists(loss_cls, reference):
    rng = np.random.default_rng(3)
    grades = rng.integers(0, 4, size=(5, 7, 1)).astype(float)
    grades[1] = 0.0  # a list with nothing to rank counts as 0
    scores = rng.normal(size=(5, 7, 1))
    expected = np.mean([reference(g[:, 0], s[:, 0]) for g, s in zip(grades, scores)])
    loss = loss_cls(dtype="float64")
    assert float(loss(grades, scores)) == pytest.approx(expected, rel=1e-10)
    # [n] grades with [n, 1] scores are one list.
    assert float(loss(grades[0, :, 0], scores[0])) == pytest.approx(
        reference(grades[0, :, 0], scores[0, :, 0]), rel=1e-10
    )


@pytest.mark.parametrize("loss_cls,reference", LOSSES)
def test_loss_gradient_matches_finite_differences(loss_cls, reference):
    rng = np.random.default_rng(4)
    grades = np.array([3.0, 0.0, 1.0, 1.0, 2.0, 0.0])[:, None]
    scores = rng.normal(size=(6, 1))
    loss = loss_cls(dtype="float64")
    s = tf.constant(scores)
    with tf.GradientTape() as tape:
        tape.watch(s)
        value = loss(grades, s)
    grad = tape.gradient(value, s).numpy()[:, 0]
    eps = 1e-6
    numeric = []
    for i in range(6):
        up, down = scores.copy(), scores.copy()
        up[i] += eps
        down[i] -= eps
        numeric.append(
            (reference(grades[:, 0], up[:, 0]) - reference(grades[:, 0], down[:, 0])) / (2 * eps)
        )
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("loss_cls,reference", LOSSES)
def test_loss_config_round_trip(loss_cls, reference):
    loss = loss_cls(name="custom")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(clone) is loss_cls and clone.name == "custom"
    assert keras.losses.get(keras.losses.serialize(loss)).name == "custom"


# ---------------------------------------------------------------------------
# MAML on ranking tasks.
# ---------------------------------------------------------------------------
def ranking_learner():
    net = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(32, "tanh"), keras.layers.Dense(1)]
    )
    # A small initial inner rate: an untrained init barely moves in one step;
    # meta-training must find an init and rates from which one step ranks well.
    learner = km.MAML(
        net, inner_learning_rate=0.02, inner_steps=1, first_order=True, learn_inner_rates=True
    )
    learner.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=km.ranking.ListwiseSoftmaxLoss(),
        metrics=[km.ranking.NDCG(5)],
    )
    return learner


def test_maml_meta_training_improves_query_ndcg():
    test = km.data.ranking(dim=4, shots=20, queries=20, seed=1, num_episodes=60)
    learner = ranking_learner()
    before = km.evaluate(learner, test, num_episodes=60, return_per_episode=True)
    learner.fit(
        km.data.ranking(dim=4, shots=20, queries=20, seed=0).batch(8),
        steps_per_epoch=40,
        epochs=1,
        verbose=0,
    )
    after = km.evaluate(learner, test, num_episodes=60, return_per_episode=True)
    # evaluate's NDCG is the per-episode query NDCG@5 of the adapted learner.
    assert set(after) >= {"ndcg_5", "ndcg_5_ci95"} and len(after["per_episode"]["ndcg_5"]) == 60
    per_episode = after["per_episode"]["ndcg_5"]
    assert 0.0 <= min(per_episode) and max(per_episode) <= 1 + 1e-6
    # Measured with three Keras seeds: about 0.44-0.49 before, 0.92-0.94 after.
    assert after["ndcg_5"] > before["ndcg_5"] + 0.2, (before["ndcg_5"], after["ndcg_5"])
    # A random order of 20 items with 5 equiprobable grades scores about 0.37.
    assert after["ndcg_5"] > 0.8


def test_learner_with_ranking_loss_and_metric_saves_and_loads(tmp_path):
    net = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, "tanh"), keras.layers.Dense(1)]
    )
    learner = km.MAML(net, inner_learning_rate=0.05, inner_steps=1)
    learner.compile(
        optimizer="adam", loss=km.ranking.PairwiseLogisticLoss(), metrics=[km.ranking.NDCG(3)]
    )
    learner.fit(km.data.ranking(dim=4, seed=0).batch(2), steps_per_epoch=1, epochs=1, verbose=0)
    learner.save(tmp_path / "ranker.keras")
    loaded = km.load_learner(tmp_path / "ranker.keras")
    test = km.data.ranking(dim=4, seed=1, num_episodes=4)
    a, b = km.evaluate(learner, test, num_episodes=4), km.evaluate(loaded, test, num_episodes=4)
    assert a["ndcg_3"] == pytest.approx(b["ndcg_3"]) and a["loss"] == pytest.approx(b["loss"])
