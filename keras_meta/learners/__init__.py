"""Meta-learners: `keras.Model` subclasses that adapt a wrapped model."""

from keras_meta.learners.base import MetaLearner
from keras_meta.learners.gradient import GradientLearner
from keras_meta.learners.maml import MAML

__all__ = ["MetaLearner", "GradientLearner", "MAML"]
