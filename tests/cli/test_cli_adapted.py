"""`keras-meta evaluate --adapted-model` and `keras-meta adapt --batch-norm`:
the CLI scores and exports the adapted model that a user would serve."""

import json

import keras
import numpy as np
import tensorflow as tf

import keras_meta as km
from keras_meta.cli import main
from keras_meta.experiments.runs import serving_batch_norm


def test_evaluate_scores_the_adapted_model_on_the_same_episodes(trained_run, capsys, tmp_path):
    # Into a copy, so that the shared run's evaluation.json stays as other tests expect.
    run = tmp_path / "run"
    for name in ("config.json", "run.json", "learner.keras", "best.keras"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes((trained_run / name).read_bytes())
    assert main(["evaluate", str(run), "--verbose", "0", "--adapted-model"]) == 0
    printed = capsys.readouterr().out
    record = json.loads((run / "evaluation.json").read_text())
    results = record["results"]
    learner = keras.models.load_model(run / "learner.keras")
    # The exported model of `keras-meta adapt` is the per-example one.
    assert results["adapted_batch_norm"] == serving_batch_norm(learner) == "support"
    assert 0.0 <= results["adapted_accuracy"] <= 1.0
    assert results["adapted_accuracy_ci95"] >= 0.0
    assert "adapted_accuracy:" in printed


def test_adapt_exports_the_chosen_batch_norm(folders, trained_run, tmp_path):
    _, _, support = folders
    learner = keras.models.load_model(trained_run / "learner.keras")
    config = json.loads((trained_run / "config.json").read_text())["config"]
    x, y, _ = km.data.image_folder(
        support, image_size=config["image_size"], color_mode=config["color_mode"]
    )
    for choice in ("support", "running"):
        out = tmp_path / choice
        args = ["adapt", str(trained_run), "--support", str(support), "--out", str(out),
                "--no-invert", "--batch-norm", choice]
        assert main(args) == 0
        served = tf.saved_model.load(str(out))
        # The SavedModel is the Keras model that `adapt` returns for this choice,
        # and it serves one image at a time (same answer alone as in a batch).
        expected = learner.adapt(x, y.astype("int32"), batch_norm=choice).predict(x, verbose=0)
        np.testing.assert_allclose(served.serve(x).numpy(), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            served.serve(x[:1]).numpy(), expected[:1], rtol=1e-5, atol=1e-5
        )
    # The two choices are different models (the run's learner has BatchNorm).
    # (The loaded objects are kept: their functions reference their variables.)
    support_model = tf.saved_model.load(str(tmp_path / "support"))
    running_model = tf.saved_model.load(str(tmp_path / "running"))
    a, b = support_model.serve(x).numpy(), running_model.serve(x).numpy()
    assert np.abs(a - b).max() > 1e-4


def test_adapt_refuses_an_unknown_batch_norm(folders, trained_run, tmp_path, capsys):
    _, _, support = folders
    args = ["adapt", str(trained_run), "--support", str(support), "--out",
            str(tmp_path / "x"), "--batch-norm", "moving"]
    try:
        status = main(args)
    except SystemExit as exit_:  # argparse's usage error
        status = exit_.code
    assert status == 2
    assert "--batch-norm" in capsys.readouterr().err
