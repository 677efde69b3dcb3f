"""keras_meta: meta-learning for Keras 3 (TensorFlow backend)."""

from keras_meta._backend import check_backend as _check_backend

_check_backend()

from keras_meta import data  # noqa: E402
from keras_meta.learners import MAML, GradientLearner, MetaLearner  # noqa: E402

__version__ = "0.1.0"

__all__ = ["data", "MetaLearner", "GradientLearner", "MAML"]
