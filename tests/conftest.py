"""Test set-up shared by the whole suite."""

import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPU devices, so that tf.distribute.MirroredStrategy can be
# tested on one CPU. This must happen before TensorFlow initialises devices.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0],
        [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
    )
except RuntimeError:  # Devices already initialised by another import.
    pass

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
OMNIGLOT_DIR = REPO_ROOT.parent / "shared" / "data" / "omniglot"


@pytest.fixture(autouse=True)
def _seed_and_clear():
    keras.utils.set_random_seed(1234)
    yield
    keras.backend.clear_session()


@pytest.fixture
def omniglot_dir():
    """The real Omniglot archives beside the repo, or skip."""
    if not (OMNIGLOT_DIR / "images_background.zip").exists():
        pytest.skip("real Omniglot archives not found at ../shared/data/omniglot")
    return OMNIGLOT_DIR
