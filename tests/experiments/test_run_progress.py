"""run.json's progress: the time of the last epoch and the estimate of the time left."""

import json

import pytest

from keras_meta.experiments import runs
from keras_meta.experiments.run_callbacks import SimulatedInterruption, _duration

SMALL = {
    "iterations": 6, "steps_per_epoch": 2, "val_episodes": 2, "meta_batch_size": 2,
    "hidden_units": [8, 8],
}  # fmt: skip


def test_run_json_estimates_the_time_left(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SimulatedInterruption):
        runs.train(out, "maml-sinusoid", SMALL, verbose=2, fail_after_epochs=1)
    state = json.loads((out / "run.json").read_text())
    assert state["epochs_done"] == 1 and state["epoch_seconds"] > 0
    # Two of three epochs left, each at the pace of the one done.
    assert state["remaining_seconds"] == pytest.approx(2 * state["epoch_seconds"])
    assert state["train_seconds"] >= state["epoch_seconds"]
    assert f"{out}: epoch 1 of 3 done; " in capsys.readouterr().out
    runs.train(out, "maml-sinusoid", SMALL, verbose=0)
    state = json.loads((out / "run.json").read_text())
    assert state["finished"] and state["epochs_done"] == 3 and state["remaining_seconds"] == 0
    assert "epoch 3 of 3" not in capsys.readouterr().out  # verbose=0 prints nothing


def test_duration():
    assert [_duration(s) for s in (42.4, 450.0, 11520.0)] == ["42 s", "7.5 min", "3.2 h"]


def test_run_json_records_each_commit_that_trained(tmp_path, monkeypatch):
    # A run resumed by other code (a later commit) records it from the epoch it
    # trained first; an unchanged commit adds nothing.
    from keras_meta.experiments import run_callbacks

    out = tmp_path / "run"
    monkeypatch.setattr(run_callbacks, "source_commit", lambda: "a" * 40)
    with pytest.raises(SimulatedInterruption):
        runs.train(out, "maml-sinusoid", SMALL, verbose=0, fail_after_epochs=1)
    monkeypatch.setattr(run_callbacks, "source_commit", lambda: "b" * 40 + "+dirty")
    runs.train(out, "maml-sinusoid", SMALL, verbose=0)
    state = json.loads((out / "run.json").read_text())
    assert state["commits"] == [
        {"commit": "a" * 40, "from_epoch": 1},
        {"commit": "b" * 40 + "+dirty", "from_epoch": 2},
    ]
