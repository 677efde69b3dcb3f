"""Named training protocols of published few-shot results, as data.

A preset pins every hyper-parameter of a published protocol: the episodes
(ways, shots, queries at training and at test), the meta-batch, the inner
loop, the meta-optimizer and its schedule, the budget, the model, the data
split and augmentation, the BatchNorm mode at test, and the number the paper
reports. `keras-meta train --preset NAME` and `benchmarks/reproduce.py` run
them; any field can be overridden (`resolve_config(preset, **overrides)`),
and the resolved configuration is what a run directory's `config.json`
holds.

Where our implementation cannot follow a protocol exactly, the preset's
`notes` say how it differs.
"""

from __future__ import annotations

import copy
from typing import Any

import keras

ALGORITHMS = ("maml", "fomaml", "protonet", "reptile", "metasgd", "anil")
DATASETS = ("omniglot", "sinusoid", "folder")
MODELS = ("conv4", "mlp")
SPLITS = ("mixed", "official", "random", "none")
AUGMENTATIONS = (None, "class_rotation", "rotations_as_classes")
BN_MODES = ("transductive", "running")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = (None, "step", "linear")
CHECKPOINTS = ("final", "best")

# name -> (allowed types, default). `None` in the types allows None.
FIELDS: dict[str, tuple[tuple, Any]] = {
    "name": ((str, type(None)), None),
    "description": ((str,), ""),
    "algorithm": ((str,), "maml"),
    "dataset": ((str,), "omniglot"),
    "data_dir": ((str, type(None)), None),
    # Training episodes.
    "ways": ((int,), 5),
    "shots": ((int,), 1),
    "queries": ((int,), 15),
    # Validation/test episodes; None: as in training.
    "eval_ways": ((int, type(None)), None),
    "eval_shots": ((int, type(None)), None),
    "eval_queries": ((int, type(None)), None),
    "meta_batch_size": ((int,), 32),
    # Gradient-based learners only.
    "inner_learning_rate": ((float, int, type(None)), 0.4),
    "inner_steps": ((int, type(None)), 1),
    "eval_inner_steps": ((int, type(None)), None),
    # Reptile only.
    "inner_optimizer": ((str,), "sgd"),
    "inner_batch_size": ((int, type(None)), None),
    # Meta-optimizer.
    "optimizer": ((str,), "adam"),
    "meta_learning_rate": ((float, int), 1e-3),
    "lr_schedule": ((str, type(None)), None),
    "lr_decay_steps": ((int, type(None)), None),
    "lr_decay_rate": ((float, int, type(None)), None),
    # Budget: meta-iterations (one optimizer step each), split into epochs
    # of `steps_per_epoch` for validation, checkpoints and resumption.
    "iterations": ((int,), 60000),
    "steps_per_epoch": ((int,), 500),
    "val_episodes": ((int,), 100),
    "eval_episodes": ((int,), 600),
    "checkpoint": ((str,), "final"),
    # Model.
    "model": ((str,), "conv4"),
    "filters": ((int,), 64),
    "pooling": ((str,), "max"),
    "bn_scale": ((bool,), True),
    "hidden_units": ((list,), [40, 40]),
    # ProtoNet.
    "distance": ((str,), "euclidean"),
    # Data.
    "image_size": ((int,), 28),
    "color_mode": ((str,), "grayscale"),
    "invert": ((bool,), False),
    "split": ((str,), "mixed"),
    # [train, validation, test] class counts or fractions ("mixed",
    # "random"); for "official" only the validation count (taken from the
    # background alphabets) is used.
    "split_sizes": ((list, type(None)), None),
    "split_seed": ((int,), 0),
    "augmentation": ((str, type(None)), None),
    "bn_mode": ((str,), "transductive"),
    "seed": ((int,), 0),
    "published": ((dict, type(None)), None),
    "notes": ((str,), ""),
}

_MAML_SPLIT_SIZES = [1100, 100, 423]

_MAML_OMNIGLOT = {
    "algorithm": "maml",
    "dataset": "omniglot",
    "queries": 1,  # MAML's code samples K query images per class, as the support.
    "meta_batch_size": 32,
    "inner_learning_rate": 0.4,
    "inner_steps": 1,
    "eval_inner_steps": 3,
    "optimizer": "adam",
    "meta_learning_rate": 1e-3,
    "iterations": 60000,
    "steps_per_epoch": 1000,
    "val_episodes": 100,
    "eval_episodes": 600,
    "checkpoint": "final",
    "model": "conv4",
    "filters": 64,
    # MAML uses stride-2 convolutions instead of max-pooling on Omniglot, a
    # mean over the last 2x2 map, and BatchNorm without a learned scale
    # (tf.contrib.layers.batch_norm's default).
    "pooling": "strided",
    "bn_scale": False,
    "image_size": 28,
    "split": "mixed",
    "split_sizes": _MAML_SPLIT_SIZES,
    "augmentation": "class_rotation",
    "bn_mode": "transductive",
}

_PROTONET_OMNIGLOT = {
    "algorithm": "protonet",
    "dataset": "omniglot",
    "ways": 60,
    "queries": 5,
    "eval_ways": 5,
    "eval_queries": 15,
    "meta_batch_size": 1,
    "inner_learning_rate": None,
    "inner_steps": None,
    "optimizer": "adam",
    "meta_learning_rate": 1e-3,
    "lr_schedule": "step",
    "lr_decay_steps": 2000,
    "lr_decay_rate": 0.5,
    "iterations": 20000,
    "steps_per_epoch": 500,
    "val_episodes": 200,
    "eval_episodes": 1000,
    "checkpoint": "best",
    "model": "conv4",
    "filters": 64,
    "pooling": "max",
    "bn_scale": True,
    "image_size": 28,
    "split": "mixed",
    "split_sizes": _MAML_SPLIT_SIZES,
    "augmentation": "rotations_as_classes",
    "bn_mode": "running",
    "distance": "euclidean",
}

_SNELL = "Snell et al. 2017, Prototypical Networks, Table 1"
_PROTONET_NOTES = (
    "Vinyals et al.'s split of 1200 training characters (with rotations as new "
    "classes) is replaced by a seeded random 1100/100/423 split of the 1623 "
    "characters (rotations of each split kept in that split). The paper trains "
    "with early stopping on validation loss (patience 200 epochs of 100 "
    "episodes) and reports the mean over 1000 test episodes without an "
    "interval; we train a fixed 20000 episodes (the learning rate is halved "
    "every 2000, so it is 1/1024 of the start by then) and evaluate the best "
    "validation checkpoint."
)

_REPTILE = "Nichol et al. 2018, On First-Order Meta-Learning Algorithms, Table 1"

PRESETS: dict[str, dict] = {
    "maml-sinusoid": {
        "description": "MAML, sinusoid regression, K=10 (Finn et al. 2017, sec. 5.1)",
        "algorithm": "maml",
        "dataset": "sinusoid",
        "ways": 1,
        "shots": 10,
        "queries": 10,
        "eval_queries": 100,
        "meta_batch_size": 25,
        "inner_learning_rate": 0.01,
        "inner_steps": 1,
        "eval_inner_steps": 1,
        "optimizer": "adam",
        "meta_learning_rate": 1e-3,
        "iterations": 70000,
        "steps_per_epoch": 1000,
        "val_episodes": 100,
        "eval_episodes": 600,
        "model": "mlp",
        "hidden_units": [40, 40],
        "split": "none",
        "bn_mode": "running",
        "published": {
            "metric": "loss",
            "value": 0.77,
            "ci95": 0.11,
            "unit": "MSE",
            "source": "Li et al. 2017, Meta-SGD, Table 1 (MAML, 10-shot)",
        },
        "notes": (
            "The MAML paper shows sinusoid results as figures only; the number is "
            "MAML's 10-shot MSE as reported by Meta-SGD with the same task "
            "family (A in [0.1, 5], phase in [0, pi], x in [-5, 5]). The test "
            "query set has 100 points per task (any size estimates the same MSE)."
        ),
    },
    "maml-omniglot-5w1s": {
        **_MAML_OMNIGLOT,
        "description": "MAML, Omniglot 5-way 1-shot (Finn et al. 2017)",
        "ways": 5,
        "shots": 1,
        "queries": 1,
        "published": {
            "metric": "accuracy",
            "value": 0.987,
            "ci95": 0.004,
            "source": "Finn et al. 2017, MAML, Table 1",
        },
        "notes": (
            "Split: MAML's code shuffles the 1623 characters and takes "
            "1100/100/423 for train/validation/test; ours uses the same sizes "
            "with a different (seeded) shuffle. Each class of an episode is "
            "rotated by a random multiple of 90 degrees. Test episodes have 1 "
            "query per class, as in MAML's code (which matters with "
            "transductive BatchNorm)."
        ),
    },
    "maml-omniglot-5w5s": {
        **_MAML_OMNIGLOT,
        "description": "MAML, Omniglot 5-way 5-shot (Finn et al. 2017)",
        "ways": 5,
        "shots": 5,
        "queries": 5,
        "published": {
            "metric": "accuracy",
            "value": 0.999,
            "ci95": 0.001,
            "source": "Finn et al. 2017, MAML, Table 1",
        },
        "notes": "As maml-omniglot-5w1s, with 5 shots and 5 queries per class.",
    },
    "maml-omniglot-20w1s": {
        **_MAML_OMNIGLOT,
        "description": "MAML, Omniglot 20-way 1-shot (Finn et al. 2017)",
        "ways": 20,
        "shots": 1,
        "queries": 1,
        "meta_batch_size": 16,
        "inner_learning_rate": 0.1,
        "inner_steps": 5,
        "eval_inner_steps": 5,
        "published": {
            "metric": "accuracy",
            "value": 0.958,
            "ci95": 0.003,
            "source": "Finn et al. 2017, MAML, Table 1",
        },
        "notes": (
            "20-way: 5 inner steps of 0.1 in training and test, 16 tasks per "
            "meta-batch (MAML paper, sec. 5.2). Split as maml-omniglot-5w1s."
        ),
    },
    "fomaml-omniglot-5w1s": {
        **_MAML_OMNIGLOT,
        "description": "First-order MAML, Omniglot 5-way 1-shot",
        "algorithm": "fomaml",
        "ways": 5,
        "shots": 1,
        "queries": 1,
        "published": {
            "metric": "accuracy",
            "value": 0.983,
            "ci95": 0.005,
            "source": _REPTILE + " ('1st-order MAML + Transduction')",
        },
        "notes": "MAML's protocol with the first-order meta-gradient.",
    },
    "metasgd-omniglot-5w1s": {
        **_MAML_OMNIGLOT,
        "description": "Meta-SGD, Omniglot 5-way 1-shot (Li et al. 2017)",
        "algorithm": "metasgd",
        "ways": 5,
        "shots": 1,
        "queries": 1,
        "inner_learning_rate": 0.4,
        "inner_steps": 1,
        "eval_inner_steps": 1,
        "published": {
            "metric": "accuracy",
            "value": 0.9953,
            "ci95": 0.0026,
            "source": "Li et al. 2017, Meta-SGD, Table 2",
        },
        "notes": (
            "Meta-SGD learns per-weight inner rates and adapts in one step. The "
            "paper initialises the rates uniformly in [0.005, 0.1] and does "
            "not state every hyper-parameter; we start all rates at 0.4 and "
            "otherwise follow MAML's Omniglot protocol."
        ),
    },
    "anil-omniglot-20w1s": {
        **_MAML_OMNIGLOT,
        "description": "ANIL, Omniglot 20-way 1-shot (Raghu et al. 2020)",
        "algorithm": "anil",
        "ways": 20,
        "shots": 1,
        "queries": 1,
        "meta_batch_size": 16,
        "inner_learning_rate": 0.1,
        "inner_steps": 5,
        "eval_inner_steps": 5,
        "published": {
            "metric": "accuracy",
            "value": 0.962,
            "ci95": 0.005,
            "source": "Raghu et al. 2020, Rapid Learning or Feature Reuse?, Table 2",
        },
        "notes": (
            "Only the final dense layer adapts in the inner loop; otherwise MAML's 20-way protocol."
        ),
    },
    "reptile-omniglot-5w1s": {
        "description": "Reptile, Omniglot 5-way 1-shot, transductive (Nichol et al. 2018)",
        "algorithm": "reptile",
        "dataset": "omniglot",
        "ways": 5,
        # Reptile trains on 10 shots per class and tests on 1.
        "shots": 10,
        "queries": 1,
        "eval_shots": 1,
        "eval_queries": 1,
        "meta_batch_size": 5,
        "inner_optimizer": "adam",
        "inner_learning_rate": 0.001,
        "inner_batch_size": 10,
        "inner_steps": 5,
        "eval_inner_steps": 50,
        "optimizer": "sgd",
        "meta_learning_rate": 1.0,
        "lr_schedule": "linear",
        "iterations": 100000,
        "steps_per_epoch": 1000,
        "val_episodes": 100,
        "eval_episodes": 600,
        "checkpoint": "final",
        "model": "conv4",
        "filters": 64,
        "pooling": "strided",
        "bn_scale": True,
        "image_size": 28,
        "split": "mixed",
        "split_sizes": _MAML_SPLIT_SIZES,
        "augmentation": "rotations_as_classes",
        "bn_mode": "transductive",
        "published": {
            "metric": "accuracy",
            "value": 0.9768,
            "ci95": 0.0004,
            "source": _REPTILE + " ('Reptile + Transduction')",
        },
        "notes": (
            "As run_omniglot.py of the Reptile code for 5-way 1-shot "
            "transductive: 10 training shots, inner Adam (lr 0.001, beta1 0) "
            "for 5 steps on mini-batches of 10, outer SGD step 1.0 linearly "
            "annealed to 0 over 100000 iterations, meta-batch 5, 50 inner "
            "steps at test. Differences: the inner Adam moments are fresh "
            "for every episode (the reference keeps them across tasks), the "
            "test mini-batches are of 10 drawn from the 5 support images "
            "(the reference: 5, the whole support set, the same gradient), "
            "and the split is a seeded 1100/100/423 split of the 1623 "
            "characters with rotations as new classes."
        ),
    },
    "protonet-omniglot-5w1s": {
        **_PROTONET_OMNIGLOT,
        "description": "Prototypical Networks, Omniglot 5-way 1-shot (Snell et al. 2017)",
        "shots": 1,
        "published": {"metric": "accuracy", "value": 0.988, "ci95": None, "source": _SNELL},
        "notes": _PROTONET_NOTES + " Trained 60-way 1-shot with 5 queries per class.",
    },
    "protonet-omniglot-5w5s": {
        **_PROTONET_OMNIGLOT,
        "description": "Prototypical Networks, Omniglot 5-way 5-shot (Snell et al. 2017)",
        "shots": 5,
        "published": {"metric": "accuracy", "value": 0.997, "ci95": None, "source": _SNELL},
        "notes": _PROTONET_NOTES + " Trained 60-way 5-shot with 5 queries per class.",
    },
    "protonet-omniglot-20w1s": {
        **_PROTONET_OMNIGLOT,
        "description": "Prototypical Networks, Omniglot 20-way 1-shot (Snell et al. 2017)",
        "shots": 1,
        "eval_ways": 20,
        "published": {"metric": "accuracy", "value": 0.960, "ci95": None, "source": _SNELL},
        "notes": _PROTONET_NOTES + " Trained 60-way 1-shot with 5 queries per class.",
    },
}


def list_presets() -> list[str]:
    """The names of the presets.

    Example:

    >>> "maml-omniglot-5w1s" in list_presets()
    True
    """
    return sorted(PRESETS)


def get_preset(name: str) -> dict:
    """The full configuration of preset `name` (a copy), defaults filled in.

    Example:

    >>> get_preset("maml-omniglot-5w1s")["inner_learning_rate"]
    0.4
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; the presets are: {', '.join(list_presets())}.")
    config = default_config()
    config.update(copy.deepcopy(PRESETS[name]))
    config["name"] = name
    return validate_config(config)


def default_config() -> dict:
    """The configuration every field of which has its default.

    Example:

    >>> default_config()["algorithm"]
    'maml'
    """
    return {k: copy.deepcopy(default) for k, (_, default) in FIELDS.items()}


def resolve_config(preset: str | None = None, **overrides) -> dict:
    """A validated configuration: a preset (or the defaults) with overrides.

    An override set to `None` sets that field to `None` (e.g. no
    augmentation); leave a field out to keep the preset's value.

    Example:

    >>> config = resolve_config("maml-omniglot-5w1s", iterations=100)
    >>> config["iterations"], config["ways"]
    (100, 5)
    """
    config = get_preset(preset) if preset else default_config()
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ValueError(
            f"Unknown configuration fields {unknown}; the fields are {sorted(FIELDS)}."
        )
    config.update(overrides)
    return validate_config(config)


def _check_choice(config, field, choices):
    if config[field] not in choices:
        raise ValueError(f"`{field}` must be one of {list(choices)}; received {config[field]!r}.")


def _check_positive_int(config, field, minimum=1):
    value = config[field]
    if value is not None and value < minimum:
        raise ValueError(f"`{field}` must be >= {minimum}; received {value}.")


def validate_config(config: dict) -> dict:
    """Checks a configuration: known fields, types and values; returns it.

    Missing fields get their defaults; unknown fields are an error.

    Example:

    >>> validate_config({"algorithm": "protonet", "dataset": "sinusoid"})
    Traceback (most recent call last):
    ...
    ValueError: The protonet algorithm is a classifier; it cannot train on the sinusoid dataset.
    """
    if not isinstance(config, dict):
        raise TypeError(f"Expected a configuration dict; received {config!r}.")
    unknown = sorted(set(config) - set(FIELDS))
    if unknown:
        raise ValueError(
            f"Unknown configuration fields {unknown}; the fields are {sorted(FIELDS)}."
        )
    full = default_config()
    full.update(config)
    config = full
    for field, (types, _) in FIELDS.items():
        value = config[field]
        if isinstance(value, bool) and bool not in types:
            raise TypeError(f"`{field}` must not be a bool; received {value!r}.")
        if not isinstance(value, types):
            names = ", ".join(t.__name__ for t in types)
            raise TypeError(f"`{field}` must be of type {names}; received {value!r}.")
    _check_choice(config, "algorithm", ALGORITHMS)
    _check_choice(config, "dataset", DATASETS)
    _check_choice(config, "model", MODELS)
    _check_choice(config, "split", SPLITS)
    _check_choice(config, "augmentation", AUGMENTATIONS)
    _check_choice(config, "bn_mode", BN_MODES)
    _check_choice(config, "optimizer", OPTIMIZERS)
    _check_choice(config, "lr_schedule", SCHEDULES)
    _check_choice(config, "checkpoint", CHECKPOINTS)
    _check_choice(config, "pooling", ("max", "strided"))
    _check_choice(config, "inner_optimizer", ("sgd", "adam"))
    _check_choice(config, "color_mode", ("grayscale", "rgb"))
    _check_choice(config, "distance", ("euclidean", "cosine"))
    for field in (
        "ways",
        "shots",
        "queries",
        "eval_ways",
        "eval_shots",
        "eval_queries",
        "meta_batch_size",
        "inner_steps",
        "eval_inner_steps",
        "iterations",
        "steps_per_epoch",
        "val_episodes",
        "eval_episodes",
        "filters",
        "image_size",
        "lr_decay_steps",
        "inner_batch_size",
    ):
        _check_positive_int(config, field)
    for field in ("meta_learning_rate", "inner_learning_rate", "lr_decay_rate"):
        if config[field] is not None and not config[field] > 0:
            raise ValueError(f"`{field}` must be > 0; received {config[field]}.")
    for field in ("meta_learning_rate", "inner_learning_rate", "lr_decay_rate"):
        if isinstance(config[field], int):
            config[field] = float(config[field])

    algorithm, dataset = config["algorithm"], config["dataset"]
    regression = dataset == "sinusoid"
    if regression and algorithm == "protonet":
        raise ValueError(
            "The protonet algorithm is a classifier; it cannot train on the sinusoid dataset."
        )
    if regression != (config["model"] == "mlp"):
        raise ValueError(
            "The sinusoid dataset takes model='mlp' and image datasets "
            f"model='conv4'; received dataset={dataset!r}, model={config['model']!r}."
        )
    if algorithm != "protonet":
        for field in ("inner_learning_rate", "inner_steps"):
            if config[field] is None:
                raise ValueError(f"The {algorithm} algorithm needs `{field}`.")
        if not regression and config["eval_ways"] not in (None, config["ways"]):
            raise ValueError(
                f"The {algorithm} model has one output per class, so it is "
                f"tested on as many classes as it trains on: eval_ways "
                f"({config['eval_ways']}) must equal ways ({config['ways']})."
            )
    if algorithm != "reptile" and (
        config["inner_optimizer"] != "sgd" or config["inner_batch_size"] is not None
    ):
        raise ValueError(
            "`inner_optimizer` and `inner_batch_size` are options of the reptile "
            f"algorithm; received them for {algorithm}."
        )
    if config["lr_schedule"] == "step" and (
        config["lr_decay_steps"] is None or config["lr_decay_rate"] is None
    ):
        raise ValueError("lr_schedule='step' needs `lr_decay_steps` and `lr_decay_rate`.")
    if regression:
        if config["split"] != "none":
            raise ValueError(
                "The sinusoid dataset draws fresh tasks and takes split='none'; "
                f"received split={config['split']!r}."
            )
        if config["augmentation"] is not None:
            raise ValueError("The sinusoid dataset takes no augmentation.")
    else:
        if config["split"] == "none":
            raise ValueError(
                f"The {dataset} dataset needs a class split ('mixed', "
                "'official' or 'random'); received split='none'."
            )
        if dataset == "folder" and config["split"] != "random":
            raise ValueError(
                "The folder dataset is split with split='random'; received "
                f"split={config['split']!r}."
            )
        if dataset == "omniglot" and config["split"] == "random":
            raise ValueError(
                "Omniglot takes split='mixed' (both archives, shuffled) or "
                "'official' (background/evaluation); received split='random'."
            )
    sizes = config["split_sizes"]
    if sizes is not None:
        if len(sizes) != 3 or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and s >= 0 for s in sizes
        ):
            raise ValueError(
                "`split_sizes` must be three non-negative numbers (train, "
                f"validation, test: class counts or fractions); received {sizes!r}."
            )
    if not all(isinstance(h, int) and h > 0 for h in config["hidden_units"]):
        raise ValueError(
            f"`hidden_units` must be a list of positive ints; received {config['hidden_units']!r}."
        )
    if config["published"] is not None:
        missing = {"metric", "value", "source"} - set(config["published"])
        if missing:
            raise ValueError(
                f"`published` must have the keys metric, value, source; missing {sorted(missing)}."
            )
    return config


def eval_episode_shape(config: dict) -> tuple[int, int, int]:
    """`(ways, shots, queries)` of the validation and test episodes.

    Example:

    >>> eval_episode_shape(get_preset("protonet-omniglot-5w1s"))
    (5, 1, 15)
    """
    return (
        config["eval_ways"] or config["ways"],
        config["eval_shots"] or config["shots"],
        config["eval_queries"] or config["queries"],
    )


# ----------------------------------------------------------------------
# Models of the protocols.
# ----------------------------------------------------------------------
def conv4(
    input_shape=(28, 28, 1),
    num_outputs: int | None = None,
    filters: int = 64,
    pooling: str = "max",
    bn_scale: bool = True,
    name: str = "conv4",
) -> keras.Model:
    """The four-block convolutional network of the few-shot literature.

    Each block is a 3x3 convolution with `filters` filters, BatchNorm, ReLU,
    then 2x2 max-pooling (`pooling="max"`, Vinyals et al., ProtoNets) or, with
    `pooling="strided"`, a stride-2 convolution instead of the pooling and a
    mean over the last feature map (MAML and Reptile on Omniglot).

    Args:
        input_shape: `(height, width, channels)`.
        num_outputs: size of a final dense layer named `"head"` (the logits);
            `None` for an embedding network (flattened features).
        filters: filters per convolution.
        pooling: `"max"` or `"strided"`.
        bn_scale: whether BatchNorm learns a scale (MAML's does not).
        name: the model's name.

    Example:

    >>> net = conv4((28, 28, 1), num_outputs=5)
    >>> net.output_shape
    (None, 5)
    >>> conv4((28, 28, 1)).output_shape
    (None, 64)
    """
    if pooling not in ("max", "strided"):
        raise ValueError(f"`pooling` must be 'max' or 'strided'; received {pooling!r}.")
    inputs = keras.Input(tuple(input_shape), name="image")
    x = inputs
    strides = 2 if pooling == "strided" else 1
    for i in range(4):
        x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", name=f"conv{i + 1}")(x)
        x = keras.layers.BatchNormalization(scale=bn_scale, name=f"bn{i + 1}")(x)
        x = keras.layers.ReLU(name=f"relu{i + 1}")(x)
        if pooling == "max":
            x = keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    if pooling == "strided":
        x = keras.layers.GlobalAveragePooling2D(name="mean")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
    if num_outputs is not None:
        x = keras.layers.Dense(num_outputs, name="head")(x)
    return keras.Model(inputs, x, name=name)


def mlp(
    input_dim: int = 1,
    num_outputs: int = 1,
    hidden_units=(40, 40),
    name: str = "mlp",
) -> keras.Model:
    """MAML's regression network: ReLU hidden layers and a linear output.

    Example:

    >>> mlp(1, 1, (40, 40)).count_params()
    1761
    """
    inputs = keras.Input((input_dim,), name="x")
    x = inputs
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"dense{i + 1}")(x)
    outputs = keras.layers.Dense(num_outputs, name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def build_model(config: dict, input_shape) -> keras.Model:
    """The wrapped model of a configuration, for inputs of `input_shape`.

    Example:

    >>> build_model(get_preset("maml-sinusoid"), (1,)).output_shape
    (None, 1)
    """
    if config["model"] == "mlp":
        return mlp(int(input_shape[-1]), 1, config["hidden_units"])
    outputs = None if config["algorithm"] == "protonet" else config["ways"]
    return conv4(
        input_shape,
        num_outputs=outputs,
        filters=config["filters"],
        pooling=config["pooling"],
        bn_scale=config["bn_scale"],
    )


def _learner_class(algorithm: str):
    # Imported here so that a missing learner module only breaks the
    # algorithms that need it.
    import keras_meta as km

    names = {
        "maml": "MAML",
        "fomaml": "MAML",
        "protonet": "ProtoNet",
        "reptile": "Reptile",
        "metasgd": "MetaSGD",
        "anil": "ANIL",
    }
    cls = getattr(km, names[algorithm], None)
    if cls is None and algorithm == "protonet":
        try:
            from keras_meta.learners.protonet import ProtoNet as cls
        except ImportError:
            cls = None
    if cls is None:
        raise ValueError(
            f"The {algorithm} algorithm needs keras_meta.{names[algorithm]}, "
            "which this installation does not have."
        )
    return cls


def build_learner(config: dict, input_shape, compile: bool = True):
    """The compiled learner of a configuration, for inputs of `input_shape`.

    Example:

    >>> learner = build_learner(get_preset("maml-sinusoid"), (1,))
    >>> type(learner).__name__, learner.inner_learning_rate
    ('MAML', 0.01)
    """
    config = validate_config(dict(config))
    model = build_model(config, input_shape)
    algorithm = config["algorithm"]
    cls = _learner_class(algorithm)
    common = {"bn_mode": config["bn_mode"]}
    if algorithm == "protonet":
        learner = cls(model, distance=config["distance"], **common)
    else:
        kwargs = dict(
            inner_learning_rate=config["inner_learning_rate"],
            inner_steps=config["inner_steps"],
            **common,
        )
        if config["eval_inner_steps"] is not None:
            kwargs["eval_inner_steps"] = config["eval_inner_steps"]
        if algorithm in ("maml", "fomaml"):
            kwargs["first_order"] = algorithm == "fomaml"
        if algorithm == "reptile":
            kwargs["inner_optimizer"] = config["inner_optimizer"]
            kwargs["inner_batch_size"] = config["inner_batch_size"]
            kwargs["seed"] = config["seed"]
        if algorithm == "anil":
            learner = cls(model, ["head"], **kwargs)
        else:
            learner = cls(model, **kwargs)
    if compile:
        regression = config["dataset"] == "sinusoid"
        if regression:
            loss, metrics = "mse", ["mae"]
        else:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            metrics = ["accuracy"]
        learner.compile(optimizer=build_optimizer(config), loss=loss, metrics=metrics)
    return learner


def build_optimizer(config: dict) -> keras.optimizers.Optimizer:
    """The meta-optimizer of a configuration, with its learning-rate schedule.

    Example:

    >>> opt = build_optimizer(get_preset("reptile-omniglot-5w1s"))
    >>> type(opt).__name__
    'SGD'
    """
    lr = config["meta_learning_rate"]
    schedule = config["lr_schedule"]
    if schedule == "step":
        lr = keras.optimizers.schedules.ExponentialDecay(
            lr,
            decay_steps=config["lr_decay_steps"],
            decay_rate=config["lr_decay_rate"],
            staircase=True,
        )
    elif schedule == "linear":
        lr = keras.optimizers.schedules.PolynomialDecay(
            lr, decay_steps=config["iterations"], end_learning_rate=0.0
        )
    if config["optimizer"] == "sgd":
        return keras.optimizers.SGD(lr)
    return keras.optimizers.Adam(lr)
