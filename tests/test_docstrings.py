"""The `>>>` examples in keras_meta's docstrings run and show what they say.

One case per module of the package (private ones included) that has an
example to run; modules whose examples are all `# doctest: +SKIP` (such as
keras_meta.demo) have nothing to check and are left out. Each case runs in a
fresh temporary working directory, so that examples writing to relative
paths leave nothing behind.
"""

import doctest
import importlib
import pkgutil

import pytest

import keras_meta

OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

# Modules whose examples are known to fail: module name -> reason. Marked
# xfail(strict=True), so that a fix shows up as an unexpected pass.
KNOWN_FAILURES = {}

# Modules whose examples take long enough to leave out of the default run.
SLOW = set()


def module_names():
    prefix = keras_meta.__name__ + "."
    names = [keras_meta.__name__]
    names += [info.name for info in pkgutil.walk_packages(keras_meta.__path__, prefix)]
    return sorted(names)


def doctests(module):
    """The module's own docstring tests (not those of what it imports)."""
    return [test for test in doctest.DocTestFinder().find(module) if test.examples]


def runs_something(tests):
    return any(not example.options.get(doctest.SKIP) for t in tests for example in t.examples)


def cases():
    for name in module_names():
        if not runs_something(doctests(importlib.import_module(name))):
            continue
        marks = []
        if name in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[name]))
        if name in SLOW:
            marks.append(pytest.mark.slow)
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(cases()))
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    report = []
    for test in doctests(importlib.import_module(name)):
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0
    assert results.failed == 0, "".join(report)
