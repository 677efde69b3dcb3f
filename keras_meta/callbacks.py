"""Keras callbacks for meta-learning."""

from __future__ import annotations

import importlib.util
import os

import keras
import tensorflow as tf

from keras_meta.evaluation import evaluate
from keras_meta.validation import check_int


def write_scalars(writer, scalars: dict, step: int) -> None:
    """Writes `{tag: value}` as TensorBoard scalars at `step`.

    The events are plain `Summary` protos, which TensorBoard reads like those
    of `tf.summary.scalar`, but writing them does not need the `tensorboard`
    package (which `tf.summary.scalar` imports and TensorFlow no longer
    installs).

    Example:

    >>> writer = tf.summary.create_file_writer("logs")
    >>> write_scalars(writer, {"accuracy": 0.9}, step=0)
    """
    summary = tf.compat.v1.Summary(
        value=[
            tf.compat.v1.Summary.Value(tag=tag, simple_value=float(value))
            for tag, value in scalars.items()
        ]
    )
    with writer.as_default():
        tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)
    writer.flush()


def tensorboard_installed() -> bool:
    """Whether the `tensorboard` package that `keras.callbacks.TensorBoard` needs is there.

    Example:

    >>> isinstance(tensorboard_installed(), bool)
    True
    """
    return importlib.util.find_spec("tensorboard") is not None


class ScalarLogger(keras.callbacks.Callback):
    """Writes the epoch logs as TensorBoard scalars, without the tensorboard package.

    The layout is that of `keras.callbacks.TensorBoard`'s epoch scalars:
    `log_dir/train` gets the training values and `log_dir/validation` the
    `val_` ones, with the tags `epoch_<name>`, so TensorBoard shows the same
    curves. `keras.callbacks.TensorBoard` needs the `tensorboard` package
    (TensorFlow no longer installs it); this callback needs only TensorFlow.
    Put it after the callbacks that add to the logs (e.g. `MetaEvaluation`).

    Args:
        log_dir: the TensorBoard log folder.

    Example:

    >>> import keras, keras_meta as km
    >>> logger = km.callbacks.ScalarLogger("logs")
    """

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self._writers = {}

    def _writer(self, name):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(os.path.join(self.log_dir, name))
        return self._writers[name]

    def on_epoch_end(self, epoch, logs=None):
        train, val = {}, {}
        for key, value in (logs or {}).items():
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            if key.startswith("val_"):
                val["epoch_" + key[4:]] = value
            else:
                train["epoch_" + key] = value
        if train:
            write_scalars(self._writer("train"), train, epoch)
        if val:
            write_scalars(self._writer("validation"), val, epoch)

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class MetaEvaluation(keras.callbacks.Callback):
    """Evaluates a learner on a fixed set of episodes at the end of epochs.

    Runs `keras_meta.evaluate` (per-episode metrics with 95% confidence
    intervals) and adds the results to the epoch `logs` as `prefix + name`
    (e.g. `val_loss`, `val_accuracy`, `val_accuracy_ci95`), so that they show
    in the progress bar, `History`, `CSVLogger`, and can be monitored by
    `ModelCheckpoint` or `EarlyStopping`. Callbacks run in list order: put this
    one before those that read the logs. With the default `"val_"` prefix,
    `keras.callbacks.TensorBoard` (placed after it) plots the results as the
    validation curves (`epoch_accuracy`, ... under `validation/`). With
    `log_dir`, the callback also writes them itself with `tf.summary`, under
    `log_dir/meta_evaluation` with the tags `meta_evaluation/<name>`.

    Use it instead of `fit(validation_data=...)` when you want confidence
    intervals, or a different number of inner steps or BN mode at
    validation.

    Args:
        episodes: a finite, seeded dataset of episodes (single or batched);
            the same episodes are used at every evaluation.
        num_episodes: episodes per evaluation.
        prefix: prepended to each result name in `logs`.
        frequency: evaluate every `frequency` epochs (and at the last one).
        log_dir: optional folder for `tf.summary` scalars.
        **evaluate_kwargs: passed to `keras_meta.evaluate` (`batch_size`,
            `inner_steps`, `bn_mode`, `time_adaptation`).

    Example:

    >>> import keras, keras_meta as km
    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(40, "relu"),
    ...                         keras.layers.Dense(1)])
    >>> learner = km.MAML(net, inner_learning_rate=0.01, inner_steps=1)
    >>> learner.compile(optimizer="adam", loss="mse")
    >>> val = km.data.sinusoid(shots=10, queries=10, seed=1, num_episodes=20)
    >>> train = km.data.sinusoid(shots=10, queries=10, seed=0).batch(4)
    >>> history = learner.fit(train, epochs=2, steps_per_epoch=5, verbose=0,
    ...     callbacks=[km.callbacks.MetaEvaluation(val, num_episodes=20)])
    >>> sorted(history.history)
    ['loss', 'val_loss', 'val_loss_ci95']
    """

    def __init__(
        self,
        episodes,
        num_episodes: int = 600,
        prefix: str = "val_",
        frequency: int = 1,
        log_dir: str | os.PathLike | None = None,
        **evaluate_kwargs,
    ):
        super().__init__()
        frequency = check_int("frequency", frequency)
        unknown = set(evaluate_kwargs) - {
            "batch_size",
            "inner_steps",
            "bn_mode",
            "time_adaptation",
        }
        if unknown:
            raise TypeError(f"Unknown arguments for MetaEvaluation: {sorted(unknown)}.")
        self.episodes = episodes
        self.num_episodes = num_episodes
        self.prefix = prefix
        self.frequency = frequency
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.evaluate_kwargs = evaluate_kwargs
        self._writer = None
        self.last_results: dict | None = None

    def _due(self, epoch: int) -> bool:
        last = self.params.get("epochs") if self.params else None
        return (epoch + 1) % self.frequency == 0 or (last is not None and epoch + 1 == last)

    def on_epoch_end(self, epoch, logs=None):
        if not self._due(epoch):
            return
        results = evaluate(self.model, self.episodes, self.num_episodes, **self.evaluate_kwargs)
        self.last_results = results
        scalars = {
            k: float(v) for k, v in results.items() if isinstance(v, float) and k != "num_episodes"
        }
        if logs is not None:
            for name, value in scalars.items():
                logs[self.prefix + name] = value
        if self.log_dir is not None:
            self._write_summaries(epoch, scalars)

    def _write_summaries(self, epoch, scalars):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(
                os.path.join(self.log_dir, "meta_evaluation")
            )
        write_scalars(
            self._writer,
            {f"meta_evaluation/{name}": v for name, v in scalars.items()},
            epoch,
        )

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
