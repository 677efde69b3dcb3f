"""`keras-meta demo` end to end, on a tiny budget."""

import json

import numpy as np
import tensorflow as tf

from keras_meta.cli import main


def test_demo_writes_results_plot_and_adapted_savedmodel(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--iterations", "40", "--eval-tasks", "20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "MAML paper" in printed and "0.67" in printed and "0.35" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"]["iterations"] == 40
    for k in ("1", "10"):
        assert np.isfinite(results["mse"][k]["mean"]) and results["mse"][k]["ci95"] > 0
    assert results["mse"]["10"]["mean"] != results["mse"]["1"]["mean"]
    assert (out / "adaptation.png").read_bytes()[:4] == b"\x89PNG"
    served = tf.saved_model.load(str(out / "adapted_model"))
    y = served.serve(np.linspace(-5, 5, 7, dtype="float32")[:, None]).numpy()
    assert y.shape == (7, 1) and np.all(np.isfinite(y))
