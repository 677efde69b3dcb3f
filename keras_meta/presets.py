"""Pretrained learners: meta-trained weights shipped with the package.

A pretrained learner ("preset", as in keras-hub) is a folder of
`keras_meta/pretrained/`: `model.weights.h5` (float32 weights only, no
optimizer state) and `metadata.json` (the training configuration, the budget
actually spent, the evaluation with its 95% CI, the commit and the date).
Loading builds the learner from the configuration
(`keras_meta.experiments.builders.build_learner`: `keras_meta.models.conv4` and
the learner class), then reads the weights with `load_weights`: nothing is
deserialised from the file but arrays (no pickle, no Lambda layers).
`benchmarks/pretrain.py` makes the folders.

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

import copy
import functools
import json
import os
import warnings

from keras_meta.experiments import RunConfig, protocols

PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"


def list_pretrained() -> list[str]:
    """The names of the pretrained learners shipped with the package.

    Example:

    >>> list_pretrained()
    ['maml_omniglot_5way', 'protonet_omniglot']
    """
    if not os.path.isdir(PRETRAINED_DIR):
        return []
    return sorted(
        name for name in os.listdir(PRETRAINED_DIR)
        if os.path.isfile(os.path.join(PRETRAINED_DIR, name, METADATA_FILE))
    )


def _check_name(name) -> str:
    names = list_pretrained()
    if not isinstance(name, str) or name not in names:
        raise ValueError(
            f"Unknown pretrained learner {name!r}; the pretrained learners are: "
            f"{', '.join(names)}."
        )
    return name


@functools.cache
def _read_metadata(name: str) -> dict:
    with open(os.path.join(PRETRAINED_DIR, name, METADATA_FILE), encoding="utf-8") as f:
        return json.load(f)


def get_metadata(name: str) -> dict:
    """The metadata of a pretrained learner (a copy).

    Keys: `name`, `class` (the learner class), `description`, `protocol`,
    `config` (a `RunConfig` dict), `training_data`, `budget` (`iterations`
    done, the protocol's `protocol_iterations`, `fraction`, `short`),
    `wall_seconds`, `machine`, `commit`, `date`, `evaluation` (per episode
    shape: `accuracy`, `accuracy_ci95`, `episodes`, ...), `weights_bytes`.

    Example:

    >>> meta = get_metadata("protonet_omniglot")
    >>> meta["class"], sorted(meta["evaluation"])
    ('ProtoNet', ['20way1shot', '5way1shot'])
    """
    return copy.deepcopy(_read_metadata(_check_name(name)))


def get_config(name: str) -> RunConfig:
    """The training configuration of a pretrained learner, as a `RunConfig`.

    Example:

    >>> get_config("maml_omniglot_5way").ways
    5
    """
    return RunConfig.from_dict(get_metadata(name)["config"])


def _learner_class(config: RunConfig):
    from keras_meta.experiments.builders import LEARNERS

    return LEARNERS[config.algorithm]


def load_pretrained(name: str, cls=None):
    """A pretrained learner, compiled as in its training configuration.

    Ready for `predict`, `evaluate` (`keras_meta.evaluate`), `adapt`, `export`
    and further `fit` (with a fresh optimizer: only the weights ship).
    `cls` (a learner class) restricts the names to learners of that class:
    `ProtoNet.from_preset(name)` is `load_pretrained(name, ProtoNet)`.

    Example:

    >>> type(load_pretrained("maml_omniglot_5way")).__name__
    'MAML'
    """
    from keras_meta.experiments.builders import build_learner
    from keras_meta.learners.base import MetaLearner

    _check_name(name)
    if cls is not None:
        if not (isinstance(cls, type) and issubclass(cls, MetaLearner)):
            raise TypeError(f"`cls` must be a MetaLearner subclass; received {cls!r}.")
        valid = [n for n in list_pretrained() if issubclass(_learner_class(get_config(n)), cls)]
        if name not in valid:
            found = _learner_class(get_config(name)).__name__
            raise ValueError(
                f"The pretrained learner {name!r} is a {found}, not a {cls.__name__}; "
                f"{cls.__name__}.from_preset takes: {', '.join(valid) or 'none'} "
                f"(all pretrained learners: {', '.join(list_pretrained())})."
            )
    config = get_config(name)
    # Built and compiled after loading, so that the optimizer starts fresh
    # whatever the file holds.
    learner = build_learner(config, compile=False)
    learner.load_weights(os.path.join(PRETRAINED_DIR, name, WEIGHTS_FILE))
    compiled = build_learner(config)
    compiled.set_weights(learner.get_weights())
    return compiled


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
    from keras_meta.experiments.builders import build_learner
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
    meta = dict(metadata)
    meta.update(
        {"class": type(bare).__name__, "config": config.to_dict(),
         "weights_bytes": os.path.getsize(weights)}
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
