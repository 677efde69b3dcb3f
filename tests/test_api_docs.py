"""docs/api.md names every public symbol of the library's public modules, so
that the reference cannot fall behind the code."""

import importlib
import inspect
import pathlib

import pytest

API = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()

MODULES = (
    "keras_meta",
    "keras_meta.learners",
    "keras_meta.data",
    "keras_meta.data.transforms",
    "keras_meta.ranking",
    "keras_meta.inner_loop",
    "keras_meta.inner_optimizers",
    "keras_meta.evaluation",
    "keras_meta.export",
    "keras_meta.callbacks",
    "keras_meta.distill",
    "keras_meta.validation",
    "keras_meta.models",
    "keras_meta.adapted",
    "keras_meta.loading",
    "keras_meta.input_checks",
    "keras_meta.distribute",
    "keras_meta.presets",
)


def public_names(module):
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == module.__name__
    ]


@pytest.mark.parametrize("name", MODULES)
def test_every_public_symbol_is_in_the_reference(name):
    module = importlib.import_module(name)
    assert f"## `{name}`" in API, f"docs/api.md has no section for {name}"
    missing = [
        n
        for n in public_names(module)
        # A symbol as `name(...)`/`class name`, a sub-module as `package.name`.
        if f"`{n}" not in API and f"class {n}" not in API and f"`{name}.{n}`" not in API
    ]
    assert not missing, f"docs/api.md does not mention {missing} of {name}"
