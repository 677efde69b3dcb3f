"""Episodic task generators: `tf.data` pipelines of N-way K-shot episodes."""

from keras_meta.data.augment import rotate_classes, rotate_images
from keras_meta.data.episodes import EpisodeSampler, episodes
from keras_meta.data.folders import image_folder
from keras_meta.data.matching import match_image_array, match_images
from keras_meta.data.omniglot import omniglot
from keras_meta.data.regression import (
    linear_regression,
    linear_regression_optimum,
    sinusoid,
)
from keras_meta.data.splits import ClassSplit, split_classes
from keras_meta.data.streaming import StreamingEpisodeSampler, stream_episodes
from keras_meta.data.tfds import CIFAR_FS_CLASSES, cifar_fs, from_tfds

__all__ = [
    "CIFAR_FS_CLASSES",
    "ClassSplit",
    "EpisodeSampler",
    "StreamingEpisodeSampler",
    "cifar_fs",
    "episodes",
    "from_tfds",
    "image_folder",
    "linear_regression",
    "linear_regression_optimum",
    "match_image_array",
    "match_images",
    "omniglot",
    "rotate_classes",
    "rotate_images",
    "sinusoid",
    "split_classes",
    "stream_episodes",
]
