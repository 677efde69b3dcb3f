"""Deprecated: the protocols moved to `keras_meta.experiments`.

`keras_meta.presets` held the published training protocols; they are now
`keras_meta.experiments.protocols` (`list_protocols`, `get_protocol`) and
`keras_meta.experiments.RunConfig` (`from_protocol`), and `keras-meta train
--protocol NAME` runs them. This module keeps the former functions, returning
plain dicts as before, with a `DeprecationWarning`; the name `presets` will
mean pretrained learners.

Example:

>>> import warnings
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore", DeprecationWarning)
...     resolve_config("maml-omniglot-5w1s", iterations=100)["iterations"]
100
"""

from __future__ import annotations

import warnings

from keras_meta.experiments import RunConfig, protocols


def _warn(name: str, replacement: str) -> None:
    warnings.warn(
        f"keras_meta.presets.{name} is deprecated; use {replacement}.",
        DeprecationWarning,
        stacklevel=3,
    )


def list_presets() -> list[str]:
    """Deprecated: `keras_meta.experiments.list_protocols()`.

    Example:

    >>> "maml-sinusoid" in list_presets()  # doctest: +SKIP
    True
    """
    _warn("list_presets", "keras_meta.experiments.list_protocols")
    return protocols.list_protocols()


def get_preset(name: str) -> dict:
    """Deprecated: `keras_meta.experiments.get_protocol(name).to_dict()`.

    Example:

    >>> get_preset("maml-sinusoid")["shots"]  # doctest: +SKIP
    10
    """
    _warn("get_preset", "keras_meta.experiments.get_protocol")
    if name not in protocols.PROTOCOLS:
        raise ValueError(
            f"Unknown preset {name!r}; the protocols are: {', '.join(protocols.list_protocols())}."
        )
    return protocols.get_protocol(name).to_dict()


def resolve_config(preset: str | None = None, **overrides) -> dict:
    """Deprecated: `keras_meta.experiments.RunConfig.from_protocol(...).to_dict()`.

    Example:

    >>> resolve_config(iterations=5)["iterations"]  # doctest: +SKIP
    5
    """
    _warn("resolve_config", "keras_meta.experiments.RunConfig.from_protocol")
    return RunConfig.from_protocol(preset, **overrides).to_dict()
