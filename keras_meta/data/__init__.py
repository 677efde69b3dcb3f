"""Episodic task generators: `tf.data` pipelines of N-way K-shot episodes."""

from keras_meta.data.augment import rotate_classes
from keras_meta.data.augment import rotate_images
from keras_meta.data.episodes import EpisodeSampler
from keras_meta.data.episodes import episodes
from keras_meta.data.regression import linear_regression
from keras_meta.data.regression import linear_regression_optimum
from keras_meta.data.regression import sinusoid
