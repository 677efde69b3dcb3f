"""`keras-meta demo` end to end, on a tiny budget."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_meta as km
from keras_meta.cli import main
from keras_meta.demo import EVAL_QUERIES, EVAL_SHOTS, run_demo


def test_demo_writes_results_plot_and_adapted_savedmodel(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--iterations", "40", "--eval-tasks", "20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "MAML paper" in printed and "0.67" in printed and "0.35" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"]["iterations"] == 40
    for k in ("1", "10"):
        assert np.isfinite(results["mse"][k]["mean"]) and results["mse"][k]["ci95"] > 0
    assert (out / "adaptation.png").read_bytes()[:4] == b"\x89PNG"

    # The SavedModel is the saved learner adapted with 10 steps to the first
    # test task (K=5, seed 10000 + the demo's seed 0), served by plain TensorFlow.
    served = tf.saved_model.load(str(out / "adapted_model"))
    grid = np.linspace(-5, 5, 7, dtype="float32")[:, None]
    y = served.serve(grid).numpy()
    assert y.shape == (7, 1)
    learner = keras.models.load_model(out / "learner.keras")
    test = km.data.sinusoid(shots=EVAL_SHOTS, queries=EVAL_QUERIES, seed=10_000, num_episodes=20)
    x, _ = next(iter(test))
    adapted = learner.adapt(x["support_x"], x["support_y"], steps=10)
    np.testing.assert_allclose(y, adapted.predict(grid, verbose=0), rtol=1e-5, atol=1e-5)
    one_step = learner.adapt(x["support_x"], x["support_y"], steps=1)
    assert np.abs(one_step.predict(grid, verbose=0) - y).max() > 1e-3


@pytest.mark.slow
def test_demo_ten_steps_beat_one(tmp_path):
    """What the demo shows: from the meta-learned initialisation, 10 inner
    steps fit a 5-shot task better than 1. It takes meta-training: after 40
    or even 400 iterations the 10-step model overfits the 5 support points
    (query MSE above the 1-step one); after 1500 (~30 s) 10 steps win clearly
    (about 0.76 against 1.13 on 100 tasks; the paper's 70000: 0.35 against 0.67)."""
    results = run_demo(iterations=1500, out_dir=str(tmp_path), eval_tasks=100, verbose=0)
    mse1, mse10 = results["mse"]["1"]["mean"], results["mse"]["10"]["mean"]
    assert mse10 < 0.85 * mse1, results["mse"]
