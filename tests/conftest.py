"""Test set-up shared by the whole suite."""

import gc
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
    keras.backend.clear_session()  # which ends with a full gc.collect()
    # Objects alive now (TensorFlow's and Keras's ~400,000 module objects,
    # session and module fixtures, caches) leave the collector's reach, so
    # that the next test's gc.collect() traverses only what that test made:
    # ~0.1 s instead of 1-3 s per test, which was most of the suite's time.
    # A test's own garbage is still collected at its end.
    gc.freeze()


@pytest.fixture(autouse=True, scope="module")
def _collect_module_garbage():
    """At the end of a test file, one full collection (1-3 s) frees the
    reference cycles that outlived its tests and died with its module
    fixtures (learners, datasets), which the frozen collector would keep."""
    yield
    gc.unfreeze()
    gc.collect()
    gc.freeze()


# .ci/run sets this when the real data is there, so that a real-data test
# that skips (or a run that selects none) fails the run instead of passing.
REQUIRE_REAL_DATA = "KERAS_META_REQUIRE_REAL_DATA"


@pytest.fixture(scope="session")
def omniglot_dir():
    """The real Omniglot archives beside the repo, or skip.

    Tests that use this fixture are marked `real_data`.
    """
    if not all((OMNIGLOT_DIR / f"images_{s}.zip").exists() for s in ("background", "evaluation")):
        pytest.skip(f"real Omniglot archives not found at {OMNIGLOT_DIR}")
    return OMNIGLOT_DIR


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "omniglot_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_data)


_real_data_outcomes = {}


def pytest_runtest_logreport(report):
    if "real_data" not in report.keywords:
        return
    if report.skipped:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        _real_data_outcomes[report.nodeid] = f"skipped ({reason})"
    elif report.failed:
        _real_data_outcomes[report.nodeid] = "failed"
    elif report.when == "call":
        _real_data_outcomes.setdefault(report.nodeid, "passed")


def pytest_sessionfinish(session, exitstatus):
    """With KERAS_META_REQUIRE_REAL_DATA=1, a real-data test that skipped, or
    a session that ran none of them, fails the session."""
    if os.environ.get(REQUIRE_REAL_DATA) != "1" or exitstatus not in (0, 1):
        return
    if hasattr(session.config, "workerinput"):
        # A pytest-xdist worker sees only its share of the tests; the
        # controller receives every report and decides.
        return
    skipped = {k: v for k, v in _real_data_outcomes.items() if v.startswith("skipped")}
    problem = None
    if skipped:
        problem = "real-data tests skipped although the data is required:\n" + "\n".join(
            f"  {k}: {v}" for k, v in skipped.items()
        )
    elif not _real_data_outcomes:
        problem = "no real-data test ran although the data is required"
    if problem:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = f"{REQUIRE_REAL_DATA}=1: {problem}"
        if reporter is not None:
            reporter.write_line("")
            reporter.write_sep("=", "real-data check failed", red=True)
            reporter.write_line(message, red=True)
        else:
            print(message, file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
