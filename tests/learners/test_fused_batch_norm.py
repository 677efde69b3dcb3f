"""The learners' fused BatchNorm call against Keras's own call.

`keras_meta._moments.fused_batch_norm_call` replaces Keras's training-mode
BatchNormalization while a learner traces its model; the reference is
Keras's call with exact moments (float32 here, float64 in
test_maml_gradient.py's meta-gradient tests)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_meta as km
from keras_meta import _keras_compat
from keras_meta._moments import exact_moments, fused_batch_norm, fused_batch_norm_call


def _outputs_and_derivatives(bn, x, fused):
    """Output, moving statistics, first and second derivatives of a loss."""
    w = tf.constant(np.random.default_rng(1).normal(size=x.shape).astype("float32"))
    variables = [x] + list(bn.trainable_variables)
    context = fused_batch_norm() if fused else exact_moments()
    with context, tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = bn(x, training=True)
            loss = tf.reduce_sum(tf.cast(w, y.dtype) * tf.sin(tf.cast(y, "float32")))
        first = inner.gradient(loss, variables)
        second = tf.add_n([tf.reduce_sum(tf.square(g)) for g in first])
    hessian_vector = outer.gradient(second, variables)
    moving = [v.numpy().copy() for v in bn.non_trainable_variables]
    return y, moving, first, hessian_vector


def _batch_norm(shape, **kwargs):
    rng = np.random.default_rng(0)
    bn = keras.layers.BatchNormalization(**kwargs)
    bn.build(shape)
    for v in bn.trainable_variables:
        v.assign(rng.uniform(0.5, 1.5, size=v.shape))
    return bn


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((6, 5, 5, 3), {}),
        ((6, 5, 5, 3), {"scale": False, "center": False, "momentum": 0.9}),
        ((7, 4), {"epsilon": 1e-5 + 1e-6}),
        ((3, 4, 2), {}),
    ],
)
def test_fused_call_equals_keras_call(shape, kwargs):
    x = tf.constant(np.random.default_rng(2).normal(size=shape).astype("float32") * 3 + 1)
    results = []
    for fused in (False, True):
        bn = _batch_norm(shape, **kwargs)
        results.append(_outputs_and_derivatives(bn, x, fused))
    (y0, m0, d0, h0), (y1, m1, d1, h1) = results
    np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-5)
    for a, b in zip(m1, m0):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(d1 + h1, d0 + h0):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


def test_mixed_precision_input_gives_the_layer_dtype():
    x = tf.constant(np.random.default_rng(3).normal(size=(4, 3, 3, 2)), dtype="float16")
    bn = keras.layers.BatchNormalization(dtype="mixed_float16")
    reference = keras.layers.BatchNormalization(dtype="mixed_float16")
    y = fused_batch_norm_call(bn, x, training=True)
    y_ref = reference(x, training=True)
    assert y.dtype == tf.float16
    np.testing.assert_allclose(y.numpy(), y_ref.numpy(), atol=2e-3)


@pytest.mark.parametrize(
    "case", ["float64", "mask", "renorm", "channels_first", "inference", "one_value"]
)
def test_what_the_kernel_does_not_cover_goes_to_keras(case):
    rng = np.random.default_rng(4)
    dtype, kwargs, call = "float32", {}, {"training": True}
    shape = (5, 3, 3, 2)
    if case == "float64":
        dtype = "float64"
    elif case == "mask":
        shape = (5, 4, 2)
        call["mask"] = tf.constant(rng.random((5, 4)) > 0.3)
    elif case == "renorm":
        kwargs["renorm"] = True
    elif case == "channels_first":
        kwargs["axis"] = 1
    elif case == "inference":
        call["training"] = False
    elif case == "one_value":
        shape = (1, 2)
    x = tf.constant(rng.normal(size=shape), dtype=dtype)
    fused = keras.layers.BatchNormalization(dtype=dtype, **kwargs)
    keras_bn = keras.layers.BatchNormalization(dtype=dtype, **kwargs)
    y = fused_batch_norm_call(fused, x, **call)
    y_ref = keras_bn(x, **call)
    # Keras's own call: the same ops, so the same bits.
    np.testing.assert_array_equal(y.numpy(), y_ref.numpy())
    graph = (
        tf.function(lambda v: fused_batch_norm_call(fused, v, **call))
        .get_concrete_function(tf.TensorSpec(shape, dtype))
        .graph
    )
    assert "FusedBatchNormV3" not in {op.type for op in graph.get_operations()}


def _op_types_of_forward(learner, x):
    fn = tf.function(
        lambda v: learner.forward(learner.model_params(), learner.model_state(), v, True)[0]
    )
    graph = fn.get_concrete_function(tf.TensorSpec(x.shape, x.dtype)).graph
    return {op.type for op in graph.get_operations()}


def _net():
    return km.models.conv4((16, 16, 1), num_outputs=None, filters=4)


@pytest.mark.parametrize(
    "make, fused",
    [
        (lambda: km.ProtoNet(_net()), True),
        (lambda: km.MAML(_net(), first_order=True), True),
        (lambda: km.Reptile(_net()), True),
        # Second-order meta-gradients keep Keras's ops (see keras_meta._moments).
        (lambda: km.MAML(_net()), False),
        (lambda: km.ANIL(_net(), head=["bn4"]), False),
    ],
)
def test_which_learners_trace_the_fused_kernel(make, fused):
    assert ("FusedBatchNormV3" in _op_types_of_forward(make(), tf.zeros((3, 16, 16, 1)))) == fused


def test_float64_models_keep_keras_ops():
    # The global policy, once read, no longer follows floatx: set both.
    previous = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        ops = _op_types_of_forward(km.ProtoNet(_net()), tf.zeros((3, 16, 16, 1), "float64"))
    finally:
        keras.config.set_floatx(previous[0])
        keras.config.set_dtype_policy(previous[1])
    assert "FusedBatchNormV3" not in ops


def test_the_attributes_the_fused_call_reads_exist():
    bn = keras.layers.BatchNormalization()
    bn.build((2, 3))
    missing = [a for a in _keras_compat.BATCH_NORM_ATTRIBUTES if not hasattr(bn, a)]
    assert not missing, f"Keras {keras.__version__} BatchNormalization lacks {missing}"
