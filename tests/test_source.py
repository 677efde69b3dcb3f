"""`keras_meta._source.source_commit`: the commit of the code, from git or, in a
`git archive` snapshot (no .git), from the file git archive fills in."""

import importlib.util
import io
import os
import shutil
import subprocess
import tarfile

import pytest

from keras_meta._source import source_commit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(*args):
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or not os.path.isdir(os.path.join(REPO, ".git")),
    reason="needs a git checkout of keras_meta",
)


def test_source_commit_of_a_checkout_is_head():
    head = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    assert source_commit() == head + ("+dirty" if dirty else "")


def test_source_commit_of_a_git_archive_snapshot(tmp_path):
    # What benchmarks run from: `git archive HEAD | tar -x` has no .git.
    archive = subprocess.run(
        ["git", "archive", "HEAD", "keras_meta/_source.py", "keras_meta/_commit.txt"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp_path, filter="data")
    spec = importlib.util.spec_from_file_location(
        "snapshot_source", tmp_path / "keras_meta" / "_source.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.source_commit() == _git("rev-parse", "HEAD")
    # Unsubstituted (a wheel built from a clone): unknown, not a wrong hash.
    (tmp_path / "keras_meta" / "_commit.txt").write_text("$Format:%H$\n")
    module.source_commit.cache_clear()
    assert module.source_commit() == "unknown"
