"""The command line's Omniglot split modes and augmentations, on a small
subset of the real archives (../shared/data/omniglot): a few characters of
each archive, re-packed in the official layout."""

import json

import keras
import numpy as np
import pytest
from helpers import omniglot_subset

import keras_meta as km
from keras_meta.cli import main
from keras_meta.experiments import run_dir, sources

pytestmark = pytest.mark.slow  # ~20 s each (two CLI trainings)

# Characters per archive (the first ones in sorted order) and drawings each.
CHARACTERS = {"background": 12, "evaluation": 6}
DRAWINGS = 4


@pytest.fixture(scope="module")
def subset(omniglot_dir, tmp_path_factory):
    """A folder with images_background.zip and images_evaluation.zip holding
    the first characters of the real archives."""
    root = tmp_path_factory.mktemp("omniglot_subset")
    return omniglot_subset(omniglot_dir, root, CHARACTERS, DRAWINGS)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    # The loader's default cache lives under KERAS_HOME (else ~/.keras).
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))


def _train(subset, out, *extra):
    args = [
        "train",
        "--algorithm",
        "maml",
        "--dataset",
        "omniglot",
        "--data-dir",
        str(subset),
        "--ways",
        "3",
        "--shots",
        "1",
        "--queries",
        "1",
        "--meta-batch-size",
        "2",
        "--iterations",
        "2",
        "--steps-per-epoch",
        "2",
        "--val-episodes",
        "2",
        "--eval-episodes",
        "4",
        "--filters",
        "8",
        "--out",
        str(out),
        "--verbose",
        "0",
        *extra,
    ]
    assert main(args) == 0
    return run_dir.run_config(out)


def _keys(images):
    return {image.tobytes() for image in images}


def _assert_evaluation_matches(run, parts):
    """`keras-meta evaluate` reports km.evaluate of the final learner on the
    recorded test episodes, rebuilt from the test part."""
    assert main(["evaluate", str(run), "--verbose", "0"]) == 0
    record = json.loads((run / "evaluation.json").read_text())
    assert record["split"] == "test" and record["results"]["num_episodes"] == 4
    config = run_dir.run_config(run)
    x, y = parts["test"]
    augment = "class_rotation" if config.augmentation == "class_rotation" else None
    episodes = km.data.EpisodeSampler(
        x, y, ways=3, shots=1, queries=1, seed=record["seed"], num_episodes=4, augment=augment
    ).dataset()
    learner = keras.models.load_model(run / "learner.keras")
    expected = km.evaluate(learner, episodes, num_episodes=4)
    assert record["results"]["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert record["results"]["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)


def test_mixed_split_with_rotations_as_classes(subset, tmp_path):
    out = tmp_path / "mixed"
    config = _train(
        subset,
        out,
        "--split",
        "mixed",
        "--split-sizes",
        "8,5,5",
        "--augmentation",
        "rotations_as_classes",
    )
    assert (config.split, config.augmentation) == ("mixed", "rotations_as_classes")
    parts = sources.load_class_splits(config)

    # The 18 characters of both archives, shuffled into 8 / 5 / 5 characters.
    x, y, info = km.data.omniglot(subset, split="all", with_info=True, cache=False)
    assert len(np.unique(y)) == 18
    originals = {}
    for name, count in (("train", 8), ("validation", 5), ("test", 5)):
        images, labels = parts[name]
        # Each character is four classes, its four rotations: class 4c + k is
        # character c rotated by k quarter turns, all of its drawings.
        assert len(np.unique(labels)) == 4 * count
        characters = np.unique(labels // 4)
        assert set(np.unique(labels % 4).tolist()) == {0, 1, 2, 3}
        for c in characters:
            drawings = x[y == c]
            for k in range(4):
                np.testing.assert_array_equal(
                    images[labels == 4 * c + k], np.rot90(drawings, k, axes=(1, 2))
                )
        originals[name] = set(characters.tolist())
    # The splits are disjoint in characters, hence in rotated classes too.
    assert not originals["train"] & originals["validation"]
    assert not originals["train"] & originals["test"]
    assert not originals["validation"] & originals["test"]
    # "Mixed": the characters come from both archives.
    used = sorted(set().union(*originals.values()))
    assert set(info["split"][used].tolist()) == {"background", "evaluation"}  # per class

    # Training episodes are drawn from the training part only.
    train_keys = _keys(parts["train"][0])
    for batch, _ in sources.EpisodeSource(config).train().take(3):
        for key in ("support_x", "query_x"):
            images = batch[key].numpy().reshape(-1, 28, 28, 1)
            assert _keys(images) <= train_keys
    _assert_evaluation_matches(out, parts)


def test_official_split_with_class_rotation(subset, tmp_path):
    out = tmp_path / "official"
    config = _train(
        subset,
        out,
        "--split",
        "official",
        "--split-sizes",
        "0,3,0",
        "--augmentation",
        "class_rotation",
    )
    parts = sources.load_class_splits(config)

    # Training and validation: the background archive's characters, 3 of
    # them held out; test: the evaluation archive.
    background, background_labels = km.data.omniglot(subset, split="background", cache=False)
    evaluation, _ = km.data.omniglot(subset, split="evaluation", cache=False)
    np.testing.assert_array_equal(parts["test"][0], evaluation)
    train, validation = parts["train"], parts["validation"]
    assert len(np.unique(train[1])) == 9 and len(np.unique(validation[1])) == 3
    assert not set(train[1].tolist()) & set(validation[1].tolist())
    assert _keys(train[0]) | _keys(validation[0]) == _keys(background)
    assert len(train[0]) + len(validation[0]) == len(background_labels)

    # class_rotation: in each training episode all images of a class are the
    # drawings of one training character rotated by the same quarter turns.
    rotated = {}
    for image, label in zip(*train):
        for k in range(4):
            rotated[np.rot90(image, k).tobytes()] = (int(label), k)
    turns = set()
    for batch, query_y in sources.EpisodeSource(config).train().take(4):
        for b in range(len(query_y)):
            found = {}
            for images, labels in (
                (batch["support_x"][b], batch["support_y"][b]),
                (batch["query_x"][b], query_y[b]),
            ):
                for image, label in zip(images.numpy(), labels.numpy()):
                    found.setdefault(int(label), set()).add(rotated[image.tobytes()])
            assert all(len(v) == 1 for v in found.values()), found
            turns |= {k for v in found.values() for _, k in v}
    assert len(turns) > 1  # the rotations vary
    _assert_evaluation_matches(out, parts)
