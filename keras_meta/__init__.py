"""keras_meta: meta-learning for Keras 3 (TensorFlow backend)."""

from keras_meta._backend import check_backend as _check_backend

_check_backend()

from keras_meta import (  # noqa: E402
    callbacks,
    data,
    inner_loop,
    inner_optimizers,
    models,
    ranking,
)
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
from keras_meta.loading import load_learner  # noqa: E402

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
    "load_learner",
    "callbacks",
    "models",
    "experiments",
    "inner_loop",
    "inner_optimizers",
    "ranking",
]


def __getattr__(name):
    # The application layer is imported on first use, so that importing the
    # library never imports it.
    if name in ("experiments", "presets"):
        import importlib

        return importlib.import_module(f"keras_meta.{name}")
    raise AttributeError(f"module 'keras_meta' has no attribute {name!r}")
