"""The pretrained learners shipped with the package, and their safe loading.

One folder per learner: `model.weights.h5` (float32 weights only, no optimizer
state) and `metadata.json`, whose `build` section says how to rebuild the
learner: the `keras_meta.models` function and its arguments, the learner class
and its arguments, and the compiled loss, metrics and optimizer (Keras's own
serialisation of built-in classes). Loading builds the learner from that, then
reads the weights with `load_weights`: nothing but arrays comes from the file
(no pickle, no Lambda layers, no code). A library module (the learner base's
`from_preset` calls it); `keras_meta.presets` is its public face, with the
training configuration as a `RunConfig`, and `benchmarks/pretrain.py` makes
the folders.

>>> "protonet_omniglot" in list_pretrained()
True
"""

from __future__ import annotations

import copy
import functools
import json
import os

PRETRAINED_DIR = os.path.dirname(os.path.abspath(__file__))
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"


def list_pretrained() -> list[str]:
    """The names of the pretrained learners shipped with the package.

    Example:

    >>> list_pretrained()
    ['maml_omniglot_5way', 'protonet_omniglot']
    """
    return sorted(
        name for name in os.listdir(PRETRAINED_DIR)
        if os.path.isfile(os.path.join(PRETRAINED_DIR, name, METADATA_FILE))
    )


def check_name(name) -> str:
    """Returns `name`, or raises a `ValueError` listing the pretrained learners.

    Example:

    >>> check_name("protonet_omniglot")
    'protonet_omniglot'
    """
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

    Example:

    >>> get_metadata("protonet_omniglot")["class"]
    'ProtoNet'
    """
    return copy.deepcopy(_read_metadata(check_name(name)))


def learner_class(name: str):
    """The learner class of a pretrained learner.

    Example:

    >>> learner_class("maml_omniglot_5way").__name__
    'MAML'
    """
    from keras_meta import learners

    return getattr(learners, get_metadata(name)["build"]["learner"]["class"])


def names_for(cls) -> list[str]:
    """The pretrained learners that are instances of the learner class `cls`.

    Example:

    >>> import keras_meta as km
    >>> names_for(km.ProtoNet)
    ['protonet_omniglot']
    """
    return [n for n in list_pretrained() if issubclass(learner_class(n), cls)]


def build(name: str, compile: bool = True):
    """The learner of a pretrained learner's `build` metadata, without its weights.

    Example:

    >>> build("protonet_omniglot", compile=False).built
    True
    """
    from keras_meta import models

    spec = get_metadata(name)["build"]
    model_kwargs = dict(spec["model"]["kwargs"])
    if "input_shape" in model_kwargs:
        model_kwargs["input_shape"] = tuple(model_kwargs["input_shape"])
    model = getattr(models, spec["model"]["name"])(**model_kwargs)
    learner = learner_class(name)(model, *spec["learner"]["args"], **spec["learner"]["kwargs"])
    if compile:
        _compile(learner, spec["compile"])
    return learner


def _compile(learner, compiled: dict) -> None:
    import keras

    learner.compile(
        optimizer=keras.optimizers.deserialize(compiled["optimizer"]),
        loss=keras.losses.deserialize(compiled["loss"]),
        metrics=list(compiled["metrics"]),
    )


def load_pretrained(name: str, cls=None):
    """A pretrained learner, compiled as it was trained (with a fresh optimizer).

    Ready for `predict`, `evaluate` (`keras_meta.evaluate`), `adapt`,
    `export`, `save` and further `fit`. `cls` (a learner class) restricts the
    names to learners of that class: `ProtoNet.from_preset(name)` is
    `load_pretrained(name, ProtoNet)`.

    Example:

    >>> type(load_pretrained("maml_omniglot_5way")).__name__
    'MAML'
    """
    from keras_meta.learners.base import MetaLearner

    check_name(name)
    if cls is not None:
        if not (isinstance(cls, type) and issubclass(cls, MetaLearner)):
            raise TypeError(f"`cls` must be a MetaLearner subclass; received {cls!r}.")
        valid = names_for(cls)
        if name not in valid:
            raise ValueError(
                f"The pretrained learner {name!r} is a {learner_class(name).__name__}, not a "
                f"{cls.__name__}; {cls.__name__}.from_preset takes: "
                f"{', '.join(valid) or 'none'} (all pretrained learners: "
                f"{', '.join(list_pretrained())})."
            )
    # Compiled after loading: the file holds no optimizer state to match.
    learner = build(name, compile=False)
    learner.load_weights(os.path.join(PRETRAINED_DIR, name, WEIGHTS_FILE))
    _compile(learner, get_metadata(name)["build"]["compile"])
    return learner
