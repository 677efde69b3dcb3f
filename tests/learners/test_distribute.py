"""Learners under tf.distribute.MirroredStrategy (two logical CPU devices)
against the same learners without a strategy.

The meta-gradient is the mean over all episodes, whichever replica ran them,
so the trainable weights must match those of a run without a strategy. The
state (BatchNorm moving statistics, MAML++'s per-step statistics) is carried
through each replica's share of the episodes: after a step every replica must
hold the mean of the states that the shares give, as a run without a
strategy computes them share by share.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import ce, cluster_tasks, mirrored_strategy, relu_mlp

import keras_meta as km

# Every MAML++ option; second order from the start, so that the second-order
# graph through per-step BatchNorm runs on both replicas.
MAML_PLUS_PLUS = {
    "multi_step_loss": True,
    "learn_inner_rates": True,
    "per_step_bn": True,
    "first_order_epochs": 0,
}

LEARNERS = {
    "maml": lambda: km.MAML(relu_mlp(8, 16, 5, batchnorm=True), 0.3, 2),
    "maml++": lambda: km.MAML(relu_mlp(8, 16, 5, batchnorm=True), 0.3, 2, **MAML_PLUS_PLUS),
    "metasgd": lambda: km.MetaSGD(relu_mlp(8, 16, 5, batchnorm=True), 0.3, 2),
    "protonet": lambda: km.ProtoNet(relu_mlp(8, 16, 16, batchnorm=True)),
    "r2d2": lambda: km.R2D2(relu_mlp(8, 16, 16, batchnorm=True)),
}

# Learner weights (besides the wrapped model's) that a step must move, so
# that the comparison covers them: learned rates, per-step BatchNorm, λ and scale.
OWN_WEIGHTS = {
    "maml": [],
    "maml++": ["inner_rates", "gamma_per_step", "beta_per_step"],
    "metasgd": ["inner_rate"],
    "protonet": [],
    "r2d2": ["log_l2_regularizer", "scale"],
}


def make(name, strategy=None):
    keras.utils.set_random_seed(3)
    with (strategy or tf.distribute.get_strategy()).scope():
        learner = LEARNERS[name]()
        learner.compile(optimizer=keras.optimizers.SGD(0.5), loss=ce())
    return learner


def values(variables):
    return [np.asarray(v.numpy(), dtype="float64") for v in variables]


# ProtoNet (with BatchNorm state) in the default suite; the others take
# 10-30 s each (two traces on two replicas) and run in the slow step.
@pytest.mark.parametrize(
    "name",
    [
        "protonet",
        *(
            pytest.param(name, marks=pytest.mark.slow)
            for name in ["maml", "maml++", "metasgd", "r2d2"]
        ),
    ],
)
def test_mirrored_step_matches_the_default_weights_and_state(name):
    strategy = mirrored_strategy()
    x, y = cluster_tasks(4, seed=3, shots=2)

    # Without a strategy, one step on each replica's share of the batch (the
    # first and the last two episodes) from the same starting point. With
    # SGD the step on the whole batch is the mean of the two steps (the
    # meta-gradient is the mean over the episodes); so is the expected state.
    learner = make(name)
    learner.predict(x, verbose=0)  # builds every weight
    start = values(learner.variables)
    shares = []
    for i in (0, 2):
        for v, s in zip(learner.variables, start):
            v.assign(s.astype(v.dtype))
        learner.train_on_batch({k: v[i : i + 2] for k, v in x.items()}, y[i : i + 2])
        state = tf.nest.flatten(learner.state_variables())
        shares.append((values(learner.trainable_variables), values(state)))
    (trainable_0, state_0), (trainable_1, state_1) = shares

    mirrored = make(name, strategy)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    mirrored.fit(dataset, epochs=1, verbose=0)

    got = values(mirrored.trainable_variables)
    assert [g.shape for g in got] == [t.shape for t in trainable_0]
    for g, a, b in zip(got, trainable_0, trainable_1, strict=True):
        np.testing.assert_allclose(g, (a + b) / 2, rtol=1e-4, atol=1e-6)
    state = tf.nest.flatten(mirrored.state_variables())
    assert len(state) == len(state_0) >= 2
    for variable, a, b in zip(state, state_0, state_1, strict=True):
        copies = strategy.experimental_local_results(variable.value)
        assert len(copies) == 2
        for copy in copies:  # every replica holds the same, expected value
            np.testing.assert_allclose(copy.numpy(), (a + b) / 2, rtol=1e-5, atol=1e-6)

    # The comparisons have power: the step moved the weights, the learner's
    # own ones included, and the two shares gave different states.
    after = values(learner.variables)
    moved = {v.path: np.abs(a - b).max() for v, a, b in zip(learner.variables, start, after)}
    assert max(moved.values()) > 1e-3
    for part in OWN_WEIGHTS[name]:
        own = [d for path, d in moved.items() if part in path]
        assert own and max(own) > 1e-4, (part, own)
    assert max(np.abs(a - b).max() for a, b in zip(state_0, state_1)) > 1e-3
