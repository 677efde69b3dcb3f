"""Inputs that used to pass silently: each gets a clear error (issue 12, section 2)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import ce, cluster_tasks, noisy_cluster_tasks, relu_mlp

import keras_meta as km

ASSERT = tf.errors.InvalidArgumentError


def maml():
    learner = km.MAML(relu_mlp(8, 16, 5), inner_learning_rate=0.4)
    learner.compile(optimizer=keras.optimizers.Adam(1e-2), loss=ce())
    return learner


def with_value(x, key, value, episode=0, index=(0, 0)):
    x = {k: v.copy() for k, v in x.items()}
    x[key][(episode, *index)] = value
    return x


def weights(learner):
    return [v.numpy().copy() for v in learner.trainable_variables]


# ---------------------------------------------------------------------------
# NaN / Inf.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("key,value", [("support_x", np.nan), ("query_x", np.inf)])
def test_fit_stops_on_non_finite_inputs_before_updating_the_weights(key, value):
    learner = maml()
    x, y = cluster_tasks(4, seed=0)
    learner.fit(x, y, batch_size=2, verbose=0)  # traced and trained on good data
    before = weights(learner)
    bad = with_value(x, key, value, episode=1)
    with pytest.raises(ASSERT, match=f"finite values in `{key}`"):
        learner.fit(bad, y, batch_size=4, verbose=0)
    for a, b in zip(before, weights(learner)):
        np.testing.assert_array_equal(a, b)
    assert all(np.isfinite(w).all() for w in weights(learner))


def test_non_finite_regression_targets_are_refused():
    learner = km.MAML(relu_mlp(1, 8, 1), inner_learning_rate=0.01)
    learner.compile(optimizer="adam", loss="mse")
    x, y = next(iter(km.data.sinusoid(seed=0).batch(2)))
    x = {k: v.numpy() for k, v in x.items()}
    x["support_y"][0, 0, 0] = np.nan
    with pytest.raises(ASSERT, match="finite values in `support_y`"):
        learner.fit(x, y.numpy(), batch_size=2, verbose=0)


def test_predict_evaluate_adapt_and_export_refuse_non_finite_inputs(tmp_path):
    learner = maml()
    x, y = cluster_tasks(4, seed=0)
    learner.fit(x, y, batch_size=2, verbose=0)
    bad = with_value(x, "support_x", np.nan)
    with pytest.raises(ASSERT, match="finite values in `support_x`"):
        learner.predict(bad, verbose=0)
    with pytest.raises(ASSERT, match="finite values in `support_x`"):
        km.evaluate(learner, (bad, y), num_episodes=4)
    with pytest.raises(ValueError, match=r"finite values in `support_x`.*index \(0, 0\)"):
        learner.adapt(bad["support_x"][0], bad["support_y"][0])
    learner.export(str(tmp_path / "meta"), verbose=False)
    meta = tf.saved_model.load(str(tmp_path / "meta"))
    with pytest.raises(ASSERT, match="finite values in `support_x`"):
        meta.adapt_and_predict(bad["support_x"][0], bad["support_y"][0], bad["query_x"][0])
    bad = with_value(x, "query_x", -np.inf)
    with pytest.raises(ASSERT, match="finite values in `query_x`"):
        meta.adapt_and_predict(bad["support_x"][0], bad["support_y"][0], bad["query_x"][0])


def test_samplers_check_their_arrays_once_at_construction():
    images = np.random.default_rng(0).random((40, 4, 4, 1)).astype("float32")
    labels = np.repeat(np.arange(8), 5)
    images[7, 1, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"finite values in `x`.*index \(7, 1, 2, 0\)"):
        km.data.episodes(images, labels, ways=5, shots=1, queries=1)


# ---------------------------------------------------------------------------
# Empty support sets.
# ---------------------------------------------------------------------------
def empty_support(x):
    return {
        "support_x": x["support_x"][:, :0],
        "support_y": x["support_y"][:, :0],
        "query_x": x["query_x"],
    }


def test_fit_and_adapt_refuse_an_empty_support_set():
    learner = maml()
    x, y = cluster_tasks(4, seed=0)
    with pytest.raises(ValueError, match=r"at least one support example.*\(2, 0, 8\)"):
        learner.fit(empty_support(x), y, batch_size=2, verbose=0)
    with pytest.raises(ValueError, match=r"at least one support example.*\(0, 8\)"):
        learner.adapt(x["support_x"][0, :0], x["support_y"][0, :0])


@pytest.mark.parametrize("kind", ["maml", "protonet"])
def test_exported_adapt_and_predict_refuses_an_empty_support_set(tmp_path, kind):
    learner = maml() if kind == "maml" else km.ProtoNet(relu_mlp())
    learner.export(str(tmp_path / "meta"), input_shape=(8,), verbose=False)
    meta = tf.saved_model.load(str(tmp_path / "meta"))
    x, _ = noisy_cluster_tasks(1, seed=4)
    with pytest.raises(ASSERT, match="at least one support example"):
        meta.adapt_and_predict(x["support_x"][0, :0], x["support_y"][0, :0], x["query_x"][0])


# ---------------------------------------------------------------------------
# Labels of the wrong kind for the loss; the export's label dtypes.
# ---------------------------------------------------------------------------
def test_float_class_labels_with_a_classification_loss_are_refused():
    learner = maml()
    x, y = cluster_tasks(4, seed=0)
    floats = dict(x, support_y=x["support_y"][..., None].astype("float32") + 0.7)
    with pytest.raises(ValueError, match=r"classification loss.*float32.*\(2, 5, 1\)"):
        learner.fit(floats, y[..., None].astype("float32"), batch_size=2, verbose=0)
    with pytest.raises(ValueError, match="classification loss"):
        learner.adapt(floats["support_x"][0], floats["support_y"][0])


def test_class_ids_with_a_regression_loss_are_refused():
    learner = km.MAML(relu_mlp(8, 16, 1), inner_learning_rate=0.1)
    learner.compile(optimizer="adam", loss="mse")
    x, y = cluster_tasks(4, seed=0)
    with pytest.raises(ValueError, match=r"regression loss.*int32"):
        learner.fit(x, y, batch_size=2, verbose=0)


def test_export_accepts_int32_and_int64_labels_whatever_the_last_call(tmp_path):
    learner = maml()
    x, y = cluster_tasks(4, seed=0)
    learner.fit(x, y, batch_size=2, verbose=0)
    sx, sy, qx = x["support_x"][0], x["support_y"][0], x["query_x"][0]
    learner.adapt(sx, sy.astype("int64"))  # the last call saw int64 labels
    learner.export(str(tmp_path / "meta"), verbose=False)
    assert learner._episode_spec["label_dtype"] == "int64"  # unchanged by the export
    meta = tf.saved_model.load(str(tmp_path / "meta"))
    expected = learner.predict({k: v[:1] for k, v in x.items()}, verbose=0)[0]
    for dtype in ("int32", "int64"):
        out = meta.adapt_and_predict(sx, tf.constant(sy, dtype), qx).numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # Float labels are not cast to class ids, and the range is checked.
    with pytest.raises((ValueError, TypeError)):
        meta.adapt_and_predict(sx, sy.astype("float32") + 0.7, qx)
    with pytest.raises(ASSERT, match="must be < 5"):
        meta.adapt_and_predict(sx, tf.constant(sy + 5, "int64"), qx)


# ---------------------------------------------------------------------------
# Multi-output models.
# ---------------------------------------------------------------------------
def test_a_multi_output_functional_model_is_refused():
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(4)(inputs)
    net = keras.Model(inputs, [keras.layers.Dense(5)(hidden), keras.layers.Dense(1)(hidden)])
    with pytest.raises(ValueError, match="single output tensor.*list of 2 outputs"):
        km.MAML(net)


class TwoHeads(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.a = keras.layers.Dense(5)
        self.b = keras.layers.Dense(1)

    def call(self, x):
        return self.a(x), self.b(x)


def test_a_subclassed_model_with_several_outputs_is_refused():
    learner = km.MAML(TwoHeads(), inner_learning_rate=0.1)
    learner.compile(optimizer="adam", loss=ce())
    x, y = cluster_tasks(2, seed=0)
    with pytest.raises(ValueError, match="single output tensor.*tuple of 2 outputs"):
        learner.fit(x, y, batch_size=2, verbose=0)


# ---------------------------------------------------------------------------
# Truncated .keras files.
# ---------------------------------------------------------------------------
def test_load_learner_names_a_truncated_file(tmp_path):
    learner = maml()
    x, y = cluster_tasks(2, seed=0)
    learner.fit(x, y, batch_size=2, verbose=0)
    path = tmp_path / "learner.keras"
    learner.save(path)
    loaded = km.load_learner(path)
    for a, b in zip(learner.trainable_variables, loaded.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"learner\.keras' is not a valid Keras archive"):
        km.load_learner(path)
    with pytest.raises(FileNotFoundError, match=r"missing\.keras.*does not exist"):
        km.load_learner(tmp_path / "missing.keras")
