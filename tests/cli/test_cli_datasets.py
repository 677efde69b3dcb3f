"""`--dataset` beyond Omniglot and folders: the TFDS benchmarks (under
`tfds.testing.mock_data`: real TFDS, generated examples), the streamed
ImageNet benchmarks, cross-domain `evaluate --dataset`, and the errors."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from cli_helpers import _error  # noqa: E402
from PIL import Image

import keras_meta as km
from keras_meta.cli import main
from keras_meta.experiments import run_dir, sources

# Examples per TFDS split of the mock: ~30 per CIFAR-100 class over train+test,
# so that every class has the 3 images of a 1-shot, 2-query episode.
MOCK_EXAMPLES = 1500


def _tiny_args(out, *extra):
    return [
        "train", "--algorithm", "maml", "--ways", "2", "--shots", "1", "--queries", "2",
        "--meta-batch-size", "2", "--iterations", "2", "--steps-per-epoch", "2",
        "--val-episodes", "2", "--eval-episodes", "4", "--filters", "4",
        "--out", str(out), "--verbose", "0", *extra,
    ]  # fmt: skip


def _episodes(x, y, config, split, num_episodes, **kwargs):
    ways, shots, queries = config.eval_episode_shape
    return km.data.EpisodeSampler(
        x, y, ways=ways, shots=shots, queries=queries,
        seed=sources.eval_seed(config, split), num_episodes=num_episodes, **kwargs,
    ).dataset()  # fmt: skip


def _evaluation(run):
    """The run's evaluation.json, or None (other tests may have written it)."""
    file = run / "evaluation.json"
    return file.read_bytes() if file.exists() else None


def test_dataset_errors_are_one_line(trained_run, tmp_path, capsys):
    out = tmp_path / "run"
    line = _error(capsys, _tiny_args(out, "--dataset", "nope"))
    assert "invalid choice: 'nope'" in line and "cifar_fs" in line and "tiered_imagenet" in line
    line = _error(capsys, _tiny_args(out, "--dataset", "mini_imagenet"))
    assert "the mini_imagenet dataset needs --data-dir (the ImageNet train folder" in line
    line = _error(capsys, _tiny_args(out, "--dataset", "folder"))
    assert "the folder dataset needs --data-dir (one sub-folder of images per class)" in line
    line = _error(capsys, _tiny_args(out, "--dataset", "cifar_fs", "--data-dir", str(out)))
    assert f"the data directory {str(out)!r} does not exist" in line
    line = _error(capsys, _tiny_args(out, "--dataset", "cub", "--split", "random"))
    assert "The cub dataset takes split='benchmark'" in line and "received split='random'" in line
    line = _error(capsys, _tiny_args(out, "--dataset", "sinusoid"))
    assert "model='mlp'" in line and "dataset='sinusoid'" in line
    line = _error(capsys, _tiny_args(out, "--dataset", "cifar_fs", "--model", "mlp"))
    assert "image datasets model='conv4'" in line and "dataset='cifar_fs'" in line
    line = _error(
        capsys,
        _tiny_args(out, "--dataset", "mini_imagenet", "--data-dir", str(tmp_path),
                   "--augmentation", "rotations_as_classes"),
    )
    assert "needs the images in memory" in line and "mini_imagenet" in line
    line = _error(capsys, _tiny_args(out, "--dataset", "fc100", "--split-sizes", "60,20,20"))
    assert "`split_sizes` does not apply; received split_sizes=[60, 20, 20]" in line
    assert not out.exists()

    evaluation = _evaluation(trained_run)
    line = _error(capsys, ["evaluate", str(trained_run), "--dataset", "nope"])
    assert "invalid choice: 'nope'" in line and "mini_imagenet" in line
    line = _error(capsys, ["evaluate", str(trained_run), "--dataset", "sinusoid"])
    assert "a run trained on folder cannot be evaluated on sinusoid" in line
    line = _error(capsys, ["evaluate", str(trained_run), "--dataset", "tiered_imagenet"])
    assert "the tiered_imagenet dataset needs --data-dir" in line
    assert _evaluation(trained_run) == evaluation
    assert not (trained_run / "evaluation_tiered_imagenet.json").exists()


@pytest.mark.parametrize(
    "dataset", ["cifar_fs", pytest.param("fc100", marks=pytest.mark.slow)]
)
def test_tfds_benchmark_trains_and_evaluates(dataset, tmp_path, capsys):
    loader = getattr(km.data, dataset)
    out = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        assert main(_tiny_args(out, "--dataset", dataset)) == 0
        assert main(["evaluate", str(out), "--episodes", "4", "--verbose", "0"]) == 0
        x, y = loader("test", dtype="uint8")
    config = run_dir.run_config(out)
    assert (config.split, config.input_shape) == ("benchmark", (32, 32, 3))
    assert "Wrote " + str(out / "evaluation.json") in capsys.readouterr().out
    record = json.loads((out / "evaluation.json").read_text())
    assert "dataset" not in record and record["ways"] == 2
    # The numbers are the learner's on the test classes' episodes, rebuilt
    # from the loader (8-bit pixels / 255, the run's test seed).
    learner = keras.models.load_model(out / "learner.keras")
    expected = km.evaluate(learner, _episodes(x, y, config, "test", 4, scale=255), 4)
    assert record["results"]["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert record["results"]["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)


def test_cross_domain_evaluation_loads_the_target_at_the_learners_input(trained_run, capsys):
    # A folder run (28x28 grayscale, 3-way 1-shot 2 queries) on CIFAR-FS's test
    # classes (32x32 RGB): the images are resized and made grayscale.
    evaluation = _evaluation(trained_run)
    argv = ["evaluate", str(trained_run), "--dataset", "cifar_fs", "--episodes", "4"]
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        assert main(argv + ["--verbose", "0"]) == 0
        x, y = km.data.cifar_fs("test", image_size=28, dtype="uint8")
    printed = capsys.readouterr().out
    assert "folder run evaluated on cifar_fs:\naccuracy: " in printed
    assert "Wrote " + str(trained_run / "evaluation_cifar_fs.json") in printed
    assert _evaluation(trained_run) == evaluation
    record = json.loads((trained_run / "evaluation_cifar_fs.json").read_text())
    assert (record["dataset"], record["trained_on"], record["published"]) == (
        "cifar_fs", "folder", None,
    )
    assert (record["ways"], record["shots"], record["queries"]) == (3, 1, 2)
    config = run_dir.run_config(trained_run)
    gray = tf.image.rgb_to_grayscale(x).numpy()
    assert gray.shape[1:] == (28, 28, 1) and np.unique(y).size == 20
    learner = keras.models.load_model(trained_run / "learner.keras")
    expected = km.evaluate(learner, _episodes(gray, y, config, "test", 4, scale=255), 4)
    assert record["results"]["loss"] == pytest.approx(expected["loss"], rel=1e-5)


def test_adapt_resizes_support_images_of_another_size(trained_run, tmp_path):
    # 40x40 RGB images for a run trained on 28x28 grayscale ones.
    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / "support" / f"c{c}").mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels, "RGB").save(tmp_path / "support" / f"c{c}" / f"{i}.png")
    out = tmp_path / "adapted"
    assert main(["adapt", str(trained_run), "--support", str(tmp_path / "support"),
                 "--out", str(out)]) == 0
    images, _, names = km.data.image_folder(tmp_path / "support", 28, color_mode="grayscale")
    model = tf.saved_model.load(str(out))
    assert tuple(model.serve(images).shape) == (6, 3)
    assert json.loads((out / "labels.json").read_text()) == {str(i): n for i, n in
                                                             enumerate(names)}


def _stand_in_mini_imagenet(root, split, image_size=84):
    """Stands in for an ImageNet benchmark: the folder's sorted classes 9/3/3,
    as the per-class file lists that the streaming sampler takes."""
    names = sorted(os.listdir(root))
    picked = {"train": names[:9], "validation": names[9:12], "test": names[12:]}[split]
    return {n: sorted(os.path.join(root, n, f) for f in os.listdir(os.path.join(root, n)))
            for n in picked}


@pytest.mark.slow
def test_streamed_benchmark_equals_the_same_classes_in_memory(folders, tmp_path, monkeypatch):
    # sources.py's streaming branch, through a stand-in for km.data.mini_imagenet
    # (the real loader and its ImageNet class lists: the next test).
    _, data, _ = folders
    monkeypatch.setattr(km.data, "mini_imagenet", _stand_in_mini_imagenet, raising=False)
    out = tmp_path / "run"
    args = ["--dataset", "mini_imagenet", "--data-dir", str(data), "--image-size", "28",
            "--color-mode", "grayscale", "--ways", "3"]
    assert main(_tiny_args(out, *args)) == 0
    assert main(["evaluate", str(out), "--episodes", "3", "--verbose", "0"]) == 0
    config = run_dir.run_config(out)
    streamed = sources.EpisodeSource(config).fixed("test", 3)
    # The same files read into memory: no resize (28x28 stored), so the
    # streamed episodes are these, bit for bit.
    x, y, names = km.data.image_folder(data, 28, color_mode="grayscale")
    keep = np.isin(y, [names.index(n) for n in sorted(names)[12:]])
    in_memory = _episodes(x[keep], y[keep], config, "test", 3)
    for (a, qa), (b, qb) in zip(streamed, in_memory, strict=True):
        for key in ("support_x", "support_y", "query_x"):
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
        np.testing.assert_array_equal(qa.numpy(), qb.numpy())
    record = json.loads((out / "evaluation.json").read_text())
    learner = keras.models.load_model(out / "learner.keras")
    expected = km.evaluate(learner, in_memory, 3)
    assert record["results"]["loss"] == pytest.approx(expected["loss"], rel=1e-5)


@pytest.mark.slow
def test_mini_imagenet_from_an_imagenet_folder(tmp_path, capsys):
    root = tmp_path / "imagenet"
    rng = np.random.default_rng(0)
    for split in ("train", "validation", "test"):
        for wnid in km.data.imagenet_classes("mini_imagenet", split):
            (root / wnid).mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
                Image.fromarray(pixels, "RGB").save(root / wnid / f"{wnid}_{i}.png")
    out = tmp_path / "run"
    args = ["--dataset", "mini_imagenet", "--data-dir", str(root), "--image-size", "16"]
    assert main(_tiny_args(out, *args)) == 0
    assert main(["evaluate", str(out), "--episodes", "3", "--verbose", "0"]) == 0
    record = json.loads((out / "evaluation.json").read_text())
    assert record["results"]["num_episodes"] == 3
    assert run_dir.run_config(out).input_shape == (16, 16, 3)


def test_protocols_list_the_mini_imagenet_protocols(capsys):
    assert main(["protocols"]) == 0
    table = capsys.readouterr().out
    for name, published in (("maml-miniimagenet-5w1s", "48.70%"),
                            ("maml-miniimagenet-5w5s", "63.11%"),
                            ("protonet-miniimagenet-5w1s", "49.42%"),
                            ("protonet-miniimagenet-5w5s", "68.20%")):
        row = next(r for r in table.splitlines() if r.startswith(name + " "))
        assert "mini_imagenet" in row and published in row
