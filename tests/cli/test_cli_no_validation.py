"""Runs without validation (`--val-episodes 0`): training on every background
character of Omniglot's official split, resuming, and evaluating on the
evaluation alphabets, on a small subset of the real archives
(../shared/data/omniglot) re-packed in the official layout."""

import json

import numpy as np
import pytest
from cli_helpers import _error
from helpers import omniglot_subset

import keras_meta as km
from keras_meta.cli import main
from keras_meta.experiments import RunConfig, run_dir, sources
from keras_meta.plots import read_history

CHARACTERS = {"background": 8, "evaluation": 4}
DRAWINGS = 3


@pytest.fixture(scope="module")
def subset(omniglot_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("omniglot_subset_noval")
    return omniglot_subset(omniglot_dir, root, CHARACTERS, DRAWINGS)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))


def _args(subset, out, *extra):
    return [
        "train", "--algorithm", "protonet", "--dataset", "omniglot", "--data-dir", str(subset),
        "--split", "official", "--val-episodes", "0", "--checkpoint", "final",
        "--ways", "3", "--shots", "1", "--queries", "1", "--meta-batch-size", "1",
        "--iterations", "4", "--steps-per-epoch", "2", "--eval-episodes", "4",
        "--filters", "8", "--out", str(out), "--verbose", "0", *extra,
    ]  # fmt: skip


def test_best_checkpoint_needs_validation():
    with pytest.raises(ValueError, match="checkpoint='best'.*val_episodes=0"):
        RunConfig(val_episodes=0, checkpoint="best")
    with pytest.raises(ValueError, match="must be an integer >= 0; received val_episodes=-1"):
        RunConfig(val_episodes=-1)
    # The published ProtoNet protocols keep the best validation epoch.
    with pytest.raises(ValueError, match="checkpoint='best'"):
        RunConfig.from_protocol("protonet-omniglot-5w1s", val_episodes=0)


@pytest.mark.slow  # two CLI trainings and an evaluation: ~40 s on 2 free cores
def test_train_resume_evaluate_without_validation(subset, tmp_path, capsys):
    out = tmp_path / "noval"
    # Interrupted after the first of two epochs, then resumed.
    assert main(_args(subset, out, "--fail-after-epochs", "1")) == 130
    assert main(_args(subset, out)) == 0
    config = run_dir.run_config(out)
    assert config.val_episodes == 0 and config.checkpoint == "final"

    # Every background character trains; no class is held out for validation.
    parts = sources.load_class_splits(config)
    background, labels = km.data.omniglot(subset, split="background", cache=False)
    assert len(np.unique(parts["train"][1])) == CHARACTERS["background"]
    assert len(parts["train"][0]) == len(labels)
    assert len(parts["validation"][1]) == 0
    evaluation, _ = km.data.omniglot(subset, split="evaluation", cache=False)
    np.testing.assert_array_equal(parts["test"][0], evaluation)

    history = read_history(out / "history.csv")
    assert history["epoch"] == [0.0, 1.0]
    assert not [k for k in history if k.startswith("val_")]
    assert not (out / "best.keras").exists()
    assert json.loads((out / "run.json").read_text())["iterations_done"] == 4

    assert main(["evaluate", str(out), "--verbose", "0"]) == 0
    record = json.loads((out / "evaluation.json").read_text())
    assert record["split"] == "test" and record["results"]["num_episodes"] == 4
    capsys.readouterr()
    assert "no best checkpoint" in _error(capsys, ["evaluate", str(out), "--checkpoint", "best"])
    assert "no validation classes" in _error(
        capsys, ["evaluate", str(out), "--split", "validation"]
    )
    # --checkpoint best contradicts --val-episodes 0 on the command line too.
    line = _error(capsys, _args(subset, tmp_path / "other", "--checkpoint", "best"))
    assert "checkpoint='best'" in line and "val_episodes=0" in line
