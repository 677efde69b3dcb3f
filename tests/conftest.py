"""Test set-up shared by the whole suite."""

import os
import pathlib
import sys

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

# Test files import shared helpers with `from helpers import ...` (pytest runs
# with --import-mode=importlib, which does not put tests/ on sys.path).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

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


@pytest.fixture
def float64():
    """Keras floatx float64 for the test, restored afterwards."""
    previous = keras.config.floatx()
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx(previous)


@pytest.fixture(autouse=True)
def _fresh_collective_keys():
    """Gives each test's MirroredStrategy its own collective group keys.

    Every MirroredStrategy numbers its collective groups and instances from
    `MirroredStrategy._collective_key_base` (TensorFlow: "only set this in
    tests"), so a second strategy in the same process would reuse the group
    keys of the first, and its all-reduce would meet the first one's cached
    shapes ("Shape mismatch in the collective instance ...").
    """
    tf.distribute.MirroredStrategy._collective_key_base += 1000
    yield
