"""The command line's pretrained learners: `adapt --pretrained`, `pretrained`,
`demo omniglot`, on characters of the real evaluation alphabets
(../shared/data/omniglot), never seen in meta-training."""

import json
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from cli_helpers import _error
from PIL import Image

import keras_meta as km
from keras_meta.cli import main

WAYS = 5


@pytest.fixture(scope="module")
def characters(omniglot_dir, tmp_path_factory):
    """`support/<character>/` (1 drawing each) and `query/<character>/` (4 others):
    the original PNG scans of 5 characters of one evaluation alphabet (one that
    the learner tells apart well: characters of one alphabet are harder to tell
    apart than the mixed-alphabet episodes of the evaluation)."""
    root = tmp_path_factory.mktemp("characters")
    with zipfile.ZipFile(omniglot_dir / "images_evaluation.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".png"))
        by_character = {}
        for name in names:
            by_character.setdefault(name.rsplit("/", 1)[0], []).append(name)
        chosen = [c for c in sorted(by_character) if "/Aurek-Besh/" in c][:WAYS]
        for character in chosen:
            label = character.rsplit("/", 1)[1]
            for i, name in enumerate(by_character[character][:5]):
                folder = root / ("support" if i == 0 else "query") / label
                folder.mkdir(parents=True, exist_ok=True)
                (folder / name.rsplit("/", 1)[1]).write_bytes(archive.read(name))
    return root


def test_adapt_pretrained_on_a_folder(characters, tmp_path, capsys):
    out = tmp_path / "adapted"
    code = main(["adapt", "--pretrained", "protonet_omniglot",
                 "--support", str(characters / "support"), "--out", str(out)])
    assert code == 0
    assert "Adapted to 5 classes (5 images)" in capsys.readouterr().out
    labels = json.loads((out / "labels.json").read_text())
    assert sorted(labels.values()) == sorted(p.name for p in (characters / "support").iterdir())
    # The exported model classifies the other drawings of the characters:
    # scans of dark ink, inverted and resized as the support was.
    x, y, names = km.data.image_folder(
        characters / "query", image_size=28, color_mode="grayscale", invert=True
    )
    served = tf.saved_model.load(str(out))
    predicted = np.argmax(np.asarray(served.serve(tf.constant(x))), -1)
    truth = np.asarray([names.index(labels[str(p)]) for p in predicted])
    accuracy = float(np.mean(truth == y))
    assert accuracy > 0.6, accuracy  # chance: 0.2


def test_adapt_pretrained_errors(characters, tmp_path, capsys):
    support = str(characters / "support")
    line = _error(capsys, ["adapt", "runs/x", "--pretrained", "protonet_omniglot",
                           "--support", support, "--out", str(tmp_path / "a")])
    assert "RUN_DIR='runs/x'" in line and "--pretrained='protonet_omniglot'" in line
    line = _error(capsys, ["adapt", "--support", support, "--out", str(tmp_path / "b")])
    assert "either a RUN_DIR or --pretrained NAME" in line
    line = _error(capsys, ["adapt", "--pretrained", "nope", "--support", support,
                           "--out", str(tmp_path / "c")])
    assert "Unknown pretrained learner 'nope'" in line
    assert "maml_omniglot_5way, protonet_omniglot" in line
    line = _error(capsys, ["adapt", "--pretrained", "protonet_omniglot", "--checkpoint", "best",
                           "--support", support, "--out", str(tmp_path / "d")])
    assert "--checkpoint best with --pretrained" in line


def test_pretrained_command(capsys):
    assert main(["pretrained"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["maml_omniglot_5way", "protonet_omniglot"]
    assert "ProtoNet" in lines[1] and "5way1shot" in lines[1] and "iterations" in lines[1]
    assert main(["pretrained", "protonet_omniglot"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == km.presets.get_metadata("protonet_omniglot")
    line = _error(capsys, ["pretrained", "nope"])
    assert "unknown pretrained learner 'nope'" in line and "protonet_omniglot" in line


def test_demo_omniglot_from_the_archives(omniglot_dir, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "omniglot", "--data-dir", str(omniglot_dir), "--out", str(out),
                 "--alphabet", "Aurek-Besh", "--ways", "4", "--seed", "1"]) == 0
    png = out / "omniglot_demo.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(png).size[0] > 300
    results = json.loads((out / "omniglot_demo.json").read_text())
    assert results["alphabet"] == "Aurek-Besh" and results["ways"] == 4
    assert all(c.startswith("Aurek-Besh/") for c in results["classes"])
    assert results["queries"] == 12 and results["accuracy"] > 0.5  # chance: 0.25
    # The accuracy measured within the alphabet is of 5-way episodes: none for 4 ways.
    assert "alphabet_accuracy" not in results
    assert main(["demo", "omniglot", "--data-dir", str(omniglot_dir), "--out", str(out),
                 "--alphabet", "Aurek-Besh", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "omniglot_demo.json").read_text())
    measured = km.presets.get_metadata("protonet_omniglot")["evaluation_per_alphabet"]
    expected = measured["alphabets"]["Aurek-Besh"]
    assert results["alphabet_accuracy"] == {
        "accuracy": expected["accuracy"], "accuracy_ci95": expected["accuracy_ci95"],
        "episodes": measured["episodes"], "queries": measured["queries"],
    }  # fmt: skip
    assert (f"Its mean on {measured['episodes']} 5-way 1-shot episodes of Aurek-Besh: "
            f"{100 * expected['accuracy']:.1f}%") in printed
    line = _error(capsys, ["demo", "omniglot", "--data-dir", str(omniglot_dir),
                           "--alphabet", "Latin", "--out", str(tmp_path / "x")])
    assert "`alphabet` must be one of Omniglot's evaluation alphabets" in line
    assert "received 'Latin'" in line


def test_demo_omniglot_from_an_image_folder(characters, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "omniglot", "--images", str(characters / "query"),
                 "--out", str(out), "--ways", "3"]) == 0
    assert (out / "omniglot_demo.png").read_bytes()[:4] == b"\x89PNG"
    results = json.loads((out / "omniglot_demo.json").read_text())
    assert results["ways"] == 3 and results["queries"] == 9 and results["alphabet"] is None
    line = _error(capsys, ["demo", "omniglot", "--images", str(characters / "query"),
                           "--ways", "9", "--out", str(tmp_path / "y")])
    assert "`ways` must be at most the 5 classes available; received ways=9" in line
    line = _error(capsys, ["demo", "omniglot", "--out", str(tmp_path / "z")])
    assert "--data-dir DIR" in line and "--images FOLDER" in line
    line = _error(capsys, ["demo", "--ways", "3"])
    assert "--ways" in line and "`demo omniglot`" in line
