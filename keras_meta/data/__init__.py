"""Episodic task generators: `tf.data` pipelines of N-way K-shot episodes."""

from keras_meta.data.augment import rotate_classes, rotate_images
from keras_meta.data.benchmarks import CIFAR_FS_CLASSES, benchmark_classes, cifar_fs, cub, fc100
from keras_meta.data.episodes import EpisodeSampler, episodes
from keras_meta.data.folders import image_folder
from keras_meta.data.omniglot import omniglot
from keras_meta.data.regression import (
    linear_regression,
    linear_regression_optimum,
    sinusoid,
)
from keras_meta.data.splits import ClassSplit, split_classes
from keras_meta.data.streaming import StreamingEpisodeSampler, stream_episodes
from keras_meta.data.tfds import from_tfds

__all__ = [
    "CIFAR_FS_CLASSES",
    "ClassSplit",
    "EpisodeSampler",
    "StreamingEpisodeSampler",
    "benchmark_classes",
    "cifar_fs",
    "cub",
    "episodes",
    "fc100",
    "from_tfds",
    "image_folder",
    "linear_regression",
    "linear_regression_optimum",
    "omniglot",
    "rotate_classes",
    "rotate_images",
    "sinusoid",
    "split_classes",
    "stream_episodes",
]
