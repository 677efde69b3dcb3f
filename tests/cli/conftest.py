"""Fixtures of the command-line tests, shared by their files: the tiny image
dataset and one uninterrupted training run on it (the reference of the
resumption tests)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cli_helpers import _make_image_folder, _train_args  # noqa: E402

from keras_meta.cli import main  # noqa: E402


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    # 15 classes: a 0.6/0.2/0.2 split leaves 9/3/3, enough for 3-way episodes.
    data = _make_image_folder(root / "data", 15, 6, seed=0)
    support = _make_image_folder(root / "support", 3, 2, seed=1)
    return root, data, support


@pytest.fixture(scope="session")
def trained_run(folders):
    root, data, _ = folders
    out = root / "run"
    assert main(_train_args(data, out)) == 0
    return out


