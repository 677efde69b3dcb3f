"""Distillation: the loss against the hand formula; a student catches up."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import ce, np_softmax
from helpers import dense_net as dense

import keras_meta as km


def np_distillation_loss(t_logits, s_logits, y, temperature, alpha):
    """alpha * CE(y, s) + (1 - alpha) * T² * KL(p_t^T || p_s^T), batch means."""
    ce = -np.log(np_softmax(s_logits)[np.arange(len(y)), y]).mean()
    pt = np_softmax(t_logits / temperature)
    ps = np_softmax(s_logits / temperature)
    kl = (pt * np.log(pt / ps)).sum(-1).mean()
    return alpha * ce + (1 - alpha) * temperature**2 * kl


def reference_loss(teacher, student, x, y, temperature, alpha):
    """`np_distillation_loss` of the two logit models on `x`, in float64."""
    return np_distillation_loss(
        teacher(x).numpy().astype("float64"),
        student(x).numpy().astype("float64"),
        y,
        temperature,
        alpha,
    )


def batch(seed, n):
    """`n` random 3-feature examples with labels of 4 classes, and two
    models to distil: a teacher with one hidden layer, a linear student."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = rng.integers(0, 4, n).astype("int32")
    return x, y, dense(3, 4, (8,)), dense(3, 4)


def rings(n, seed):
    """Four classes on the quadrants of a noisy circle, plus nonlinear features."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    angle = y * np.pi / 2
    x = np.stack([np.cos(angle), np.sin(angle)], 1) * 2 + rng.normal(0, 0.7, (n, 2))
    return np.concatenate([x, np.sin(3 * x)], 1).astype("float32"), y.astype("int32")


@pytest.mark.parametrize("temperature, alpha", [(4.0, 0.5), (2.0, 0.0), (1.0, 1.0)])
def test_loss_matches_hand_formula(temperature, alpha):
    x, y, teacher, student = batch(0, 6)
    distiller = km.Distiller(teacher, student, temperature=temperature, alpha=alpha)
    distiller.compile(optimizer="sgd")
    loss = distiller.compute_loss(x, y, student(x))
    ref = reference_loss(teacher, student, x, y, temperature, alpha)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)


def test_probability_outputs():
    x, y, teacher, student = batch(1, 5)
    t_prob = keras.Sequential([teacher, keras.layers.Softmax()])
    s_prob = keras.Sequential([student, keras.layers.Softmax()])
    distiller = km.Distiller(t_prob, s_prob, temperature=3.0, alpha=0.3, from_logits=False)
    distiller.compile(optimizer="sgd")
    loss = distiller.compute_loss(x, y, s_prob(x))
    ref = reference_loss(teacher, student, x, y, 3.0, 0.3)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-4)


def test_train_step_moves_only_the_student():
    x, y, teacher, student = batch(2, 8)
    distiller = km.Distiller(teacher, student, temperature=2.0, alpha=0.5)
    distiller.compile(optimizer=keras.optimizers.SGD(1.0))
    teacher_before = [w.copy() for w in teacher.get_weights()]
    kernel = student.layers[0].kernel
    before = kernel.numpy().copy()
    with tf.GradientTape() as tape:
        loss = distiller.compute_loss(x, y, student(x))
    grad = tape.gradient(loss, kernel)
    distiller.train_on_batch(x, y)
    np.testing.assert_allclose(before - kernel.numpy(), grad.numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(teacher_before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Adam keeps slots for the student's weights only, not the teacher's.
    distiller.compile(optimizer="adam")
    distiller.train_on_batch(x, y)
    assert len(distiller.optimizer.variables) == 2 + 2 * len(student.weights)


def np_kl(t_logits, s_logits):
    """Mean KL(softmax(t) || softmax(s)) over the rows, in float64."""
    pt = np_softmax(t_logits.astype("float64"))
    ps = np_softmax(s_logits.astype("float64"))
    return (pt * np.log(pt / ps)).sum(-1).mean()


@pytest.fixture(scope="module")
def rings_teacher():
    """`(teacher, (x, y), (x_test, y_test))`: an MLP trained on the rings."""
    keras.utils.set_random_seed(0)
    x, y = rings(2000, seed=0)
    teacher = dense(4, 4, (64, 64))
    teacher.compile(optimizer=keras.optimizers.Adam(1e-2), loss=ce())
    teacher.fit(x, y, batch_size=64, epochs=8, verbose=0)
    return teacher, (x, y), rings(1000, seed=1)


def distilled_student(teacher, data, test, alpha):
    keras.utils.set_random_seed(5)  # the same initial student for every alpha
    student = dense(4, 4)
    result = km.distill(
        teacher,
        student,
        data,
        temperature=4.0,
        alpha=alpha,
        epochs=8,
        batch_size=64,
        optimizer=keras.optimizers.Adam(1e-2),
        eval_data=test,
    )
    assert result["student"] is student
    assert len(result["history"]["loss"]) == 8
    return result


def test_student_catches_up_with_teacher(rings_teacher):
    teacher, data, test = rings_teacher
    result = distilled_student(teacher, data, test, alpha=0.5)
    assert result["teacher_accuracy"] > 0.85, result
    assert result["student_accuracy"] > result["teacher_accuracy"] - 0.05, result


def test_student_learns_from_the_teacher_not_only_from_the_labels(rings_teacher):
    # The distillation labels lack class 3 (labelled 2); the teacher knows it.
    # On held-out data the distilled student is much closer to the teacher
    # than a student trained on these labels alone (alpha=1), with the same
    # data, budget and initialisation, and it recognises class 3.
    teacher, (x, y), (x_test, y_test) = rings_teacher
    merged = np.where(y == 3, 2, y).astype("int32")
    t_logits = teacher.predict(x_test, verbose=0)
    students = {
        alpha: distilled_student(teacher, (x, merged), (x_test, y_test), alpha)["student"]
        for alpha in (0.5, 1.0)
    }
    logits = {alpha: s.predict(x_test, verbose=0) for alpha, s in students.items()}
    kl = {alpha: np_kl(t_logits, value) for alpha, value in logits.items()}
    assert kl[0.5] < 0.3 * kl[1.0], kl
    recall = {alpha: np.mean(value.argmax(-1)[y_test == 3] == 3) for alpha, value in logits.items()}
    assert recall[0.5] > 0.5 and recall[1.0] == 0.0, recall


def test_distils_an_adapted_learner_on_unlabelled_data():
    # The deployment story: adapt a meta-learner to a task, then compress the
    # adapted model using unlabelled inputs of the task (alpha=0).
    rng = np.random.default_rng(3)
    means = rng.normal(0, 3.0, (4, 2))

    def sample(k):
        y = np.arange(4).repeat(k)
        return (means[y] + rng.normal(0, 0.6, (len(y), 2))).astype("float32"), y

    support_x, support_y = sample(5)
    pool, _ = sample(200)
    test_x, test_y = sample(100)
    teacher = km.ProtoNet(dense(2, 8, (16,))).adapt(support_x, support_y)
    student = dense(2, 4)
    dataset = tf.data.Dataset.from_tensor_slices(pool).batch(32)
    result = km.distill(
        teacher,
        student,
        dataset,
        alpha=0.0,
        epochs=30,
        optimizer=keras.optimizers.Adam(3e-2),
        eval_data=tf.data.Dataset.from_tensor_slices((test_x, test_y)).batch(64),
    )
    assert result["teacher_accuracy"] > 0.6, result
    assert result["student_accuracy"] > result["teacher_accuracy"] - 0.05, result


def test_keras_round_trip(tmp_path):
    x, y = rings(64, seed=4)
    distiller = km.Distiller(dense(4, 4, (8,)), dense(4, 4), temperature=3.0, alpha=0.2)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    distiller.fit(x, y, batch_size=32, verbose=0)
    distiller.save(str(tmp_path / "d.keras"))
    loaded = keras.models.load_model(str(tmp_path / "d.keras"))
    assert (loaded.temperature, loaded.alpha) == (3.0, 0.2)
    distiller.train_on_batch(x[:32], y[:32])
    loaded.train_on_batch(x[:32], y[:32])
    for a, b in zip(distiller.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_arguments():
    teacher, student = dense(3, 4), dense(3, 4)
    with pytest.raises(ValueError, match="temperature"):
        km.Distiller(teacher, student, temperature=0.0)
    with pytest.raises(ValueError, match=r"alpha.* >= 0 and <= 1"):
        km.Distiller(teacher, student, alpha=1.5)
    with pytest.raises(TypeError, match="teacher.*adapt"):
        km.Distiller(lambda x: x, student)
    with pytest.raises(ValueError, match="different models"):
        km.Distiller(teacher, teacher)
    with pytest.raises(ValueError, match="do not pass `loss`"):
        km.Distiller(teacher, student).compile(optimizer="sgd", loss="mse")
    x = np.zeros((4, 3), "float32")
    with pytest.raises(ValueError, match="needs labels"):
        km.distill(teacher, student, x, alpha=0.5)
    with pytest.raises(ValueError, match="3 outputs and the student 4"):
        distiller = km.Distiller(dense(3, 3), student)
        distiller.compile(optimizer="sgd")
        distiller.compute_loss(x, np.zeros(4, "int32"), student(x))
