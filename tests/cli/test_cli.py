"""End-to-end tests of the keras-meta command line on a tiny image folder."""

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from cli_helpers import _error, _make_image_folder, _train_args  # noqa: E402

import keras_meta as km
from keras_meta.cli import main
from keras_meta.experiments import RunConfig, builders, protocols, run_dir, runs, sources
from keras_meta.plots import read_history

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


FRACTIONS = [0.6, 0.2, 0.2]  # the folder dataset's default class split


def _split_images(data, split_seed):
    """`(images, labels, split)`: the folder's images and its seeded class split."""
    images, labels, _ = km.data.image_folder(data, image_size=28, color_mode="grayscale")
    return images, labels, km.data.split_classes(labels, FRACTIONS, seed=split_seed)


def _fixed_episodes(images, labels, split, name, seed, num_episodes):
    """The fixed 3-way 1-shot 2-query episodes of split `name`, from the data."""
    x, y = split.select(name, images, labels)
    sampler = km.data.EpisodeSampler(
        x, y, ways=3, shots=1, queries=2, seed=seed, num_episodes=num_episodes
    )
    return sampler.dataset()


def _numpy_accuracy(learner, episodes):
    """Mean over the episodes of the query accuracy of the learner's predictions."""
    x, y = next(iter(episodes.batch(1000)))
    x = {k: x[k] for k in ("support_x", "support_y", "query_x")}
    preds = learner.predict(x, verbose=0)
    return float(np.mean(preds.argmax(-1) == y.numpy()))


def test_train_evaluate_adapt_end_to_end(folders, trained_run, capsys):
    root, data, support = folders
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
    assert record["split"] == "test" and record["checkpoint"] == "final"
    assert (record["ways"], record["shots"], record["queries"]) == (3, 1, 2)

    # The reported accuracy is that of the run's final learner on the
    # recorded test episodes, rebuilt here from the data: the test classes of
    # the seeded class split, episodes seeded as recorded.
    config = stored["config"]
    images, labels, split = _split_images(data, config["split_seed"])
    test = _fixed_episodes(images, labels, split, "test", record["seed"], 10)
    learner = keras.models.load_model(run / "learner.keras")
    expected = km.evaluate(learner, test, num_episodes=10)
    accuracy = _numpy_accuracy(learner, test)
    assert expected["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert record["results"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert record["results"]["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert f"accuracy: {100 * accuracy:.2f}% ± " in printed

    # Training, validation and test episodes draw from disjoint classes: the
    # classes of the split they belong to (classes found by image content).
    class_of = {image.tobytes(): label for image, label in zip(images, labels)}

    def classes(dataset):
        found = set()
        for x, _ in dataset:
            for key in ("support_x", "query_x"):
                images_of_episodes = x[key].numpy().reshape(-1, 28, 28, 1)
                found |= {class_of[image.tobytes()] for image in images_of_episodes}
        return found

    source = sources.EpisodeSource(RunConfig.from_dict(config))
    seen = {
        "train": classes(source.train().take(10)),
        "validation": classes(source.fixed("validation", 4)),
        "test": classes(source.fixed("test", 10)),
    }
    assert [len(split[name]) for name in seen] == [9, 3, 3]
    for name, found in seen.items():
        assert found <= set(split[name].tolist()), name
    assert len(seen["train"]) > 3 and len(seen["test"]) == 3

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


def test_interrupted_training_resumes_at_the_right_epoch(folders, trained_run, interrupted_copy):
    _, data, _ = folders
    # Interrupted after 2 of 3 epochs (`--fail-after-epochs 2`).
    out = interrupted_copy("resumed")
    metadata = json.loads((out / "backup" / "training_metadata.json").read_text())
    assert metadata["epoch"] == 2
    assert json.loads((out / "run.json").read_text())["epochs_done"] == 2

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
    # The check of best.keras has power: the best epoch came before the
    # resumed one, so a resumed run that forgot the first session's best
    # value would have saved its own first epoch as best.keras.
    accuracy = history["val_accuracy"]
    assert max(accuracy[:2]) >= accuracy[2], accuracy
    _assert_best_checkpoint(out, trained_run, history)

    # A finished run is not trained again.
    assert main(_train_args(data, out)) == 2


def _assert_best_checkpoint(run, reference, history):
    """best.keras of a resumed run is that of the uninterrupted `reference`
    run: the learner of the first epoch with the best validation accuracy,
    whichever session trained it."""
    accuracy = history["val_accuracy"]
    best = int(np.argmax(accuracy))
    loaded = keras.models.load_model(run / "best.keras")
    expected = keras.models.load_model(reference / "best.keras")
    for a, b in zip(loaded.get_weights(), expected.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Its validation loss is the history's at that epoch (the same 4 episodes).
    record = runs.evaluate(run, num_episodes=4, split="validation", checkpoint="best", write=False)
    assert record["results"]["loss"] == pytest.approx(history["val_loss"][best], rel=1e-5)
    assert record["results"]["accuracy"] == pytest.approx(accuracy[best], abs=1e-6)


@pytest.mark.slow  # a second process that imports TensorFlow: ~30 s more
def test_crash_in_the_middle_of_an_epoch_resumes_at_the_last_completed_epoch(folders, trained_run):
    root, data, _ = folders
    out = root / "crashed"
    # Another process, killed (SIGKILL: no exception, no clean-up) after 3
    # of the 6 training batches, i.e. in the middle of the second epoch.
    crashed = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_meta.cli",
            *_train_args(data, out, "--crash-after-batches", "3"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT),
        timeout=600,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    state = json.loads((out / "run.json").read_text())
    assert state["epochs_done"] == 1 and not state["finished"]
    assert read_history(out / "history.csv")["epoch"] == [0.0]

    # The same command resumes at the second epoch; the result is that of the
    # uninterrupted run.
    assert main(_train_args(data, out)) == 0
    assert json.loads((out / "run.json").read_text())["finished"]
    history = read_history(out / "history.csv")
    assert history["epoch"] == [0.0, 1.0, 2.0]
    resumed = keras.models.load_model(out / "learner.keras")
    assert int(resumed.optimizer.iterations) == 6
    reference = keras.models.load_model(trained_run / "learner.keras")
    for a, b in zip(resumed.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    reference_history = read_history(trained_run / "history.csv")
    np.testing.assert_allclose(history["val_loss"], reference_history["val_loss"], rtol=1e-5)
    _assert_best_checkpoint(out, trained_run, history)


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
    line = _error(
        capsys, ["adapt", str(out), "--support", str(tmp_path), "--out", str(tmp_path / "a")]
    )
    assert "adapt takes image folders; this run is a regression run" in line
    assert not (tmp_path / "a").exists()


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


def test_adapt_errors(trained_run, tmp_path, capsys):
    out = str(tmp_path / "adapted")

    def adapt(*args):
        return _error(capsys, ["adapt", *args, "--out", out])

    one = _make_image_folder(tmp_path / "one", 1, 2, seed=2)
    line = adapt(str(trained_run), "--support", str(one))
    assert "has 1 class sub-folder(s); it needs at least 2" in line
    four = _make_image_folder(tmp_path / "four", 4, 2, seed=3)
    line = adapt(str(trained_run), "--support", str(four))
    assert "has 4 classes, but the maml model was trained 3-way" in line
    line = adapt(str(tmp_path), "--support", str(four))
    assert "not a run directory" in line
    empty = tmp_path / "empty_run"
    empty.mkdir()
    (empty / "config.json").write_text((trained_run / "config.json").read_text())
    line = adapt(str(empty), "--support", str(four))
    assert "has no trained learner yet" in line
    assert not os.path.exists(out)


def test_evaluate_split_checkpoint_and_seed(folders, trained_run):
    _, data, _ = folders
    config = run_dir.run_config(trained_run)
    images, labels, split = _split_images(data, config.split_seed)
    for name, checkpoint, seed, file, default_seed in [
        ("validation", "best", 5, "best.keras", config.seed + sources.SEED_OFFSETS["validation"]),
        ("test", "final", 6, "learner.keras", config.seed + sources.SEED_OFFSETS["test"]),
    ]:
        argv = ["evaluate", str(trained_run), "--split", name, "--checkpoint", checkpoint]
        assert main(argv + ["--seed", str(seed), "--episodes", "6", "--verbose", "0"]) == 0
        record = json.loads((trained_run / "evaluation.json").read_text())
        assert (record["split"], record["checkpoint"], record["seed"]) == (name, checkpoint, seed)
        # The numbers are those of that checkpoint on the episodes of that
        # split and seed, rebuilt from the data.
        learner = keras.models.load_model(trained_run / file)
        episodes = _fixed_episodes(images, labels, split, name, seed, 6)
        expected = km.evaluate(learner, episodes, num_episodes=6)
        assert record["results"]["num_episodes"] == 6
        assert record["results"]["loss"] == pytest.approx(expected["loss"], rel=1e-5)
        assert record["results"]["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)
        # The check has power: without --seed, other episodes.
        default = _fixed_episodes(images, labels, split, name, default_seed, 6)
        a, b = (next(iter(e.batch(6)))[0]["support_x"].numpy() for e in (episodes, default))
        assert seed != default_seed and not np.array_equal(a, b)
    # ... and the two checkpoints hold different learners (the best
    # validation epoch is not the last one).
    best, final = (
        keras.models.load_model(trained_run / f) for f in ("best.keras", "learner.keras")
    )
    assert any(not np.array_equal(a, b) for a, b in zip(best.get_weights(), final.get_weights()))


def test_resuming_with_another_configuration_is_an_error(folders, tmp_path, capsys):
    _, data, _ = folders
    out = tmp_path / "run"
    out.mkdir()
    config = RunConfig(dataset="folder", data_dir=str(data), split="random", ways=3)
    (out / "config.json").write_text(json.dumps({"config": config.to_dict()}))
    line = _error(capsys, _train_args(data, out, "--ways", "4"))
    assert "another configuration" in line and "ways: 3 -> 4" in line


def test_protocols_validate_and_build():
    for name in protocols.list_protocols():
        config = protocols.get_protocol(name)
        assert config.name == name
        assert config.published["source"]
        learner = builders.build_learner(config)
        assert learner.optimizer is not None
        if config.algorithm not in ("protonet",):
            assert learner.model.output_shape[-1] == (
                1 if config.dataset == "sinusoid" else config.ways
            )
    with pytest.raises(ValueError, match="Unknown configuration fields"):
        RunConfig.from_dict({"wayz": 5})
    with pytest.raises(ValueError, match="Unknown configuration fields"):
        RunConfig.from_protocol("maml-omniglot-5w1s", wayz=5)
    with pytest.raises(TypeError, match="`ways` must be an integer"):
        RunConfig.from_protocol("maml-omniglot-5w1s", ways="5")
    with pytest.raises(ValueError, match="Unknown protocol"):
        protocols.get_protocol("maml-omniglot-7w1s")
    with pytest.raises(ValueError, match="classifier"):
        RunConfig.from_protocol("maml-sinusoid", algorithm="protonet")
    overridden = RunConfig.from_protocol("protonet-omniglot-5w1s", eval_shots=5)
    assert overridden.eval_episode_shape == (5, 5, 15)


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
    x, y, _ = km.data.image_folder(support, image_size=28, color_mode="grayscale")
    served_logits = served.serve(tf.constant(x)).numpy()
    assert served_logits.shape == (6, 3)
    # The export is the run's learner adapted to these images.
    _, learner = runs.load_run(out)
    adapted = learner.adapt(x, y.astype("int32"))
    np.testing.assert_allclose(served_logits, adapted.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
