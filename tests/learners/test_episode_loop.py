"""The loop over the episodes of a meta-batch: parallel episodes and XLA."""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import ce

import keras_meta as km

B, WAYS, SHOTS, QUERIES = 4, 3, 2, 3


def conv_bn(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, strides=2, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.BatchNormalization(center=True, scale=False),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(WAYS),
        ]
    )


def image_batches(n, seed=0, b=B):
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(WAYS).repeat(SHOTS), (b, 1)).astype("int32")
    query = np.tile(np.arange(WAYS).repeat(QUERIES), (b, 1)).astype("int32")
    return [
        (
            {
                "support_x": rng.normal(size=(b, WAYS * SHOTS, 8, 8, 1)).astype("float32"),
                "support_y": labels,
                "query_x": rng.normal(size=(b, WAYS * QUERIES, 8, 8, 1)).astype("float32"),
            },
            query,
        )
        for _ in range(n)
    ]


def train(batches, learner_fn=km.MAML, jit=False, **kwargs):
    learner = learner_fn(conv_bn(), **kwargs)
    learner.compile(optimizer=keras.optimizers.SGD(0.1), loss=ce(), jit_compile=jit)
    for x, y in batches:
        learner.train_on_batch(x, y)
    return learner


@pytest.mark.parametrize("first_order", [False, True])
def test_parallel_episodes_do_not_change_results(first_order):
    batches = image_batches(3)
    kwargs = dict(inner_learning_rate=0.3, inner_steps=2, first_order=first_order)
    one = train(batches, parallel_episodes=1, **kwargs)
    many = train(batches, parallel_episodes=B, **kwargs)
    # Gradients and BatchNorm statistics are accumulated in episode order
    # whatever runs at the same time, so the results are bitwise equal.
    for a, b in zip(one.variables, many.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    x, _ = image_batches(1, seed=9)[0]
    np.testing.assert_array_equal(one.predict(x, verbose=0), many.predict(x, verbose=0))


def test_parallel_episodes_is_validated_and_saved(tmp_path):
    for bad in (0, -1):
        with pytest.raises(ValueError, match="parallel_episodes"):
            km.MAML(conv_bn(), parallel_episodes=bad)
    # Not an integer: a TypeError, as for every count (keras_meta.validation).
    for bad in (2.0, True, "4"):
        with pytest.raises(TypeError, match="parallel_episodes"):
            km.MAML(conv_bn(), parallel_episodes=bad)
    learner = km.ProtoNet(conv_bn(), parallel_episodes=2)
    assert learner.get_config()["parallel_episodes"] == 2
    learner = km.MAML(conv_bn(), parallel_episodes=3)
    learner.compile(optimizer="sgd", loss=ce())
    x, y = image_batches(1)[0]
    learner.train_on_batch(x, y)
    path = str(tmp_path / "learner.keras")
    learner.save(path)
    assert keras.saving.load_model(path).parallel_episodes == 3


@pytest.mark.slow  # two XLA compilations of a second-order step: about a minute
@pytest.mark.parametrize("learner_fn", [km.MAML, km.MetaSGD])
def test_xla_unrolls_a_small_static_meta_batch(learner_fn):
    batches = image_batches(2)
    plain = train(batches, learner_fn, inner_learning_rate=0.3, inner_steps=2)
    xla = train(batches, learner_fn, jit=True, inner_learning_rate=0.3, inner_steps=2)
    for a, b in zip(plain.variables, xla.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-4, atol=2e-5, err_msg=a.path)
    # The XLA step has no while loop over the episodes.
    x, y = tf.nest.map_structure(tf.constant, batches[0])
    xla._unroll_episodes(B)  # the decision the traced step takes
    graph = tf.function(xla.train_step).get_concrete_function((x, y)).graph
    assert not [op for op in graph.get_operations() if op.type in ("While", "StatelessWhile")]
    graph = tf.function(plain.train_step).get_concrete_function((x, y)).graph
    assert [op for op in graph.get_operations() if op.type in ("While", "StatelessWhile")]


# Slow (CI's slow step): minutes of XLA compilation on 2 cores.
@pytest.mark.slow
def test_xla_with_a_large_or_unknown_meta_batch_warns_once(caplog):
    learner = km.MAML(conv_bn(), inner_learning_rate=0.3)
    learner.compile(optimizer="sgd", loss=ce(), jit_compile=True)
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("the warning is about XLA on CPU")
    x, y = image_batches(1)[0]
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(B)  # B unknown
    with caplog.at_level(logging.WARNING, logger="keras_meta"):
        learner.fit(dataset, epochs=2, verbose=0)
    warnings = [r for r in caplog.records if "jit_compile=True" in r.getMessage()]
    assert len(warnings) == 1
    assert "unknown size" in warnings[0].getMessage()
    assert "jit_compile=False" in warnings[0].getMessage()
    assert np.isfinite(learner.model.layers[-1].kernel.numpy()).all()
    # Without XLA the same learner says nothing.
    caplog.clear()
    quiet = km.MAML(conv_bn(), inner_learning_rate=0.3)
    quiet.compile(optimizer="sgd", loss=ce())
    with caplog.at_level(logging.WARNING, logger="keras_meta"):
        quiet.fit(dataset, verbose=0)
    assert not [r for r in caplog.records if "jit_compile" in r.getMessage()]
