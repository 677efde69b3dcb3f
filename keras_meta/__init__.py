"""keras_meta: meta-learning for Keras 3 (TensorFlow backend)."""

from keras_meta._backend import check_backend as _check_backend

_check_backend()

from keras_meta import callbacks, data, presets  # noqa: E402
from keras_meta.distill import Distiller, distill  # noqa: E402
from keras_meta.evaluation import evaluate  # noqa: E402
from keras_meta.learners import (  # noqa: E402
    ANIL,
    MAML,
    R2D2,
    GradientLearner,
    MetaLearner,
    MetaSGD,
    ProtoNet,
    Reptile,
)
from keras_meta.loading import load_learner  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "data",
    "MetaLearner",
    "GradientLearner",
    "MAML",
    "MetaSGD",
    "ANIL",
    "Reptile",
    "ProtoNet",
    "R2D2",
    "Distiller",
    "distill",
    "evaluate",
    "load_learner",
    "callbacks",
    "presets",
]
