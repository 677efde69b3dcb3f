"""Every use of Keras internals, in one place.

keras_meta uses public Keras APIs wherever they exist (`keras.tree`,
`keras.utils.unpack_x_y_sample_weight`, `keras.StatelessScope`, ...). What
follows has no public equivalent in Keras 3; when a Keras release changes one
of these, this module is the only one to update. Nothing else in the package
imports `keras.src` or reads a private Keras attribute.

- loss scaling under `tf.distribute` (`keras.src.losses.loss`) and the
  wrapper that turns a loss function into a `keras.losses.Loss`;
- whether a stateless scope is active, and Keras's Functional class;
- the model attributes `_call_has_training_arg`, `_loss_tracker`,
  `_compile_metrics`, `_flatten_layers` and the fit-time build hook
  `_maybe_symbolic_build` / `_symbolic_build`;
- the function `_compute_moments` of Keras's TensorFlow backend, which
  `keras_meta._moments` swaps for exact batch moments, and the attributes of
  `keras.layers.BatchNormalization` that its fused training-mode call reads
  (see `AttributePatch`);
- `reduce_per_replica` of Keras's TensorFlow trainer, wrapped under a
  multi-worker strategy so that scalar logs can be reduced across workers
  (`patch_multi_worker_scalar_logs`, used by `keras_meta.distribute`).
"""

from __future__ import annotations

import contextlib
import threading

import keras
import tensorflow as tf
from keras.src.losses import loss as _loss_module
from keras.src.losses.losses import LossFunctionWrapper

__all__ = [
    "FirstReplicaBuild",
    "LossFunctionWrapper",
    "AttributePatch",
    "batch_moments_patch",
    "batch_norm_call_patch",
    "call_has_training_arg",
    "compiled_metrics",
    "in_stateless_scope",
    "is_functional",
    "loss_tracker",
    "nested_layers",
    "patch_multi_worker_scalar_logs",
    "scale_loss_for_distribution",
    "unscale_loss_for_distribution",
]

scale_loss_for_distribution = _loss_module.scale_loss_for_distribution
unscale_loss_for_distribution = _loss_module.unscale_loss_for_distribution


def call_has_training_arg(model: keras.Model) -> bool:
    """Whether `model.call` takes a `training` argument."""
    return bool(model._call_has_training_arg)


def loss_tracker(model: keras.Model):
    """The `Mean` metric behind the `"loss"` that `fit`/`evaluate` report."""
    return model._loss_tracker


def compiled_metrics(model: keras.Model):
    """The compiled metrics container of `model`, or `None` before compile."""
    return getattr(model, "_compile_metrics", None)


def in_stateless_scope() -> bool:
    """Whether Keras is tracing a `stateless_call` (no public query exists)."""
    from keras.src.backend.common.stateless_scope import in_stateless_scope as inside

    return inside()


def is_functional(model) -> bool:
    """Whether `model` is a Functional model (a `keras.Sequential` included)."""
    from keras.src.models.functional import Functional

    return isinstance(model, (Functional, keras.Sequential))


def nested_layers(model: keras.Model) -> list:
    """Every layer inside `model`, nested ones included (not `model` itself).

    `model.layers` lists only the top level; a subclassed model's or a nested
    Sequential's layers need Keras's own traversal.
    """
    return list(model._flatten_layers(include_self=False))


class FirstReplicaBuild:
    """Mixin for a `keras.Model`: Keras's fit-time build from one replica's data.

    Under tf.distribute, Keras builds from the first batch reduced with MEAN
    across replicas (its private `_maybe_symbolic_build` hook), which turns
    integer labels into floats, so an episode would look like a regression
    one. This builds from the first replica's values instead, which keeps
    the dtypes. Put it before `keras.Model` in the bases.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            data_batch = keras.tree.map_structure(
                lambda v: (
                    strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues)
                    else v
                ),
                batch,
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)


class AttributePatch:
    """Replaces `owner.<name>` while at least one user is inside `patched`.

    Reference-counted and thread-safe: the first user to enter reads the
    original (under the lock) and installs the replacement, the last one to
    leave puts the original back, so two learners tracing at once in two
    threads never save the replacement as "the original" nor leave it
    installed. An owner (module or class) that lacks the attribute fails at
    first use with an error naming the Keras version, the missing symbol and
    what keras_meta needs it for, rather than silently computing something
    else.

    Example:

    >>> import types
    >>> module = types.SimpleNamespace(moments=abs)
    >>> patch = AttributePatch(module, "moments", where="a stand-in module")
    >>> with patch.patched(round):
    ...     module.moments is round
    True
    >>> module.moments is abs
    True
    """

    def __init__(
        self,
        owner,
        name: str,
        where: str,
        purpose: str = "to get exact second derivatives through BatchNormalization",
    ):
        self._owner = owner
        self._name = name
        self._where = where
        self._purpose = purpose
        self._lock = threading.Lock()
        self._users = 0
        self._original = None

    def _missing(self) -> RuntimeError:
        return RuntimeError(
            f"keras_meta patches `{self._name}` of {self._where} {self._purpose}, but "
            f"Keras {keras.__version__} has no such function. This Keras release is not "
            "supported by this version of keras_meta (keras_meta/_keras_compat.py "
            "must be updated); use the Keras version keras_meta was tested with."
        )

    def check(self) -> None:
        """Raises `RuntimeError` unless the patched function exists."""
        if self._owner is None or not callable(getattr(self._owner, self._name, None)):
            raise self._missing()

    @contextlib.contextmanager
    def patched(self, replacement):
        """Within the block, `owner.<name>` is `replacement`."""
        with self._lock:
            if self._users == 0:
                self.check()
                self._original = getattr(self._owner, self._name)
                setattr(self._owner, self._name, replacement)
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    setattr(self._owner, self._name, self._original)
                    self._original = None


try:
    from keras.src.backend.tensorflow import nn as _tf_nn
except ImportError:  # pragma: no cover - reported at first use by MomentsPatch
    _tf_nn = None

batch_moments_patch = AttributePatch(
    _tf_nn, "_compute_moments", where="keras.src.backend.tensorflow.nn"
)

batch_norm_call_patch = AttributePatch(
    keras.layers.BatchNormalization,
    "call",
    where="keras.layers.BatchNormalization",
    purpose="to run its training-mode call as one fused TensorFlow kernel",
)

# The attributes of a BatchNormalization layer that the fused call reads
# (public attributes, but not a documented API; checked in the tests).
BATCH_NORM_ATTRIBUTES = (
    "axis",
    "epsilon",
    "momentum",
    "center",
    "scale",
    "renorm",
    "synchronized",
    "moving_mean",
    "moving_variance",
    "gamma",
    "beta",
    "trainable",
    "compute_dtype",
)


def patch_multi_worker_scalar_logs():
    """Lets Keras 3's `fit`/`evaluate` reduce scalar logs across workers.

    Keras reduces the logs of a step (loss, metrics: scalars) under a
    multi-worker strategy with `strategy.reduce("MEAN", v, axis=0)`, which
    fails on a scalar ("Invalid reduction dimension 0 for input with 0
    dimensions"; tensorflow/tensorflow#72388). Giving each scalar a leading
    dimension of one first gives the mean over the workers, as intended.
    """
    from keras.src.backend.tensorflow import trainer
    from tensorflow.python.distribute import values as values_lib

    for name in ("reduce_per_replica", "_collective_all_reduce_multi_worker"):
        if not hasattr(trainer, name):
            raise RuntimeError(
                f"Keras {keras.__version__} has no `keras.src.backend.tensorflow.trainer."
                f"{name}`, which keras_meta patches so that `fit` works under "
                "MultiWorkerMirroredStrategy (tensorflow/tensorflow#72388); "
                "keras_meta/_keras_compat.py must be updated for this Keras release."
            )
    original = trainer.reduce_per_replica
    if getattr(original, "_keras_meta_scalars", False):
        return

    def as_vector(value):
        if isinstance(value, values_lib.PerReplica):
            return values_lib.PerReplica(tuple(as_vector(v) for v in value.values))
        if isinstance(value, tf.Tensor) and value.shape.rank == 0:
            return tf.reshape(value, [1])
        return value

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            values = tf.nest.map_structure(as_vector, values)
        return original(values, strategy, reduction)

    reduce_per_replica._keras_meta_scalars = True
    trainer.reduce_per_replica = reduce_per_replica
