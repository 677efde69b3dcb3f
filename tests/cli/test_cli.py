"""End-to-end tests of the keras-meta command line on a tiny image folder."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_meta as km
from keras_meta import presets, runs
from keras_meta.cli import main
from keras_meta.plots import read_history

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _make_image_folder(root, num_classes, per_class, seed):
    """Class-specific 7x7 block patterns upsampled to 28x28, plus noise."""
    rng = np.random.default_rng(seed)
    for c in range(num_classes):
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True)
        pattern = np.kron(rng.random((7, 7)) > 0.5, np.ones((4, 4)))
        for i in range(per_class):
            image = np.clip(pattern + 0.3 * rng.standard_normal((28, 28)), 0, 1)
            Image.fromarray((255 * image).astype(np.uint8), "L").save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    # 15 classes: a 0.6/0.2/0.2 split leaves 9/3/3, enough for 3-way episodes.
    data = _make_image_folder(root / "data", 15, 6, seed=0)
    support = _make_image_folder(root / "support", 3, 2, seed=1)
    return root, data, support


def _train_args(data, out, *extra):
    return [
        "train",
        "--algorithm",
        "maml",
        "--dataset",
        "folder",
        "--data-dir",
        str(data),
        "--split",
        "random",
        "--ways",
        "3",
        "--shots",
        "1",
        "--queries",
        "2",
        "--meta-batch-size",
        "2",
        "--iterations",
        "6",
        "--steps-per-epoch",
        "2",
        "--val-episodes",
        "4",
        "--eval-episodes",
        "10",
        "--filters",
        "8",
        "--inner-lr",
        "0.4",
        "--out",
        str(out),
        "--verbose",
        "0",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained_run(folders):
    root, data, _ = folders
    out = root / "run"
    assert main(_train_args(data, out)) == 0
    return out


def test_train_evaluate_adapt_end_to_end(folders, trained_run, capsys):
    root, _, support = folders
    run = trained_run
    for name in (
        "config.json",
        "run.json",
        "learner.keras",
        "best.keras",
        "history.csv",
        "curves.png",
    ):
        assert (run / name).exists(), name
    assert not (run / "backup").exists()  # removed once training finished
    assert os.listdir(run / "logs" / "validation")
    stored = json.loads((run / "config.json").read_text())
    assert stored["config"]["ways"] == 3 and stored["iterations"] == 6
    assert stored["machine"]["cpu_count"] == os.cpu_count()
    state = json.loads((run / "run.json").read_text())
    assert state["finished"] and state["iterations_done"] == 6
    history = read_history(run / "history.csv")
    assert history["epoch"] == [0.0, 1.0, 2.0]
    assert len(history["val_accuracy_ci95"]) == 3

    capsys.readouterr()
    assert main(["evaluate", str(run), "--verbose", "0"]) == 0
    printed = capsys.readouterr().out
    assert "accuracy:" in printed and "± " in printed and "10 episodes" in printed
    record = json.loads((run / "evaluation.json").read_text())
    assert record["results"]["num_episodes"] == 10
    assert 0.0 <= record["results"]["accuracy"] <= 1.0
    assert record["split"] == "test" and (record["ways"], record["shots"]) == (3, 1)

    adapted_dir = root / "adapted"
    assert main(["adapt", str(run), "--support", str(support), "--out", str(adapted_dir)]) == 0
    labels = json.loads((adapted_dir / "labels.json").read_text())
    assert labels == {"0": "class_00", "1": "class_01", "2": "class_02"}
    served = tf.saved_model.load(str(adapted_dir))
    x, y, _ = km.data.image_folder(support, image_size=28, color_mode="grayscale")
    served_logits = served.serve(tf.constant(x)).numpy()
    assert served_logits.shape == (6, 3)
    # The export is the adaptation of the run's learner to these images.
    _, learner = runs.load_run(run)
    expected = learner.adapt(x, y.astype("int32"))(x, training=False)
    np.testing.assert_allclose(served_logits, np.asarray(expected), atol=1e-4)


def test_interrupted_training_resumes_at_the_right_epoch(folders, trained_run):
    root, data, _ = folders
    out = root / "resumed"
    # Interrupted after 1 of 3 epochs.
    assert main(_train_args(data, out, "--fail-after-epochs", "1")) == 130
    metadata = json.loads((out / "backup" / "training_metadata.json").read_text())
    assert metadata["epoch"] == 1
    assert json.loads((out / "run.json").read_text())["epochs_done"] == 1

    assert main(_train_args(data, out)) == 0
    history = read_history(out / "history.csv")
    assert history["epoch"] == [0.0, 1.0, 2.0]
    resumed = keras.models.load_model(out / "learner.keras")
    reference = keras.models.load_model(trained_run / "learner.keras")
    # Weights and optimizer state were restored (3 epochs x 2 steps in all),
    # and the episode stream continued where it stopped: the result is that
    # of the uninterrupted run.
    assert int(resumed.optimizer.iterations) == 6
    for a, b in zip(resumed.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    reference_history = read_history(trained_run / "history.csv")
    np.testing.assert_allclose(history["val_loss"], reference_history["val_loss"], rtol=1e-5)

    # A finished run is not trained again.
    assert main(_train_args(data, out)) == 2


def test_sinusoid_preset_and_regression_plot(tmp_path, capsys):
    out = tmp_path / "sine"
    assert (
        main(
            [
                "train",
                "--preset",
                "maml-sinusoid",
                "--iterations",
                "20",
                "--steps-per-epoch",
                "10",
                "--val-episodes",
                "10",
                "--out",
                str(out),
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    assert (out / "adaptation.png").stat().st_size > 1000
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["name"] == "maml-sinusoid" and config["iterations"] == 20
    assert config["inner_learning_rate"] == 0.01  # the preset's, not overridden
    assert main(["evaluate", str(out), "--episodes", "20", "--verbose", "0"]) == 0
    printed = capsys.readouterr().out
    assert "loss:" in printed and "published loss: 0.77" in printed


def _error(capsys, argv):
    """Runs the CLI expecting a usage error; returns the error line."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's parser.error
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


def test_bad_arguments_give_one_line_errors(folders, trained_run, tmp_path, capsys):
    _, data, _ = folders
    out = str(tmp_path / "x")
    line = _error(capsys, ["train", "--preset", "nope", "--out", out])
    assert "unknown preset 'nope'" in line and "maml-omniglot-5w1s" in line
    line = _error(capsys, ["train", "--preset", "maml-omniglot-5w1s", "--out", out])
    assert "needs --data-dir" in line
    line = _error(
        capsys,
        [
            "train",
            "--preset",
            "maml-omniglot-5w1s",
            "--out",
            out,
            "--data-dir",
            str(tmp_path / "missing"),
        ],
    )
    assert "does not exist" in line
    line = _error(capsys, _train_args(data, out, "--ways", "10"))
    assert "train split" in line and "ways=10" in line
    line = _error(capsys, _train_args(data, out, "--split-sizes", "11,2,2"))
    assert "validation split" in line
    line = _error(capsys, _train_args(data, out, "--eval-ways", "2"))
    assert "eval_ways (2) must equal ways (3)" in line
    bad_config = tmp_path / "bad.json"
    bad_config.write_text(json.dumps({"wayz": 3}))
    line = _error(capsys, ["train", "--config", str(bad_config), "--out", out])
    assert "Unknown configuration fields ['wayz']" in line
    line = _error(capsys, ["evaluate", str(tmp_path)])
    assert "not a run directory" in line
    line = _error(
        capsys, ["adapt", str(trained_run), "--support", str(tmp_path / "missing"), "--out", out]
    )
    assert "support images" in line
    assert not os.path.exists(out)


def test_resuming_with_another_configuration_is_an_error(folders, tmp_path, capsys):
    _, data, _ = folders
    out = tmp_path / "run"
    out.mkdir()
    config = presets.resolve_config(dataset="folder", data_dir=str(data), split="random", ways=3)
    (out / "config.json").write_text(json.dumps({"config": config}))
    line = _error(capsys, _train_args(data, out, "--ways", "4"))
    assert "another configuration" in line and "ways: 3 -> 4" in line


def test_presets_validate_and_build():
    for name in presets.list_presets():
        config = presets.get_preset(name)
        assert config["name"] == name
        assert config["published"]["source"]
        learner = presets.build_learner(config, runs.input_shape(config))
        assert learner.optimizer is not None
        if config["algorithm"] not in ("protonet",):
            assert learner.model.output_shape[-1] == (
                1 if config["dataset"] == "sinusoid" else config["ways"]
            )
    with pytest.raises(ValueError, match="Unknown configuration fields"):
        presets.validate_config({"wayz": 5})
    with pytest.raises(ValueError, match="Unknown configuration fields"):
        presets.resolve_config("maml-omniglot-5w1s", wayz=5)
    with pytest.raises(TypeError, match="`ways` must be of type int"):
        presets.resolve_config("maml-omniglot-5w1s", ways="5")
    with pytest.raises(ValueError, match="Unknown preset"):
        presets.get_preset("maml-omniglot-7w1s")
    with pytest.raises(ValueError, match="classifier"):
        presets.resolve_config("maml-sinusoid", algorithm="protonet")
    overridden = presets.resolve_config("protonet-omniglot-5w1s", eval_shots=5)
    assert presets.eval_episode_shape(overridden) == (5, 5, 15)


def test_presets_command(capsys):
    assert main(["presets"]) == 0
    table = capsys.readouterr().out
    assert "maml-omniglot-5w1s" in table and "98.70%" in table
    assert main(["presets", "reptile-omniglot-5w1s"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["inner_optimizer"] == "adam" and shown["eval_inner_steps"] == 50


@pytest.mark.parametrize("command", ["train", "evaluate", "adapt", "presets"])
def test_sub_command_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: keras-meta " + command in capsys.readouterr().out


def test_console_entry_help():
    result = subprocess.run(
        [sys.executable, "-m", "keras_meta.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for command in ("train", "evaluate", "adapt", "presets", "demo"):
        assert command in result.stdout


@pytest.mark.parametrize(
    "algorithm, extra",
    [
        ("protonet", []),
        (
            "reptile",
            [
                "--inner-optimizer",
                "adam",
                "--inner-batch-size",
                "2",
                "--optimizer",
                "sgd",
                "--meta-lr",
                "0.5",
            ],
        ),
    ],
)
def test_other_algorithms_train_evaluate_adapt(folders, algorithm, extra):
    root, data, support = folders
    out = root / algorithm
    args = _train_args(
        data, out, "--algorithm", algorithm, "--iterations", "2", "--val-episodes", "2", *extra
    )
    assert main(args) == 0
    assert main(["evaluate", str(out), "--episodes", "4", "--verbose", "0"]) == 0
    assert main(["adapt", str(out), "--support", str(support), "--out", str(out / "adapted")]) == 0
    served = tf.saved_model.load(str(out / "adapted"))
    x, _, _ = km.data.image_folder(support, image_size=28, color_mode="grayscale")
    assert served.serve(tf.constant(x)).shape == (6, 3)
