"""Pretrained learners: meta-trained weights shipped with the package.

A pretrained learner ("preset", as in keras-hub) is a folder of
`keras_meta/pretrained/`: `model.weights.h5` (float32 weights only, no
optimizer state) and `metadata.json` (the training configuration, the budget
actually spent, the evaluation with its 95% CI, the commit and the date).
Loading (`keras_meta.pretrained`, which `MetaLearner.from_preset` calls)
builds the learner from the metadata (`keras_meta.models.conv4` and the learner
class), then reads the weights with `load_weights`: nothing is deserialised
from the file but arrays (no pickle, no Lambda layers). This module adds the
training configuration as a `RunConfig` and the writing of the folders
(`benchmarks/pretrain.py` makes them).

>>> import keras_meta as km
>>> "protonet_omniglot" in km.presets.list_pretrained()
True
>>> learner = km.ProtoNet.from_preset("protonet_omniglot")
>>> learner.model.input_shape
(None, 28, 28, 1)

Deprecated, kept for one release with a `DeprecationWarning`: the former
protocol functions (`list_presets`, `get_preset`, `resolve_config`), now
`keras_meta.experiments.protocols` (`list_protocols`, `get_protocol`) and
`keras_meta.experiments.RunConfig.from_protocol`:

>>> import warnings
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore", DeprecationWarning)
...     resolve_config("maml-omniglot-5w1s", iterations=100)["iterations"]
100
"""

from __future__ import annotations

import json
import os
import warnings

from keras_meta.experiments import RunConfig, protocols
from keras_meta.pretrained import (
    METADATA_FILE,
    PRETRAINED_DIR,
    WEIGHTS_FILE,
    _read_metadata,
    get_metadata,
    list_pretrained,
    load_pretrained,
)

__all__ = [
    "METADATA_FILE", "PRETRAINED_DIR", "WEIGHTS_FILE", "describe", "get_config", "get_metadata",
    "list_pretrained", "load_pretrained", "save_pretrained",
    # Deprecated.
    "get_preset", "list_presets", "resolve_config",
]  # fmt: skip


def get_config(name: str) -> RunConfig:
    """The training configuration of a pretrained learner, as a `RunConfig`.

    Example:

    >>> get_config("maml_omniglot_5way").ways
    5
    """
    return RunConfig.from_dict(get_metadata(name)["config"])


def save_pretrained(learner, config: RunConfig, directory, metadata: dict) -> dict:
    """Writes a learner as a pretrained-learner folder: weights only, and metadata.

    The weights are those of a fresh uncompiled learner of `config`, so that
    the file holds no optimizer state; `metadata` gets `class`, `config`
    (without `data_dir`: no machine path ships) and `weights_bytes`. Returns
    the paths written: `{"weights": ..., "metadata": ...}`.

    Example:

    >>> import tempfile
    >>> config = get_config("protonet_omniglot")
    >>> paths = save_pretrained(load_pretrained("protonet_omniglot"), config,
    ...                         tempfile.mkdtemp(), {"name": "copy"})
    >>> sorted(paths)
    ['metadata', 'weights']
    """
    import keras

    from keras_meta.experiments.builders import (
        build_learner,
        build_optimizer,
        learner_spec,
        model_spec,
    )
    from keras_meta.learners.base import MetaLearner

    if not isinstance(learner, MetaLearner):
        raise TypeError(f"`learner` must be a keras_meta learner; received {learner!r}.")
    if not isinstance(config, RunConfig):
        raise TypeError(f"`config` must be a RunConfig; received {config!r}.")
    config = config.override(data_dir=None)
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    bare = build_learner(config, compile=False)
    bare.set_weights([w.astype("float32") for w in learner.get_weights()])
    weights = os.path.join(directory, WEIGHTS_FILE)
    bare.save_weights(weights)
    loss = "mse" if config.is_regression else keras.losses.SparseCategoricalCrossentropy(
        from_logits=True
    )
    meta = dict(metadata)
    meta.update(
        {
            "class": type(bare).__name__,
            "config": config.to_dict(),
            # How keras_meta.pretrained rebuilds the learner, without the
            # application layer: built-in Keras classes and keras_meta's own.
            "build": {
                "model": model_spec(config),
                "learner": learner_spec(config),
                "compile": {
                    "optimizer": keras.optimizers.serialize(build_optimizer(config)),
                    "loss": keras.losses.serialize(keras.losses.get(loss)),
                    "metrics": ["mae"] if config.is_regression else ["accuracy"],
                },
            },
            "weights_bytes": os.path.getsize(weights),
        }
    )
    path = os.path.join(directory, METADATA_FILE)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    _read_metadata.cache_clear()
    return {"weights": weights, "metadata": path}


def describe(name: str) -> str:
    """One line about a pretrained learner: class, training, budget, accuracy.

    Example:

    >>> describe("protonet_omniglot").startswith("protonet_omniglot  ProtoNet")
    True
    """
    meta = get_metadata(name)
    budget = meta["budget"]
    short = " (short budget)" if budget.get("short") else ""
    scores = ", ".join(
        f"{key}: {100 * r['accuracy']:.1f}% ± {100 * r['accuracy_ci95']:.1f}%"
        for key, r in sorted(meta["evaluation"].items(), key=lambda kv: kv[1]["ways"])
    )
    return (
        f"{name}  {meta['class']}  {budget['iterations']}/{budget['protocol_iterations']} "
        f"iterations{short}  {scores}"
    )


# ----------------------------------------------------------------------
# Deprecated: the former protocol functions.
# ----------------------------------------------------------------------
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
