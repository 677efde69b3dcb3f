"""A time limit on training: `TimeLimit` and `train(time_limit=)` (the command
line's `--time-limit`: tests/cli/test_cli_time_limit.py)."""

import argparse
import json

import keras
import numpy as np
import pytest

from keras_meta.cli import duration
from keras_meta.experiments import runs
from keras_meta.experiments.run_callbacks import TimeLimit
from keras_meta.experiments.run_dir import RunError

SMALL = {
    "iterations": 6, "steps_per_epoch": 2, "val_episodes": 2, "meta_batch_size": 2,
    "hidden_units": [8, 8],
}  # fmt: skip
# Below any epoch's time: training stops after the first epoch of each call.
AT_ONCE = 1e-6


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _epochs(callback, clock, durations):
    """Runs epochs of the given durations until the callback stops training."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    callback.set_model(model)
    model.stop_training = False
    for epoch, seconds in enumerate(durations):
        callback.on_epoch_begin(epoch)
        clock.now += seconds
        callback.on_epoch_end(epoch)
        if model.stop_training:
            return epoch + 1
    return len(durations)


def test_time_limit_stops_before_an_epoch_that_would_not_fit():
    clock = Clock()
    limit = TimeLimit(25.0, clock=clock)
    # After 10 s, another 10 s epoch ends at 20 <= 25; after 20 s it would end at 30.
    assert _epochs(limit, clock, [10.0] * 5) == 2 and limit.stopped_epoch == 2
    clock = Clock()
    limit = TimeLimit(25.0, clock=clock)
    # The pace is the last epoch's: a slow second epoch stops training at once.
    assert _epochs(limit, clock, [5.0, 12.0, 1.0, 1.0]) == 2
    clock = Clock()
    limit = TimeLimit(25.0, clock=clock)
    assert _epochs(limit, clock, [40.0, 1.0]) == 1  # the first epoch always runs
    clock = Clock()
    limit = TimeLimit(100.0, clock=clock)
    assert _epochs(limit, clock, [1.0] * 5) == 5 and limit.stopped_epoch is None


def _weights(run_dir):
    return keras.models.load_model(run_dir / "learner.keras").model.get_weights()


def test_train_stops_at_the_time_limit_and_resumes_to_the_same_weights(tmp_path, capsys):
    limited = tmp_path / "limited"
    state = runs.train(limited, "maml-sinusoid", SMALL, verbose=1, time_limit=AT_ONCE)
    assert state["finished"] is False and state["epochs_done"] == 1
    assert f"{limited}: stopped after epoch 1 of 3" in capsys.readouterr().out
    assert json.loads((limited / "run.json").read_text())["finished"] is False
    assert (limited / "backup").is_dir() and not (limited / "plots").exists()
    state = runs.train(limited, "maml-sinusoid", SMALL, verbose=0, time_limit=AT_ONCE)
    assert state["finished"] is False and state["epochs_done"] == 2
    # A limit the run fits in: it finishes as without one.
    state = runs.train(limited, "maml-sinusoid", SMALL, verbose=0, time_limit=3600)
    assert state["finished"] is True and state["epochs_done"] == 3
    assert not (limited / "backup").exists()
    plain = tmp_path / "plain"
    runs.train(plain, "maml-sinusoid", SMALL, verbose=0)
    for a, b in zip(_weights(limited), _weights(plain), strict=True):
        np.testing.assert_array_equal(a, b)


def test_train_time_limit_errors(tmp_path):
    with pytest.raises(ValueError, match="time_limit"):
        runs.train(tmp_path / "a", "maml-sinusoid", SMALL, verbose=0, time_limit=0)
    with pytest.raises(RunError, match="not supported with the multi-worker strategy"):
        runs.train(tmp_path / "b", "maml-sinusoid", SMALL, verbose=0, time_limit=60,
                   strategy="multi-worker")  # fmt: skip
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_duration():
    assert [duration(t) for t in ("45", "45s", "2.5m", "90min", "1.5h", " 3h ", ".5h")] == [
        45.0, 45.0, 150.0, 5400.0, 5400.0, 10800.0, 1800.0,
    ]  # fmt: skip
    # Several units, largest first (what one writes for a session's length).
    assert [duration(t) for t in ("2h10m", "1h 30m 15s", "1m30s", "0h45m")] == [
        7800.0, 5415.0, 90.0, 2700.0,
    ]  # fmt: skip
    bad_compound = ("10m2h", "5m5m", "1min30m", "2h10", "2h-10m", "0h0m")
    for bad in ("0", "0h", "-1h", "2 hours", "h", "", "1e3", "3d", *bad_compound):
        with pytest.raises(argparse.ArgumentTypeError, match=f"received {bad!r}"):
            duration(bad)
