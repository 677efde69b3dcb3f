"""The shape of the learner tree: who takes which arguments, what is exported,
and the named state of MAML's per-step BatchNorm."""

import keras
import numpy as np

import keras_meta as km
from keras_meta.learners._per_step_bn import PerStepBatchNormState


def bn_mlp():
    return keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4), keras.layers.BatchNormalization(),
         keras.layers.Dense(2)]
    )


def test_reptile_is_an_inner_loop_learner_without_first_order_or_adapt_layers():
    learner = km.Reptile(bn_mlp())
    assert isinstance(learner, km.InnerLoopLearner)
    assert not isinstance(learner, km.GradientLearner)
    assert not hasattr(learner, "first_order") and not hasattr(learner, "adapt_layers")
    config = learner.get_config()
    assert "first_order" not in config and "adapt_layers" not in config
    assert isinstance(km.MAML(bn_mlp()), km.GradientLearner)


def test_extension_points_are_exported():
    for name in ("MetaLearner", "InnerLoopLearner", "GradientLearner", "EmbeddingLearner",
                 "Episode", "EpisodeBatch"):
        assert getattr(km, name) is getattr(km.learners, name)
        assert name in km.__all__


def test_per_step_batchnorm_state_is_named_by_statistic():
    model = bn_mlp()
    learner = km.MAML(model, 0.1, inner_steps=3, per_step_bn=True)
    state = learner.state_variables()
    assert isinstance(state, PerStepBatchNormState)
    assert [id(v) for v in state.model] == [id(v) for v in model.non_trainable_variables]
    bn = model.layers[1]
    assert sorted(state.statistics) == sorted([bn.moving_mean.path, bn.moving_variance.path])
    assert tuple(state.statistics[bn.moving_mean.path].shape) == (3, 4)
    # Without per-step BatchNorm the state is the model's own list.
    plain = km.MAML(bn_mlp())
    assert [id(v) for v in plain.state_variables()] == [
        id(v) for v in plain.model.non_trainable_variables
    ]


def test_per_step_statistics_of_a_training_step_go_to_their_copy():
    keras.utils.set_random_seed(0)
    model = bn_mlp()
    learner = km.MAML(model, 0.1, inner_steps=2, per_step_bn=True)
    learner.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = {"support_x": rng.normal(size=(1, 4, 3)).astype("float32"),
         "support_y": np.array([[0, 1, 0, 1]], "int32"),
         "query_x": rng.normal(size=(1, 4, 3)).astype("float32")}
    own = [v.numpy().copy() for v in model.non_trainable_variables]
    before = {k: v.numpy().copy() for k, v in learner.state_variables().statistics.items()}
    learner.train_on_batch(x, np.array([[0, 1, 0, 1]], "int32"))
    after = learner.state_variables().statistics
    for path, values in before.items():
        assert np.abs(after[path].numpy() - values).max(axis=-1).min() > 0  # both steps moved
    for a, v in zip(own, model.non_trainable_variables):
        np.testing.assert_array_equal(a, v.numpy())  # the model's own are untouched
