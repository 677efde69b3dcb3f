"""The library never imports the application layer (keras_meta.experiments,
the CLI, the demo, the presets module); `MetaLearner.from_preset` loads through
the library's `keras_meta.pretrained`."""

import ast
import os
import subprocess
import sys

import pytest

import keras_meta

PACKAGE = os.path.dirname(os.path.abspath(keras_meta.__file__))
REPO_ROOT = os.path.dirname(PACKAGE)
# `pretrained` loads the pretrained learners for `MetaLearner.from_preset`.
LIBRARY = ["learners", "data", "inner_loop", "evaluation", "export", "callbacks", "models",
           "pretrained"]
APPLICATION = ("keras_meta.experiments", "keras_meta.cli", "keras_meta.demo", "keras_meta.presets")


def _library_files():
    for name in LIBRARY:
        path = os.path.join(PACKAGE, name)
        if os.path.isdir(path):
            for root, _, files in os.walk(path):
                yield from (os.path.join(root, f) for f in files if f.endswith(".py"))
        else:
            yield path + ".py"


def _imported(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            # `from keras_meta import experiments`
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_library_sources_do_not_import_the_application_layer():
    files = list(_library_files())
    assert len(files) > 10
    for path in files:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        bad = [m for m in _imported(tree) if m.startswith(APPLICATION)]
        assert not bad, f"{path} imports {bad}"


def test_the_check_has_power(tmp_path):
    tree = ast.parse("from keras_meta import experiments\nimport keras_meta.cli\n")
    assert [m for m in _imported(tree) if m.startswith(APPLICATION)] == [
        "keras_meta.experiments",
        "keras_meta.cli",
    ]


@pytest.mark.parametrize("imports", ["import keras_meta, keras_meta.learners, keras_meta.data, "
                                     "keras_meta.inner_loop, keras_meta.evaluation, "
                                     "keras_meta.export, keras_meta.callbacks, keras_meta.models, "
                                     "keras_meta.pretrained"])
def test_importing_the_library_loads_no_application_module(imports):
    code = (
        f"import sys\n{imports}\n"
        f"print(sorted(m for m in sys.modules if m.startswith({APPLICATION!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
