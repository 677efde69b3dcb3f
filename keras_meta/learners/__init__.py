"""Meta-learners: `keras.Model` subclasses that adapt a wrapped model.

The extension points are `MetaLearner` (any algorithm), `InnerLoopLearner`
(adaptation by an inner loop of gradient steps), `GradientLearner` (an
inner loop differentiated through) and `EmbeddingLearner` (a head fitted in
closed form on an embedding); algorithms receive an `Episode`, built from
an `EpisodeBatch` by the loop over episodes.
"""

from keras_meta.learners._episodes import Episode, EpisodeBatch, unpack_episodes
from keras_meta.learners.anil import ANIL
from keras_meta.learners.base import MetaLearner
from keras_meta.learners.embedding import EmbeddingLearner
from keras_meta.learners.gradient import GradientLearner, InnerLoopLearner, clone_with_weights
from keras_meta.learners.maml import MAML
from keras_meta.learners.meta_sgd import MetaSGD
from keras_meta.learners.protonet import ProtoNet
from keras_meta.learners.reptile import Reptile
from keras_meta.learners.ridge import R2D2

__all__ = [
    "MetaLearner",
    "InnerLoopLearner",
    "GradientLearner",
    "EmbeddingLearner",
    "Episode",
    "EpisodeBatch",
    "unpack_episodes",
    "clone_with_weights",
    "MAML",
    "MetaSGD",
    "ANIL",
    "Reptile",
    "ProtoNet",
    "R2D2",
]
