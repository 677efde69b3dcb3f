"""Fixtures of the command-line tests, shared by their files: the tiny image
dataset, one uninterrupted training run on it (the reference of the
resumption tests) and one run interrupted after 2 of its 3 epochs (copied by
each test that resumes or damages it)."""

import os
import shutil
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


@pytest.fixture(scope="session")
def interrupted_template(folders):
    """A run interrupted after 2 of its 3 epochs, trained once per session.
    Tests take a copy (`interrupted_copy`): they resume or damage it."""
    root, data, _ = folders
    out = root / "interrupted_template"
    assert main(_train_args(data, out, "--fail-after-epochs", "2")) == 130
    return out


@pytest.fixture
def interrupted_copy(interrupted_template, tmp_path):
    """Makes a private copy of the interrupted run at `tmp_path / name`."""

    def copy(name="interrupted"):
        return shutil.copytree(interrupted_template, tmp_path / name)

    return copy
