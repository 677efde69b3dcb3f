"""`RunConfig`: the typed, self-validating configuration of a run.

Every field is declared once, here, with its type, default, help text, choices
and command-line name (in the field's metadata); the command line's `train`
options and the options table of docs/cli.md are generated from these
declarations (`keras_meta.experiments.options`). A `RunConfig` checks itself
when it is built (with the helpers of `keras_meta.validation`), so that a
configuration that exists is a valid one, and answers the questions the
application asks of it (`is_regression`, episode shapes, input shape, the
metric to monitor, epochs). The module is near 480 lines because it
is the schema: one declaration per field, and the rules that tie them.

Example:

>>> config = RunConfig.from_protocol("maml-omniglot-5w1s", iterations=100)
>>> config.iterations, config.train_episode_shape, config.eval_inner_steps
(100, (5, 1, 1), 3)
>>> RunConfig.from_dict(config.to_dict()) == config
True
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from typing import Any

from keras_meta import validation
from keras_meta.experiments import datasets
from keras_meta.experiments import protocols as P

_DATA, _EPISODES, _OPTIM, _MODEL = "algorithm and data", "episodes", "optimisation", "model"
_RUN = "run options"
# The `keras.mixed_precision` policies of `mixed_precision` (None: float32).
MIXED_PRECISION_POLICIES = (None, "mixed_bfloat16", "mixed_float16")


def _field(default, help: str, group: str | None = None, cli: str | None = "", **meta):
    """A dataclass field with its documentation. `cli=None` keeps the field off
    the command line; `""` derives the option from the field's name."""
    meta = dict(help=help, group=group, cli=cli, **meta)
    return dataclasses.field(default=default, metadata=meta)


def _split_sizes_option(text: str) -> tuple:
    # Integers stay integers: "1100,100,423" are class counts, "0.6,..." fractions.
    return tuple(float(v) if "." in v else int(v) for v in text.split(","))


def _int_list_option(text: str) -> tuple:
    return tuple(int(v) for v in text.split(","))


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The configuration of a run: protocol, data, model, optimisation, budget.

    Build one with `RunConfig.from_protocol(name, **overrides)`,
    `RunConfig.from_dict(d)` (e.g. a run directory's `config.json`) or
    `RunConfig(**fields)`; it validates itself and is immutable
    (`config.override(**fields)` returns a validated copy).

    Example:

    >>> RunConfig(dataset="sinusoid", model="mlp", split="none").is_regression
    True
    >>> RunConfig(ways=0)
    Traceback (most recent call last):
    ...
    ValueError: `ways` must be an integer >= 1; received ways=0.
    """

    name: str | None = _field(None, "the protocol's name", cli=None)
    description: str = _field("", "one line about the protocol", cli=None)
    algorithm: str = _field("maml", "the meta-learning algorithm", _DATA, choices=P.ALGORITHMS)
    dataset: str = _field(
        "omniglot",
        "omniglot, folder, mini_imagenet, tiered_imagenet (need --data-dir); cifar_fs, "
        "fc100, cub (TensorFlow Datasets); sinusoid (regression, no data)",
        _DATA,
        choices=P.DATASETS,
    )
    data_dir: str | None = _field(None, datasets.data_dir_help(), _DATA)
    ways: int = _field(5, "classes per training episode", _EPISODES)
    shots: int = _field(1, "support examples per class in training", _EPISODES)
    queries: int = _field(15, "query examples per class in training", _EPISODES)
    eval_ways: int | None = _field(None, "classes per test episode (default: ways)", _EPISODES)
    eval_shots: int | None = _field(None, "test support per class (default: shots)", _EPISODES)
    eval_queries: int | None = _field(None, "test queries per class (default: queries)", _EPISODES)
    meta_batch_size: int = _field(32, "episodes per meta-update", _EPISODES)
    inner_learning_rate: float | None = _field(
        0.4, "inner-loop learning rate (gradient-based learners)", _OPTIM, cli="inner-lr"
    )
    inner_steps: int | None = _field(1, "inner steps in training", _OPTIM)
    eval_inner_steps: int | None = _field(
        None, "inner steps at test (default: inner_steps)", _OPTIM
    )
    inner_optimizer: str = _field(
        "sgd", "reptile only: the inner optimizer", _OPTIM, choices=P.INNER_OPTIMIZERS
    )
    inner_batch_size: int | None = _field(None, "reptile only: inner mini-batch size", _OPTIM)
    optimizer: str = _field("adam", "the meta-optimizer", _OPTIM, choices=P.OPTIMIZERS)
    meta_learning_rate: float = _field(1e-3, "the meta-optimizer's learning rate", _OPTIM,
                                       cli="meta-lr")
    lr_schedule: str | None = _field(
        None, "step: exponential decay in stairs; linear: to 0 at the end", _OPTIM,
        choices=P.SCHEDULES,
    )
    lr_decay_steps: int | None = _field(None, "lr_schedule=step: steps per decay", _OPTIM)
    lr_decay_rate: float | None = _field(None, "lr_schedule=step: factor per decay", _OPTIM)
    iterations: int = _field(60000, "meta-iterations (the budget)", _OPTIM)
    steps_per_epoch: int = _field(
        500, "meta-iterations between validations and checkpoints", _OPTIM
    )
    val_episodes: int = _field(
        100,
        "validation episodes per epoch; 0: no validation (checkpoint final; Omniglot's "
        "official split then trains on all background characters)",
        _OPTIM,
        minimum=0,
    )
    eval_episodes: int = _field(600, "test episodes of `keras-meta evaluate`", _OPTIM)
    checkpoint: str = _field(
        "final", "the checkpoint evaluated by default", _OPTIM, choices=P.CHECKPOINTS
    )
    model: str = _field("conv4", "conv4 (images) or mlp (sinusoid)", _MODEL, choices=P.MODELS)
    filters: int = _field(64, "conv4: filters per convolution", _MODEL)
    pooling: str = _field("max", "conv4: max-pooling or strided convolutions", _MODEL,
                          choices=P.POOLINGS)
    bn_scale: bool = _field(True, "conv4: whether BatchNorm learns a scale", _MODEL)
    hidden_units: tuple[int, ...] = _field(
        (40, 40), "mlp: units of the hidden layers", _MODEL, parse=_int_list_option,
        metavar="N,N,...",
    )
    distance: str = _field("euclidean", "protonet: the distance", _MODEL, choices=P.DISTANCES)
    image_size: int | None = _field(
        None,
        "images are resized to this square size (default: the dataset's: 28 omniglot, "
        "folder; 32 cifar_fs, fc100; 84 cub, mini_imagenet, tiered_imagenet)",
        _DATA,
    )
    color_mode: str | None = _field(
        None, "image channels (default: grayscale for omniglot and folder, rgb for the others)",
        _DATA, choices=P.COLOR_MODES,
    )
    invert: bool = _field(False, "folder: use 1 - image (dark ink on a light background)", _DATA)
    split: str | None = _field(
        None,
        "the class split (default: the dataset's): mixed (Omniglot, both archives "
        "shuffled), official (Omniglot: background/evaluation), random (folder), benchmark "
        "(the fixed classes of cifar_fs, fc100, cub, mini_imagenet, tiered_imagenet), none "
        "(sinusoid)",
        _DATA,
        choices=P.SPLITS,
    )
    split_sizes: tuple | None = _field(
        None,
        "train, validation, test class counts or fractions (default: "
        f"{','.join(map(str, P.MAML_SPLIT_SIZES))} for Omniglot, "
        f"{','.join(map(str, P.FOLDER_SPLIT_FRACTIONS))} for folder; official: only the "
        "validation count)",
        _DATA,
        parse=_split_sizes_option,
        metavar="TRAIN,VAL,TEST",
    )
    split_seed: int = _field(0, "seed of the class split", _DATA, minimum=None)
    augmentation: str | None = _field(
        None, "class_rotation (MAML) or rotations_as_classes (ProtoNets, Reptile)", _DATA,
        choices=P.AUGMENTATIONS,
    )
    bn_mode: str = _field("transductive", "BatchNorm at test", _MODEL, choices=P.BN_MODES)
    seed: int = _field(0, "the run's seed (weights, episodes)", _OPTIM, minimum=None)
    mixed_precision: str | None = _field(
        None,
        "the model's keras.mixed_precision policy: float16 or bfloat16 compute, float32 "
        "weights, losses and outputs (float16 with loss scaling; bfloat16 is emulated, "
        "and slow, on CPUs without AVX512-BF16/AMX)",
        _RUN,
        choices=MIXED_PRECISION_POLICIES,
        omit_default=True,
    )
    jit_compile: bool = _field(
        False,
        "compile the training step with XLA (jit_compile=True; without it Keras decides: "
        "XLA on a GPU). Meta-batches of at most 8 episodes are unrolled under XLA; larger "
        "ones run in a tf.while_loop, which XLA on CPU runs 10-30x slower (a warning says so)",
        _RUN,
        cli="jit",
        omit_default=True,
    )
    wandb: bool = _field(
        False,
        "also log the epoch metrics to Weights & Biases (pip install keras_meta[wandb]; "
        "WANDB_MODE=offline logs without an account)",
        _RUN,
        omit_default=True,
    )
    wandb_project: str | None = _field(
        None, "the Weights & Biases project of --wandb (default: keras_meta)", _RUN,
        metavar="NAME", omit_default=True,
    )
    published: dict | None = _field(None, "the published result", cli=None)
    notes: str = _field("", "how the protocol departs from the paper", cli=None)

    # ------------------------------------------------------------------
    # Construction.
    # ------------------------------------------------------------------
    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = _check_field(f, FIELD_TYPES[f.name], getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        # Fields left unset take the dataset's values, so that a stored
        # configuration always names them.
        for name, value in datasets.defaults(self.dataset).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        _check_consistency(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        """A configuration from a dict (missing fields get their defaults).

        Reads the `config` of any run directory's `config.json`.

        Example:

        >>> RunConfig.from_dict({"algorithm": "protonet", "ways": 20}).ways
        20
        """
        if not isinstance(data, dict):
            raise TypeError(f"Expected a configuration dict; received {data!r}.")
        _check_known(data)
        return cls(**data)

    @classmethod
    def from_protocol(cls, protocol: str | None = None, **overrides) -> RunConfig:
        """A protocol's configuration (or the defaults) with `overrides`.

        An override set to `None` sets that field to `None` (e.g. no
        augmentation); leave a field out to keep the protocol's value.

        Example:

        >>> RunConfig.from_protocol("protonet-omniglot-5w1s", eval_shots=5).eval_episode_shape
        (5, 5, 15)
        """
        _check_known(overrides)
        fields = {}
        if protocol is not None:
            if protocol not in P.PROTOCOLS:
                raise ValueError(
                    f"Unknown protocol {protocol!r}; the protocols are: "
                    f"{', '.join(P.list_protocols())}."
                )
            fields.update(P.PROTOCOLS[protocol], name=protocol)
        fields.update(overrides)
        return cls(**fields)

    def override(self, **changes) -> RunConfig:
        """A validated copy with some fields changed.

        Example:

        >>> RunConfig().override(ways=20).ways
        20
        """
        _check_known(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON values (tuples become lists).

        The run options (`mixed_precision`, `jit_compile`, `wandb`,
        `wandb_project`) appear only when set, so that a run without them
        writes the config.json that earlier versions wrote and read.

        Example:

        >>> RunConfig().to_dict()["hidden_units"]
        [40, 40]
        """
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("omit_default") and value == f.default:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else (
                dict(value) if isinstance(value, dict) else value
            )
        return out

    # ------------------------------------------------------------------
    # Questions the application asks.
    # ------------------------------------------------------------------
    @property
    def is_regression(self) -> bool:
        """Whether the run regresses (sinusoid) rather than classifies."""
        return self.dataset == "sinusoid"

    @property
    def train_episode_shape(self) -> tuple[int, int, int]:
        """`(ways, shots, queries)` of the training episodes."""
        return self.ways, self.shots, self.queries

    @property
    def eval_episode_shape(self) -> tuple[int, int, int]:
        """`(ways, shots, queries)` of the validation and test episodes.

        Example:

        >>> RunConfig.from_protocol("protonet-omniglot-5w1s").eval_episode_shape
        (5, 1, 15)
        """
        return (
            self.eval_ways or self.ways,
            self.eval_shots or self.shots,
            self.eval_queries or self.queries,
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example of the dataset.

        Example:

        >>> RunConfig.from_protocol("maml-omniglot-5w1s").input_shape
        (28, 28, 1)
        """
        if self.is_regression:
            return (1,)
        channels = 1 if self.color_mode == "grayscale" else 3
        return (self.image_size, self.image_size, channels)

    @property
    def monitor(self) -> tuple[str, str]:
        """`(metric, mode)` that picks the best validation epoch."""
        return ("val_loss", "min") if self.is_regression else ("val_accuracy", "max")

    @property
    def epochs_and_steps(self) -> tuple[int, int]:
        """`(epochs, steps_per_epoch)` covering `iterations` meta-iterations.

        When `steps_per_epoch` does not divide `iterations`, the epochs are made
        slightly shorter so that the total is the smallest multiple of the
        number of epochs that is at least `iterations`.

        Example:

        >>> RunConfig(iterations=1234, steps_per_epoch=500).epochs_and_steps
        (3, 412)
        """
        epochs = max(1, math.ceil(self.iterations / self.steps_per_epoch))
        return epochs, math.ceil(self.iterations / epochs)


FIELD_TYPES = typing.get_type_hints(RunConfig)
FIELD_NAMES = tuple(f.name for f in dataclasses.fields(RunConfig))
# Written to config.json only when set (see `RunConfig.to_dict`).
RUN_OPTION_FIELDS = tuple(
    f.name for f in dataclasses.fields(RunConfig) if f.metadata.get("omit_default")
)


def base_type(hint) -> tuple[type, bool]:
    """`(type, optional)` of a field's annotation, e.g. `(int, True)` for `int | None`.

    Example:

    >>> base_type(int | None)
    (<class 'int'>, True)
    """
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = type(None) in typing.get_args(hint)
    if optional:
        hint = args[0]
    return typing.get_origin(hint) or hint, optional


def _check_known(fields: dict):
    unknown = sorted(set(fields) - set(FIELD_NAMES))
    if unknown:
        raise ValueError(
            f"Unknown configuration fields {unknown}; the fields are {sorted(FIELD_NAMES)}."
        )


def _check_field(f: dataclasses.Field, hint, value):
    kind, optional = base_type(hint)
    name, meta = f.name, f.metadata
    if value is None and optional:
        return None
    if "choices" in meta:
        return validation.check_choice(name, value, meta["choices"])
    if kind is int:
        return validation.check_int(name, value, meta.get("minimum", 1))
    if kind is float:
        return validation.check_number(name, value, exclusive_minimum=0.0)
    if kind is bool:
        return validation.check_bool(name, value)
    if kind is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise TypeError(f"`{name}` must be a list; received {value!r}.")
        return _check_sequence(name, tuple(value))
    if not isinstance(value, kind):
        raise TypeError(f"`{name}` must be of type {kind.__name__}; received {value!r}.")
    if name == "published":
        missing = {"metric", "value", "source"} - set(value)
        if missing:
            raise ValueError(
                f"`published` must have the keys metric, value, source; missing {sorted(missing)}."
            )
    return value


def _check_sequence(name: str, value: tuple) -> tuple:
    if name == "hidden_units":
        if not all(isinstance(h, numbers.Integral) and not isinstance(h, bool) and h > 0
                   for h in value):
            raise ValueError(
                f"`hidden_units` must be a list of positive ints; received {list(value)!r}."
            )
        return tuple(int(h) for h in value)
    if len(value) != 3 or not all(
        isinstance(s, numbers.Real) and not isinstance(s, bool) and s >= 0 for s in value
    ):
        raise ValueError(
            "`split_sizes` must be three non-negative numbers (train, "
            f"validation, test: class counts or fractions); received {list(value)!r}."
        )
    return value


def _check_consistency(c: RunConfig):
    """The rules that tie fields together."""
    if c.is_regression and c.algorithm == "protonet":
        raise ValueError(
            "The protonet algorithm is a classifier; it cannot train on the sinusoid dataset."
        )
    if c.is_regression != (c.model == "mlp"):
        raise ValueError(
            "The sinusoid dataset takes model='mlp' and image datasets "
            f"model='conv4'; received dataset={c.dataset!r}, model={c.model!r}."
        )
    if c.algorithm != "protonet":
        for name in ("inner_learning_rate", "inner_steps"):
            if getattr(c, name) is None:
                raise ValueError(f"The {c.algorithm} algorithm needs `{name}`.")
        if not c.is_regression and c.eval_ways not in (None, c.ways):
            raise ValueError(
                f"The {c.algorithm} model has one output per class, so it is "
                f"tested on as many classes as it trains on: eval_ways "
                f"({c.eval_ways}) must equal ways ({c.ways})."
            )
    if c.algorithm != "reptile" and (c.inner_optimizer != "sgd" or c.inner_batch_size is not None):
        raise ValueError(
            "`inner_optimizer` and `inner_batch_size` are options of the reptile "
            f"algorithm; received them for {c.algorithm}."
        )
    if c.wandb_project is not None and not c.wandb:
        raise ValueError(
            "`wandb_project` names the Weights & Biases project of `wandb=True`; "
            f"received wandb_project={c.wandb_project!r} with wandb=False."
        )
    if c.jit_compile and c.algorithm == "protonet" and c.eval_ways not in (None, c.ways):
        raise ValueError(
            "protonet under XLA (`jit_compile=True`) needs a fixed number of classes: "
            f"eval_ways ({c.eval_ways}) must equal ways ({c.ways})."
        )
    if c.val_episodes == 0 and c.checkpoint == "best":
        raise ValueError(
            "checkpoint='best' is the best validation epoch, and val_episodes=0 trains "
            "without validation: use checkpoint='final'; received checkpoint='best', "
            "val_episodes=0."
        )
    if c.lr_schedule == "step" and (c.lr_decay_steps is None or c.lr_decay_rate is None):
        raise ValueError("lr_schedule='step' needs `lr_decay_steps` and `lr_decay_rate`.")
    if c.is_regression:
        if c.split != "none":
            raise ValueError(
                "The sinusoid dataset draws fresh tasks and takes split='none'; "
                f"received split={c.split!r}."
            )
        if c.augmentation is not None:
            raise ValueError("The sinusoid dataset takes no augmentation.")
        return
    datasets.check_config(c)
