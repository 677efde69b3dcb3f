"""Learners whose wrapped model computes in float16 or bfloat16
(`keras.mixed_precision`): the meta-gradient is that of float32 within the
precision of the compute dtype, weights, fast weights and outputs stay
float32, and loss scaling keeps tiny inner gradients from underflowing.

Measured relative errors of the meta-gradients (global norm of the
difference over the norm of the float32 gradient) on these models, for
float16 and bfloat16: MAML on the MLP 3e-3 and 0.10, MAML on conv4 with
BatchNorm 0.06 and 0.7, ProtoNet on conv4 0.016 and 0.20, Reptile 4e-4
and 4e-3. The tolerances are two to three times that. conv4 with BatchNorm
over a 3-example support set is ill-conditioned: a relative perturbation of
1e-3 of the float32 weights (about float16's precision) moves its float32
meta-gradient by 10-40%, so bfloat16 (8-bit mantissa) gives a meta-gradient
that only points the same way.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import dense_net

import keras_meta as km
from keras_meta.inner_loop import inner_loop
from keras_meta.learners._precision import INNER_LOSS_SCALE

POLICIES = ["mixed_float16", "mixed_bfloat16"]
# Relative error of the meta-gradient allowed per case and policy (see the
# docstring for the measured values).
RTOL = {
    "maml-mlp": {"mixed_float16": 1e-2, "mixed_bfloat16": 0.25},
    "maml-conv-bn": {"mixed_float16": 0.15, "mixed_bfloat16": 0.95},
    "protonet": {"mixed_float16": 4e-2, "mixed_bfloat16": 0.5},
    "reptile": {"mixed_float16": 2e-3, "mixed_bfloat16": 1e-2},
}


@pytest.fixture(autouse=True)
def _restore_policy():
    previous = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(previous)


def _build(make, policy):
    """`make()` under `policy`, with the weights of a float32 `make()` (same seed)."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(7)
    reference = make()
    keras.config.set_dtype_policy(policy)
    model = make()
    keras.config.set_dtype_policy("float32")
    model.set_weights(reference.get_weights())
    return model


def _mlp():
    return dense_net(1, 1, (16, 16))


def _conv_bn():
    return km.models.conv4((16, 16, 1), num_outputs=3, filters=4)


def _conv_embedding():
    return km.models.conv4((16, 16, 1), filters=4)


def _regression(seed=0, b=2):
    rng = np.random.default_rng(seed)
    sx = rng.uniform(-3, 3, (b, 5, 1)).astype("float32")
    qx = rng.uniform(-3, 3, (b, 4, 1)).astype("float32")
    phase = rng.uniform(0, np.pi, (b, 1, 1))
    x = {"support_x": sx, "support_y": np.sin(sx + phase).astype("float32"), "query_x": qx}
    return x, np.sin(qx + phase).astype("float32")


def _images(seed=0, b=2, ways=3):
    rng = np.random.default_rng(seed)
    x = {
        "support_x": rng.normal(size=(b, ways, 16, 16, 1)).astype("float32"),
        "support_y": np.tile(np.arange(ways), (b, 1)).astype("int32"),
        "query_x": rng.normal(size=(b, 2 * ways, 16, 16, 1)).astype("float32"),
    }
    return x, np.tile(np.arange(ways).repeat(2), (b, 1)).astype("int32")


CASES = {
    "maml-mlp": (_mlp, lambda m: km.MAML(m, inner_learning_rate=0.1, inner_steps=2), "mse",
                 _regression),
    "maml-conv-bn": (_conv_bn, lambda m: km.MAML(m, inner_learning_rate=0.1, inner_steps=1),
                     keras.losses.SparseCategoricalCrossentropy(from_logits=True), _images),
    "protonet": (_conv_embedding, lambda m: km.ProtoNet(m),
                 keras.losses.SparseCategoricalCrossentropy(from_logits=True), _images),
    "reptile": (_mlp, lambda m: km.Reptile(m, inner_learning_rate=0.05, inner_steps=3), "mse",
                _regression),
}


def _meta_gradient(case, policy):
    """The meta-gradient of one batch: the weight change of one SGD(1) step
    (a loss-scale optimizer divides its scale out)."""
    make, learner_of, loss, data = CASES[case]
    learner = learner_of(_build(make, policy))
    optimizer = keras.optimizers.SGD(1.0)
    if policy == "mixed_float16":
        # Keras's initial scale (2**15) overflows ProtoNet's first step, which
        # the optimizer skips (and halves the scale): start where it is finite.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=2.0**8)
    learner.compile(optimizer=optimizer, loss=loss)
    x, y = data()
    before = [v.numpy() for v in learner.model.trainable_variables]
    logs = learner.train_on_batch(x, y, return_dict=True)
    after = [v.numpy() for v in learner.model.trainable_variables]
    return learner, [b - a for b, a in zip(before, after)], logs


def _relative_error(got, expected):
    diff = np.sqrt(sum(np.sum((g - e) ** 2) for g, e in zip(got, expected)))
    return diff / np.sqrt(sum(np.sum(e**2) for e in expected))


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_meta_gradient_is_close_to_float32_and_weights_stay_float32(case, policy):
    _, expected, _ = _meta_gradient(case, "float32")
    learner, got, logs = _meta_gradient(case, policy)
    assert learner.model.compute_dtype == policy.split("_")[1]
    assert all(np.all(np.isfinite(g)) for g in got)
    assert np.isfinite(logs["loss"])
    assert _relative_error(got, expected) < RTOL[case][policy]
    assert {v.dtype for v in learner.model.weights} == {"float32"}
    if policy == "mixed_float16":
        assert isinstance(learner.optimizer, keras.optimizers.LossScaleOptimizer)


def test_a_learner_made_after_the_policy_is_reset_still_scales_the_loss():
    learner = km.MAML(_build(_mlp, "mixed_float16"))
    assert keras.config.dtype_policy().name == "float32"
    learner.compile(optimizer="sgd", loss="mse")
    assert isinstance(learner.optimizer, keras.optimizers.LossScaleOptimizer)
    assert learner.inner_loss_scale() == INNER_LOSS_SCALE
    bf16 = km.MAML(_build(_mlp, "mixed_bfloat16"))
    bf16.compile(optimizer="sgd", loss="mse")
    assert not isinstance(bf16.optimizer, keras.optimizers.LossScaleOptimizer)
    assert bf16.inner_loss_scale() is None


def test_inner_loss_scaling_keeps_tiny_float16_gradients_from_underflowing():
    # A linear model with zero weights (outputs exactly 0) and support
    # targets `delta`: the MSE's gradient is -2·delta·mean(x) for the kernel
    # and -2·delta for the bias.
    keras.config.set_dtype_policy("mixed_float16")
    net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    keras.config.set_dtype_policy("float32")
    learner = km.MAML(net, inner_learning_rate=1.0)
    learner.compile(optimizer="sgd", loss="mse")
    x = np.array([[0.5], [1.0], [1.5], [2.0]], "float32")
    pred, _, _ = learner.forward(learner.model_params(), [], x, training=False)
    assert pred.dtype == "float32" and np.all(pred.numpy() == 0)
    delta = 2e-8
    y = np.full((4, 1), delta, "float32")
    episode = km.learners.Episode(x, y, x, None)
    expected = [np.array([[-2 * delta * x.mean()]]), np.array([-2 * delta])]

    def inner_gradients(loss_scale):
        grads = []

        def record(step, index, param, grad):
            grads.append(grad.numpy())
            return param

        inner_loop(
            learner.support_loss_fn(episode, training=False),
            learner.model_params(),
            [],
            steps=1,
            update_fn=record,
            loss_scale=loss_scale,
        )
        return grads

    unscaled = inner_gradients(None)
    assert all(np.all(g == 0) for g in unscaled)  # the float16 gradient underflows
    scaled = inner_gradients(learner.inner_loss_scale())
    for g, e in zip(scaled, expected):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, e, rtol=2e-2)


@pytest.mark.parametrize("policy", POLICIES)
def test_adapt_and_export_give_float32_models(policy, tmp_path):
    learner = km.MAML(_build(_mlp, policy), inner_learning_rate=0.1, inner_steps=1)
    learner.compile(optimizer="adam", loss="mse")
    x, y = _regression(b=1)
    learner.fit(x, y, epochs=1, verbose=0)
    expected = learner.predict(x, verbose=0)[0]
    assert expected.dtype == np.float32
    adapted = learner.adapt(x["support_x"][0], x["support_y"][0])
    got = adapted.predict(x["query_x"][0], verbose=0)
    assert got.dtype == np.float32
    assert {v.dtype for v in adapted.weights} == {"float32"}
    # The adapted copy casts its outputs once more, after the same compute.
    np.testing.assert_allclose(got, expected, rtol=1e-2, atol=1e-2)
    learner.export(str(tmp_path / "exported"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "exported"))
    out = served.adapt_and_predict(x["support_x"][0], x["support_y"][0], x["query_x"][0])
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-3, atol=1e-3)


def test_protonet_adapt_gives_a_float32_model():
    learner = km.ProtoNet(_build(_conv_embedding, "mixed_float16"))
    learner.compile(optimizer="adam", metrics=["accuracy"])
    x, y = _images(b=1)
    expected = learner.predict(x, verbose=0)[0]
    adapted = learner.adapt(x["support_x"][0], x["support_y"][0])
    got = adapted.predict(x["query_x"][0], verbose=0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-2, atol=1e-2)
