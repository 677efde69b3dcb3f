"""Knowledge distillation of an adapted model into a smaller student.

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network"
(2015). The student minimises

    alpha · CE(y, s) + (1 − alpha) · T² · KL(softmax(t / T) ‖ softmax(s / T))

with `t`, `s` the teacher's and the student's logits and T the temperature,
so that a model adapted by a meta-learner (`learner.adapt(...)`) can be
compressed for deployment.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_meta import _keras_compat
from keras_meta.validation import check_bool, check_number, check_positive

__all__ = ["Distiller", "distill"]


def _check_model(name, model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected `{name}` to be a keras.Model; received {type(model).__name__}."
            + (
                " Distil an adapted model: `learner.adapt(support_x, support_y)`."
                if name == "teacher"
                else ""
            )
        )


@keras.saving.register_keras_serializable(package="keras_meta")
class Distiller(keras.Model):
    """Trains `student` to match `teacher` (Hinton et al., 2015).

    The loss of a batch `(x, y)` is
    `alpha * CE(y, s) + (1 - alpha) * T**2 * KL(softmax(t / T) || softmax(s / T))`
    with `t`, `s` the teacher's and the student's logits and `T` the
    temperature; `T**2` keeps the soft term's gradients on the scale of the
    hard term's. The losses are `keras.losses.SparseCategoricalCrossentropy`
    and `keras.losses.KLDivergence`, plus the student's regularisation
    losses. The teacher runs in inference mode and is never updated; only
    the student's weights are trained. With `alpha=0` the data needs no
    labels (distillation on unlabelled inputs).

    Calling the distiller calls the student; compiled metrics (e.g.
    `"accuracy"`) are the student's.

    Args:
        teacher: the `keras.Model` to imitate (e.g. `learner.adapt(...)`).
        student: the `keras.Model` to train; same number of classes.
        temperature: T > 0, the softmax temperature of the soft targets.
        alpha: weight in [0, 1] of the hard-label loss.
        from_logits: whether both models output logits (default) or
            probabilities.

    Example:

    >>> import keras, numpy as np, keras_meta as km
    >>> teacher = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    >>> student = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    >>> distiller = km.Distiller(teacher, student, temperature=4.0, alpha=0.5)
    >>> distiller.compile(optimizer="adam", metrics=["accuracy"])
    >>> x, y = np.random.rand(32, 2).astype("float32"), np.arange(32) % 3
    >>> history = distiller.fit(x, y, epochs=1, verbose=0)
    """

    def __init__(
        self,
        teacher: keras.Model,
        student: keras.Model,
        temperature: float = 4.0,
        alpha: float = 0.5,
        from_logits: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_model("teacher", teacher)
        _check_model("student", student)
        if teacher is student:
            raise ValueError("`teacher` and `student` must be different models.")
        self.temperature = check_positive("temperature", temperature)
        self.alpha = check_number("alpha", alpha, minimum=0.0, maximum=1.0)
        self.from_logits = check_bool("from_logits", from_logits)
        self.teacher = teacher
        self.student = student
        self.hard_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
        self.soft_loss = keras.losses.KLDivergence()

    def compile(self, optimizer="rmsprop", metrics=None, **kwargs):
        """Takes the arguments of `keras.Model.compile`, except `loss`."""
        if kwargs.get("loss") is not None:
            raise ValueError(
                "The Distiller's loss is fixed (hard cross-entropy and soft "
                "KL divergence, weighted by `alpha`); do not pass `loss`."
            )
        kwargs.pop("loss", None)
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        if self.student.built:
            # Built on the student's weights only: the teacher is frozen and
            # needs no optimizer slots (Keras would build on all weights).
            self.optimizer.build(self.student.trainable_variables)

    def compile_from_config(self, config):
        # Keras skips compile_from_config for overridden compile(); ours only
        # validates and builds the optimizer, so restoring it is safe.
        self.compile(**keras.saving.deserialize_keras_object(config))

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def _logits(self, outputs):
        outputs = tf.cast(outputs, "float32")
        if self.from_logits:
            return outputs
        return tf.math.log(tf.clip_by_value(outputs, 1e-7, 1.0))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        teacher = tf.stop_gradient(self.teacher(x, training=False))
        if (
            teacher.shape[-1] is not None
            and y_pred.shape[-1] is not None
            and (teacher.shape[-1] != y_pred.shape[-1])
        ):
            raise ValueError(
                f"The teacher has {teacher.shape[-1]} outputs and the student "
                f"{y_pred.shape[-1]}; they must predict the same classes."
            )
        t = self.temperature
        soft = self.soft_loss(
            tf.nn.softmax(self._logits(teacher) / t),
            tf.nn.softmax(self._logits(y_pred) / t),
            sample_weight=sample_weight,
        )
        loss = (1.0 - self.alpha) * t**2 * soft
        if self.alpha > 0:
            if y is None:
                raise ValueError(
                    f"With alpha={self.alpha} the Distiller needs labels: pass "
                    "`(x, y)` batches, or use alpha=0 for unlabelled data."
                )
            hard = self.hard_loss(y, y_pred, sample_weight=sample_weight)
            loss = loss + self.alpha * tf.cast(hard, loss.dtype)
        if self.student.losses:
            loss = loss + tf.add_n([tf.cast(v, loss.dtype) for v in self.student.losses])
        return loss

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            _keras_compat.loss_tracker(self).update_state(
                _keras_compat.unscale_loss_for_distribution(loss),
                sample_weight=tf.shape(tf.nest.flatten(x)[0])[0],
            )
            scaled = self.optimizer.scale_loss(loss)
        # Only the student learns; the teacher's weights are not even
        # differentiated.
        variables = self.student.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        if y is None:
            return self.get_metrics_result()
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:
            raise ValueError("evaluate() needs labels: pass `(x, y)` batches.")
        return super().test_step(data)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "teacher": keras.saving.serialize_keras_object(self.teacher),
                "student": keras.saving.serialize_keras_object(self.student),
                "temperature": self.temperature,
                "alpha": self.alpha,
                "from_logits": self.from_logits,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("teacher", "student"):
            config[key] = keras.saving.deserialize_keras_object(
                config[key], custom_objects=custom_objects
            )
        return cls(**config)


def _split(data):
    """`(x, y)` from a tuple `(x, y)`, an array `x` or a Dataset (y inside)."""
    if isinstance(data, tf.data.Dataset):
        return data, None
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError(
                "Expected `data` to be a tf.data.Dataset, an array of inputs or "
                f"a tuple (x, y); received a tuple of length {len(data)}."
            )
        return data
    return data, None


def accuracy(model: keras.Model, data, batch_size: int = 256) -> float:
    """Top-1 accuracy of `model` on `(x, y)` arrays or a Dataset of `(x, y)` batches.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    >>> 0.0 <= accuracy(model, (np.zeros((4, 2)), np.zeros(4, "int32"))) <= 1.0
    True
    """
    x, y = _split(data)
    if y is None and not isinstance(x, tf.data.Dataset):
        raise ValueError("Accuracy needs labels: pass `(x, y)` or a Dataset of them.")
    batches = (
        x
        if isinstance(x, tf.data.Dataset)
        else tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    )
    metric = keras.metrics.SparseCategoricalAccuracy()
    for batch in batches:
        bx, by, _ = keras.utils.unpack_x_y_sample_weight(batch)
        if by is None:
            raise ValueError("Accuracy needs labels: the Dataset yields no `y`.")
        metric.update_state(by, model(bx, training=False))
    return float(np.asarray(metric.result()))


def distill(
    teacher: keras.Model,
    student: keras.Model,
    data,
    temperature: float = 4.0,
    alpha: float = 0.5,
    epochs: int = 1,
    optimizer="adam",
    batch_size: int | None = None,
    eval_data=None,
    from_logits: bool = True,
    verbose: int = 0,
    **fit_kwargs,
) -> dict:
    """Distils `teacher` into `student` (trained in place) with a `Distiller`.

    Args:
        teacher: the `keras.Model` to compress, e.g. `learner.adapt(...)`.
        student: a smaller `keras.Model` with the same outputs.
        data: training inputs: a tuple `(x, y)` of arrays, an array `x`
            alone (unlabelled; needs `alpha=0`), or a `tf.data.Dataset` of
            `(x, y)` or `x` batches.
        temperature, alpha, from_logits: see `Distiller`.
        epochs, batch_size, verbose, **fit_kwargs: passed to `fit`.
        optimizer: the student's optimizer.
        eval_data: optional `(x, y)` arrays or Dataset of `(x, y)` batches
            on which both models' accuracy is reported.

    Returns:
        A dict: `"student"` (the trained student), `"history"` (the fit
        history dict) and, with `eval_data`, `"teacher_accuracy"` and
        `"student_accuracy"`.

    Example:

    >>> import keras, numpy as np, keras_meta as km
    >>> teacher = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    >>> student = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    >>> x, y = np.random.rand(64, 2).astype("float32"), np.arange(64) % 3
    >>> result = km.distill(teacher, student, (x, y), epochs=1, eval_data=(x, y))
    >>> sorted(result)
    ['history', 'student', 'student_accuracy', 'teacher_accuracy']
    """
    distiller = Distiller(
        teacher, student, temperature=temperature, alpha=alpha, from_logits=from_logits
    )
    distiller.compile(optimizer=optimizer, metrics=["accuracy"] if alpha > 0 else None)
    x, y = _split(data)
    if y is None and alpha > 0 and not isinstance(x, tf.data.Dataset):
        raise ValueError(
            f"With alpha={alpha} distillation needs labels: pass `data=(x, y)`, "
            "or alpha=0 to distil on unlabelled inputs."
        )
    if isinstance(x, tf.data.Dataset):
        # Keras warns that it cannot shuffle a Dataset; the Dataset decides.
        fit_kwargs.setdefault("shuffle", False)
    history = distiller.fit(
        x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, **fit_kwargs
    )
    result = {"student": student, "history": history.history}
    if eval_data is not None:
        result["teacher_accuracy"] = accuracy(teacher, eval_data)
        result["student_accuracy"] = accuracy(student, eval_data)
    return result
