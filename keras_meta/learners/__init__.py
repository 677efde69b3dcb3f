"""Meta-learners: `keras.Model` subclasses that adapt a wrapped model."""

from keras_meta.learners.anil import ANIL
from keras_meta.learners.base import MetaLearner
from keras_meta.learners.embedding import EmbeddingLearner
from keras_meta.learners.gradient import GradientLearner
from keras_meta.learners.maml import MAML
from keras_meta.learners.meta_sgd import MetaSGD
from keras_meta.learners.protonet import ProtoNet
from keras_meta.learners.reptile import Reptile
from keras_meta.learners.ridge import R2D2

__all__ = [
    "MetaLearner",
    "GradientLearner",
    "MAML",
    "MetaSGD",
    "ANIL",
    "Reptile",
    "EmbeddingLearner",
    "ProtoNet",
    "R2D2",
]
