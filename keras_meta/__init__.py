"""keras_meta: meta-learning for Keras 3 (TensorFlow backend)."""

from keras_meta._backend import check_backend as _check_backend

_check_backend()

from keras_meta import callbacks, data, inner_loop, inner_optimizers, presets  # noqa: E402
from keras_meta.distill import Distiller, distill  # noqa: E402
from keras_meta.evaluation import evaluate  # noqa: E402
from keras_meta.learners import (  # noqa: E402
    ANIL,
    MAML,
    R2D2,
    EmbeddingLearner,
    Episode,
    EpisodeBatch,
    GradientLearner,
    InnerLoopLearner,
    MetaLearner,
    MetaSGD,
    ProtoNet,
    Reptile,
)

__version__ = "0.1.0"

__all__ = [
    "data",
    "MetaLearner",
    "InnerLoopLearner",
    "GradientLearner",
    "EmbeddingLearner",
    "Episode",
    "EpisodeBatch",
    "MAML",
    "MetaSGD",
    "ANIL",
    "Reptile",
    "ProtoNet",
    "R2D2",
    "Distiller",
    "distill",
    "evaluate",
    "callbacks",
    "inner_loop",
    "inner_optimizers",
    "presets",
]
