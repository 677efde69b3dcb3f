"""Which commit of keras_meta's source a process runs, for the records of runs
and pretrained learners (a result is reproducible only with its code)."""

from __future__ import annotations

import functools
import os
import subprocess

# `git archive` writes the commit into this file (see .gitattributes): a
# snapshot of the tree made for a long run has no .git to ask.
_COMMIT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_commit.txt")


def _git(*args: str) -> str:
    out = subprocess.run(
        ["git", *args], cwd=os.path.dirname(_COMMIT_FILE), capture_output=True,
        text=True, check=True, timeout=30,
    )
    return out.stdout.strip()


def _archived_commit() -> str | None:
    try:
        with open(_COMMIT_FILE, encoding="utf-8") as f:
            text = f.read().strip()
    except OSError:
        return None
    # Unsubstituted (a clone, or a wheel built from one) it still reads "$Format:%H$".
    if len(text) == 40 and all(c in "0123456789abcdef" for c in text):
        return text
    return None


@functools.cache
def source_commit() -> str:
    """The commit of the keras_meta source this process imports.

    The full hash, with `+dirty` when tracked files of that checkout differ
    from it; the hash `git archive` wrote for a snapshot of the tree;
    `"unknown"` for an install that knows neither (a wheel).

    Example:

    >>> source_commit() == "unknown" or len(source_commit().split("+")[0]) == 40
    True
    """
    try:
        commit = _git("rev-parse", "HEAD")
        # The whole checkout: benchmarks/ and examples/ run results too.
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        # The repository must be keras_meta's own: a wheel installed inside
        # another project's checkout would report that project's commit.
        top = _git("rev-parse", "--show-toplevel")
        if os.path.isfile(os.path.join(top, "keras_meta", "_source.py")):
            return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return _archived_commit() or "unknown"
