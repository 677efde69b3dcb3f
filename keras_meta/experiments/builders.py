"""The model, learner and meta-optimizer of a `RunConfig`.

Example:

>>> from keras_meta.experiments import RunConfig
>>> learner = build_learner(RunConfig.from_protocol("maml-sinusoid"))
>>> type(learner).__name__, learner.inner_learning_rate
('MAML', 0.01)
"""

from __future__ import annotations

import contextlib

import keras

from keras_meta import learners, models
from keras_meta.experiments.config import RunConfig

# algorithm -> the learner class that implements it.
LEARNERS = {
    "maml": learners.MAML,
    "fomaml": learners.MAML,
    "protonet": learners.ProtoNet,
    "reptile": learners.Reptile,
    "metasgd": learners.MetaSGD,
    "anil": learners.ANIL,
}


@contextlib.contextmanager
def dtype_policy(name: str | None):
    """Sets Keras's global dtype policy to `name` (`None`: unchanged) inside
    the block, and restores it after.

    Example:

    >>> with dtype_policy("mixed_bfloat16"):
    ...     keras.layers.Dense(1).compute_dtype
    'bfloat16'
    >>> keras.layers.Dense(1).compute_dtype
    'float32'
    """
    previous = keras.config.dtype_policy()
    if name is not None:
        keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def model_spec(config: RunConfig) -> dict:
    """`{"name", "kwargs"}`: the `keras_meta.models` function and arguments of the
    wrapped model (what `build_model` calls; a pretrained learner's metadata keeps it).

    Example:

    >>> model_spec(RunConfig.from_protocol("maml-sinusoid"))["name"]
    'mlp'
    """
    if config.model == "mlp":
        return {"name": "mlp", "kwargs": {"input_dim": config.input_shape[-1], "num_outputs": 1,
                                          "hidden_units": list(config.hidden_units)}}
    return {
        "name": "conv4",
        "kwargs": {
            "input_shape": list(config.input_shape),
            "num_outputs": None if config.algorithm == "protonet" else config.ways,
            "filters": config.filters,
            "pooling": config.pooling,
            "bn_scale": config.bn_scale,
        },
    }


def build_model(config: RunConfig) -> keras.Model:
    """The wrapped model of a configuration, for its dataset's inputs, under
    its `mixed_precision` policy.

    Example:

    >>> build_model(RunConfig.from_protocol("maml-sinusoid")).output_shape
    (None, 1)
    >>> build_model(RunConfig.from_protocol(
    ...     "maml-sinusoid", mixed_precision="mixed_bfloat16")).compute_dtype
    'bfloat16'
    """
    spec = model_spec(config)
    kwargs = dict(spec["kwargs"])
    if spec["name"] == "conv4":
        kwargs["input_shape"] = tuple(kwargs["input_shape"])
    # Only the wrapped model: the learner stays float32 (fast weights,
    # outputs and losses), and the policy is saved with the model's layers.
    with dtype_policy(config.mixed_precision):
        return getattr(models, spec["name"])(**kwargs)


def learner_spec(config: RunConfig) -> dict:
    """`{"class", "args", "kwargs"}`: the learner class of a configuration and its
    arguments after the wrapped model (a pretrained learner's metadata keeps it).

    Example:

    >>> learner_spec(RunConfig.from_protocol("anil-omniglot-20w1s"))["args"]
    [['head']]
    """
    algorithm = config.algorithm
    args = []
    if algorithm == "protonet":
        # XLA needs the number of classes at trace time.
        ways = config.ways if config.jit_compile else None
        kwargs = dict(distance=config.distance, bn_mode=config.bn_mode, ways=ways)
    else:
        kwargs = dict(
            inner_learning_rate=config.inner_learning_rate,
            inner_steps=config.inner_steps,
            bn_mode=config.bn_mode,
        )
        if config.eval_inner_steps is not None:
            kwargs["eval_inner_steps"] = config.eval_inner_steps
        if algorithm in ("maml", "fomaml"):
            kwargs["first_order"] = algorithm == "fomaml"
        if algorithm == "reptile":
            kwargs.update(
                inner_optimizer=config.inner_optimizer,
                inner_batch_size=config.inner_batch_size,
                seed=config.seed,
            )
        if algorithm == "anil":
            args = [["head"]]
    return {"class": LEARNERS[algorithm].__name__, "args": args, "kwargs": kwargs}


def build_learner(config: RunConfig, compile: bool = True) -> learners.MetaLearner:
    """The learner of a configuration, compiled with its loss, metrics and optimizer.

    Example:

    >>> build_learner(RunConfig.from_protocol("reptile-omniglot-5w1s")).inner_batch_size
    10
    """
    spec = learner_spec(config)
    learner = LEARNERS[config.algorithm](build_model(config), *spec["args"], **spec["kwargs"])
    if compile:
        if config.is_regression:
            loss, metrics = "mse", ["mae"]
        else:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            metrics = ["accuracy"]
        # Without --jit, Keras's "auto": XLA on a GPU only.
        jit = True if config.jit_compile else "auto"
        learner.compile(
            optimizer=build_optimizer(config), loss=loss, metrics=metrics, jit_compile=jit
        )
    return learner


def build_optimizer(config: RunConfig) -> keras.optimizers.Optimizer:
    """The meta-optimizer of a configuration, with its learning-rate schedule.

    Example:

    >>> type(build_optimizer(RunConfig.from_protocol("reptile-omniglot-5w1s"))).__name__
    'SGD'
    """
    lr = config.meta_learning_rate
    if config.lr_schedule == "step":
        lr = keras.optimizers.schedules.ExponentialDecay(
            lr,
            decay_steps=config.lr_decay_steps,
            decay_rate=config.lr_decay_rate,
            staircase=True,
        )
    elif config.lr_schedule == "linear":
        lr = keras.optimizers.schedules.PolynomialDecay(
            lr, decay_steps=config.iterations, end_learning_rate=0.0
        )
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr)
    return keras.optimizers.Adam(lr)
