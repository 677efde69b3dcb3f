"""Train, evaluate and adapt a run directory.

What the `keras-meta` command line does, as functions (the CLI only parses
arguments). The files of a run directory are those of
`keras_meta.experiments.run_dir`.

Running `train` again on an unfinished run directory resumes it at the
last completed epoch, with the same episodes as an uninterrupted run;
`train(..., time_limit=SECONDS)` stops at the end of the last epoch that fits
in the time (a job with a wall-clock limit; run it again to go on).
`train(..., strategy=...)` trains under a `tf.distribute` strategy
(`keras_meta.distribute`; docs/distributed.md). `evaluate(..., dataset=)`
evaluates a run on another dataset's classes. `adapt(..., pretrained=NAME)`
adapts a pretrained learner (`keras_meta.presets`). (Near 530 lines: the
strategy's checks and the workers' hand-over belong with `train`.)

Example:

>>> train("runs/sine", "maml-sinusoid", {"iterations": 2000})  # doctest: +SKIP
>>> evaluate("runs/sine")["results"]["loss"]                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time

import keras

from keras_meta import distribute, validation
from keras_meta.adapted import BATCH_NORM_CHOICES
from keras_meta.experiments import protocols
from keras_meta.experiments import run_dir as files
from keras_meta.experiments.builders import build_learner
from keras_meta.experiments.config import RunConfig
from keras_meta.experiments.run_callbacks import (
    CrashAfterBatches,
    FailAfterEpochs,
    TimeLimit,
    require_wandb,
    run_callbacks,
)
from keras_meta.experiments.run_dir import RunError
from keras_meta.experiments.sources import EpisodeSource, eval_seed, target_config


def prepare_run(
    run_dir, protocol: str | None = None, overrides: dict | None = None
) -> tuple[RunConfig, bool]:
    """Resolves the configuration of a new or resumed run in `run_dir`.

    Returns `(config, resuming)`. An unfinished run's stored configuration is
    used, and options that contradict it are an error, except `data_dir`: where
    the data is is not part of the experiment, so a run resumed on another
    machine (or after the data moved) reads it from the folder given.

    Example:

    >>> config, resuming = prepare_run("no_such_run", "maml-sinusoid", {"iterations": 10})
    >>> config.iterations, resuming
    (10, False)
    """
    overrides = dict(overrides or {})
    if not files.has_config(run_dir):
        try:
            return RunConfig.from_protocol(protocol, **overrides), False
        except (TypeError, ValueError) as error:
            raise RunError(str(error)) from None
    if files.run_state(run_dir).get("finished"):
        raise RunError(
            f"{os.fspath(run_dir)!r} holds a finished run; evaluate it with `keras-meta "
            "evaluate`, or train into a new --out"
        )
    stored = files.run_config(run_dir)
    if protocol is not None:
        overrides["name"] = protocol
    try:
        given = stored.override(**overrides).to_dict()
    except (TypeError, ValueError) as error:
        raise RunError(str(error)) from None
    old = stored.to_dict()
    changed = [k for k in overrides if k != "data_dir" and old[k] != given[k]]
    if changed:
        detail = ", ".join(f"{k}: {old[k]!r} -> {given[k]!r}" for k in changed)
        raise RunError(
            "the run directory holds an unfinished run with another "
            f"configuration ({detail}); resume it without these options or "
            "use a new --out"
        )
    if overrides.get("data_dir") is not None:
        return stored.override(data_dir=overrides["data_dir"]), True
    return stored, True


def train(
    run_dir,
    protocol: str | None = None,
    overrides: dict | None = None,
    verbose="auto",
    fail_after_epochs: int | None = None,
    argv=None,
    crash_after_batches: int | None = None,
    strategy: str = "none",
    time_limit: float | None = None,
) -> dict:
    """Trains (or resumes) a run; returns its `run.json` state.

    Args:
        run_dir: the run directory (created if needed).
        protocol: a protocol name (see `keras_meta.experiments.list_protocols()`).
        overrides: configuration fields that replace the protocol's.
        verbose: `fit`'s verbosity (the Keras progress bar by default).
        fail_after_epochs: interrupt after this many epochs of this call
            (for tests of resumption).
        argv: the command line, recorded in `config.json`.
        crash_after_batches: kill the process after this many training
            batches of this call (for tests of resumption after a crash).
        strategy: `"none"`, `"mirrored"` or `"multi-worker"` (see
            `keras_meta.distribute.make_strategy`; multi-worker reads
            `TF_CONFIG`). Not part of the configuration: a run may be resumed
            under another strategy. `meta_batch_size` is the global batch.
        time_limit: seconds from this call: training stops at the end of the
            last epoch that fits (at the pace of the epoch before it), and
            the run stays unfinished (`state["finished"]` is false; train
            again to resume). The first epoch of a call always runs. Not with
            the multi-worker strategy.

    Example:

    >>> train("runs/sine", "maml-sinusoid", {"iterations": 2000})  # doctest: +SKIP
    """
    started = time.monotonic()
    run_dir = os.fspath(run_dir)
    say = print if verbose else (lambda *a, **k: None)
    if time_limit is not None:
        validation.check_positive("time_limit", time_limit)
        if strategy == "multi-worker":
            # Each worker would judge the time alone, and one that stops
            # leaves the others waiting in a collective op.
            raise RunError(
                "a time limit is not supported with the multi-worker strategy (the "
                "workers could stop after different epochs); use the cluster's job limit "
                "and resume the run"
            )
    config, _ = prepare_run(run_dir, protocol, overrides)
    # Before anything else touches TensorFlow: a multi-worker strategy must
    # be made before any other op of the process.
    strategy = _make_strategy(strategy, config.meta_batch_size)
    chief = distribute.is_chief(strategy)
    if config.wandb and chief:
        # Before config.json is written: a run that cannot start leaves nothing behind.
        require_wandb()
    backup = distribute.worker_backup(strategy, files.path(run_dir, files.BACKUP_DIR))
    # Deleted only once run.json says "finished" (see _start_epoch).
    backup.delete_checkpoint = False
    multi_worker = backup.backup_dir != files.path(run_dir, files.BACKUP_DIR)
    # Data problems (missing files, too few classes for the ways) surface
    # here, before anything is written.
    source = EpisodeSource(config)
    source.train_episodes(start=0)
    if config.val_episodes:
        source.fixed("validation", config.val_episodes)
    # Another worker on this machine may share run_dir: each holds the lock
    # of the folder it writes, the chief run_dir's, the others their backup's.
    with files.locked(run_dir if chief else backup.backup_dir):
        # Again under the lock: another process may have started this run
        # (or finished it) since.
        config, resuming = prepare_run(run_dir, protocol, overrides)
        if not resuming and chief:
            files.write_config(run_dir, config, argv)
        epochs, steps = config.epochs_and_steps
        if multi_worker:
            files.backup_epoch(run_dir, say, backup.backup_dir)  # repairs a cut-short backup
            # Every worker resumes from the same epoch (a collective op).
            try:
                start_epoch = distribute.resume_step(strategy, backup, steps) // steps
            except ValueError as error:
                raise RunError(str(error)) from None
        else:
            start_epoch = _start_epoch(run_dir, epochs, say)
        learner = None
        if start_epoch < epochs:
            if chief and _onednn_would_pay(config):
                say(
                    "Note: ProtoNet trains about 2.3x faster on a CPU with TensorFlow's "
                    "oneDNN kernels, which this TensorFlow leaves off: add --onednn on "
                    "(TF_ENABLE_ONEDNN_OPTS=1; docs/cli.md)."
                )
            limit = TimeLimit(started + time_limit) if time_limit is not None else None
            learner = _fit(run_dir, config, source, start_epoch, fail_after_epochs,
                           crash_after_batches, verbose, strategy, backup, chief, limit)
            if limit is not None and (limit.stopped_epoch or epochs) < epochs:
                say(
                    f"{run_dir}: stopped after epoch {limit.stopped_epoch} of {epochs}: "
                    "another epoch would pass the time limit. Run the same command "
                    "again to resume."
                )
                return files.run_state(run_dir) if chief else {}
        else:
            say(f"{run_dir} had trained all {epochs} epochs; recording it as finished.")
        state = files.run_state(run_dir) if chief else {}
        if chief:
            state.update(finished=True, finished_at=files.now())
            files.write_json(files.path(run_dir, files.RUN_FILE), state)
        if multi_worker:
            # No worker deletes its backup before run.json says "finished".
            _barrier(strategy)
            files.remove_backup(run_dir, backup.backup_dir)
        else:
            files.remove_backup(run_dir)
        if chief:
            if learner is None:
                learner = keras.models.load_model(files.checkpoint_path(run_dir, "final"))
            _plot(run_dir, config, source, learner)
    return state


def _onednn_would_pay(config: RunConfig) -> bool:
    """Whether the run is a ProtoNet on CPUs only, with oneDNN off (the one
    case measured to gain from it; gradient-based learners lose)."""
    import tensorflow as tf

    from keras_meta._backend import onednn_enabled

    return (
        config.algorithm == "protonet"
        and not tf.config.list_physical_devices("GPU")
        and not onednn_enabled()
    )


def _make_strategy(name: str, meta_batch_size: int):
    """The strategy `name`; `RunError` for a bad `TF_CONFIG` or a global batch
    that does not divide between the replicas."""

    def check(replicas, what):
        if meta_batch_size % replicas:
            raise RunError(
                f"--meta-batch-size (the global batch: episodes per meta-iteration across all "
                f"replicas) must be a multiple of the number of replicas ({replicas}: {what}); "
                f"received {meta_batch_size}"
            )

    try:
        validation.check_choice("strategy", name, distribute.STRATEGIES)
        if name == "multi-worker":
            # Checked before the strategy connects to the other workers, so
            # that every worker stops at once with the same error.
            cluster = distribute.read_tf_config()["cluster"]
            check(sum(len(a) for a in cluster.values()), "the workers of TF_CONFIG")
        strategy = distribute.make_strategy(name)
    except ValueError as error:
        raise RunError(str(error)) from None
    check(strategy.num_replicas_in_sync, f"--strategy {name}")
    return strategy


def _barrier(strategy) -> None:
    """Returns once every worker has reached it (a collective op)."""
    import tensorflow as tf

    strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)


def _start_epoch(run_dir, epochs, say) -> int:
    """Epochs already trained: the backup's, or all of them when a crash came
    after the backup was deleted but before run.json said "finished"."""
    start = files.backup_epoch(run_dir, say)
    if start:
        return start
    done = files.run_state(run_dir).get("epochs_done", 0)
    if done >= epochs and os.path.exists(files.checkpoint_path(run_dir, "final")):
        return epochs
    if done:
        raise RunError(
            f"run.json of {run_dir!r} records {done} trained epochs but the backup is "
            "missing, so the run cannot resume; train into a new --out"
        )
    return 0


def _fit(run_dir, config, source, start_epoch, fail_after_epochs, crash_after_batches, verbose,
         strategy, backup, chief, time_limit=None):
    epochs, steps = config.epochs_and_steps
    train_episodes = distribute.distribute_episodes(
        strategy, source.train_episodes(start=start_epoch * steps), config.meta_batch_size
    )
    val_episodes = source.fixed("validation", config.val_episodes) if config.val_episodes else None
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        learner = build_learner(config)
    callbacks = run_callbacks(run_dir, config, val_episodes, start_epoch, backup, chief,
                              verbose=verbose, time_limit=time_limit)
    if fail_after_epochs:
        callbacks.append(FailAfterEpochs(fail_after_epochs))
    if crash_after_batches:
        callbacks.append(CrashAfterBatches(crash_after_batches))
    if start_epoch and verbose:
        print(f"Resuming {run_dir} at epoch {start_epoch + 1}/{epochs}.")
    learner.fit(
        train_episodes,
        epochs=epochs,
        steps_per_epoch=steps,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,
    )
    return learner


def _plot(run_dir, config, source, learner):
    from keras_meta.plots import plot_history, plot_regression_adaptation

    plot_history(
        files.path(run_dir, files.HISTORY_FILE),
        files.path(run_dir, "curves.png"),
        steps_per_epoch=config.epochs_and_steps[1],
        title=config.name or config.algorithm,
    )
    if config.is_regression:
        plot_regression_adaptation(
            learner, source.fixed("test", 3), files.path(run_dir, "adaptation.png")
        )


def load_run(run_dir, checkpoint: str | None = None) -> tuple[RunConfig, keras.Model]:
    """`(config, learner)` of a run directory's checkpoint.

    Args:
        run_dir: the run directory.
        checkpoint: `"final"` (after the last epoch), `"best"` (best
            validation epoch), or `None` for the configuration's choice.

    Example:

    >>> config, learner = load_run("runs/sine")  # doctest: +SKIP
    """
    import keras_meta  # noqa: F401 - registers the learners for loading.

    config = files.run_config(run_dir)
    checkpoint = checkpoint or config.checkpoint
    if checkpoint not in files.CHECKPOINTS:
        raise RunError(
            f"unknown checkpoint {checkpoint!r}; choose one of {sorted(files.CHECKPOINTS)}"
        )
    if checkpoint == "best" and not config.val_episodes:
        raise RunError(
            f"{os.fspath(run_dir)!r} was trained without validation (val_episodes=0), so it "
            "has no best checkpoint; use checkpoint 'final'"
        )
    file = files.checkpoint_path(run_dir, checkpoint)
    if not os.path.exists(file):
        raise RunError(f"{os.fspath(run_dir)!r} has no trained learner yet (no {file})")
    from keras_meta.loading import load_learner

    try:
        return config, load_learner(file)
    except ValueError as error:  # a truncated or corrupt archive, named by the message
        raise RunError(str(error)) from None


def evaluate(
    run_dir,
    num_episodes: int | None = None,
    split: str = "test",
    checkpoint: str | None = None,
    seed: int | None = None,
    inner_steps: int | None = None,
    bn_mode: str | None = None,
    data_dir: str | None = None,
    time_adaptation: bool = True,
    write: bool = True,
    verbose: int = 0,
    with_adapted_model: bool = False,
    dataset: str | None = None,
    protocol: str | None = None,
) -> dict:
    """Evaluates a run on a fixed set of test (or validation) episodes.

    Writes the results, with the evaluation settings and the published
    number of the configuration, to `run_dir/evaluation.json`. With
    `with_adapted_model=True`, the results also score the model that
    `keras-meta adapt` would export (`adapted_<metric>`, same episodes).

    With `dataset` (another dataset than the run's), the episodes come from
    that dataset's test (or validation) classes, in the run's episode shape,
    with images loaded at the learner's input size and channels: the
    cross-domain evaluation of Chen et al. 2019 (mini-ImageNet -> CUB).
    `data_dir` is then that dataset's, and the results go to
    `run_dir/evaluation_<dataset>.json` (`evaluation_file`).

    With `protocol`, the run is tested as that protocol tests (its test
    episodes, evaluation inner steps, BatchNorm mode and published number),
    which is allowed when the protocol trains what the run trained
    (`protocol_config`): one ProtoNet trained 60-way gives both the 5-way and
    the 20-way rows of Snell et al. The results go to
    `run_dir/evaluation_<protocol>.json`.

    Example:

    >>> results = evaluate("runs/sine", num_episodes=600)  # doctest: +SKIP
    >>> evaluate("runs/mini", dataset="cub")["dataset"]      # doctest: +SKIP
    'cub'
    >>> evaluate("runs/pn20", protocol="protonet-omniglot-5w1s")  # doctest: +SKIP
    """
    config, learner = load_run(run_dir, checkpoint)
    trained_on = config.dataset
    trained_as = config.name
    if protocol is not None:
        if dataset not in (None, trained_on):
            raise RunError("give --protocol or --dataset, not both")
        config = protocol_config(config, protocol)
        # The learner was built with the run's evaluation settings: the
        # protocol's are passed explicitly.
        if inner_steps is None and config.inner_steps is not None:
            inner_steps = config.eval_inner_steps or config.inner_steps
        if bn_mode is None:
            bn_mode = config.bn_mode
    config = target_config(config, dataset, data_dir)
    try:
        validation.check_choice("split", split, protocols.EVAL_SPLITS)
        num_episodes = validation.check_int("num_episodes", num_episodes, allow_none=True)
        validation.check_int("inner_steps", inner_steps, allow_none=True)
    except (TypeError, ValueError) as error:
        raise RunError(str(error)) from None
    if split == "validation" and not config.val_episodes and dataset in (None, trained_on):
        raise RunError(
            f"{os.fspath(run_dir)!r} was trained without validation (val_episodes=0) and has "
            "no validation classes; evaluate split 'test'"
        )
    if num_episodes is None:
        num_episodes = config.eval_episodes
    episodes = EpisodeSource(config).fixed(split, num_episodes, seed)
    with files.locked(run_dir, "RUN_DIR") if write else contextlib.nullcontext():
        record = _evaluate(config, learner, episodes, num_episodes, split, checkpoint, seed,
                           inner_steps, bn_mode, time_adaptation, verbose, with_adapted_model)
        if config.dataset != trained_on:
            record.update(dataset=config.dataset, trained_on=trained_on, published=None)
        if protocol is not None:
            record.update(protocol=protocol, trained_as=trained_as)
        if write:
            files.write_json(
                evaluation_file(run_dir, config.dataset, trained_on, protocol), record
            )
    return record


# The fields that only name a protocol or say how its learner is tested (and
# where the data is, and how the run ran): two protocols that differ in
# nothing else train the same learner.
EVALUATION_FIELDS = (
    "name", "description", "published", "notes", "eval_ways", "eval_shots", "eval_queries",
    "eval_inner_steps", "eval_episodes", "bn_mode",
)  # fmt: skip
_NOT_TRAINING = frozenset(
    EVALUATION_FIELDS
    + ("data_dir", "iterations", "mixed_precision", "jit_compile", "wandb", "wandb_project")
)


def protocol_config(config: RunConfig, protocol: str) -> RunConfig:
    """A run's configuration, tested as `protocol` tests.

    `RunError` unless `protocol` trains what the run's configuration trains:
    every field but the evaluation fields (`EVALUATION_FIELDS`), the data's
    folder, the run options and the budget must be equal (a run shorter than
    the protocol's budget is reported as short, as any run).

    Example:

    >>> twenty = RunConfig.from_protocol("protonet-omniglot-20w1s")
    >>> five = protocol_config(twenty, "protonet-omniglot-5w1s")
    >>> five.name, five.eval_episode_shape
    ('protonet-omniglot-5w1s', (5, 1, 15))
    """
    try:
        target = RunConfig.from_protocol(protocol)
    except ValueError as error:
        raise RunError(str(error)) from None
    differing = [
        f"{f.name}={getattr(config, f.name)!r} (the protocol: {getattr(target, f.name)!r})"
        for f in dataclasses.fields(RunConfig)
        if f.name not in _NOT_TRAINING and getattr(config, f.name) != getattr(target, f.name)
    ]
    if differing:
        raise RunError(
            f"protocol {protocol!r} trains differently from this run, so its results "
            f"cannot be this run's: {'; '.join(differing)}"
        )
    return config.override(**{name: getattr(target, name) for name in EVALUATION_FIELDS})


def evaluation_file(
    run_dir, dataset: str | None = None, trained_on: str | None = None, protocol=None
) -> str:
    """Where `evaluate` writes: `evaluation.json`, `evaluation_<dataset>.json`
    for another dataset than the run's (`trained_on`), or
    `evaluation_<protocol>.json` when tested as another protocol tests.

    Example:

    >>> os.path.basename(evaluation_file("runs/mini", "cub", "mini_imagenet"))
    'evaluation_cub.json'
    """
    if protocol is not None:
        return files.path(run_dir, f"evaluation_{protocol}.json")
    if dataset is None or dataset == trained_on:
        return files.path(run_dir, files.EVALUATION_FILE)
    return files.path(run_dir, f"evaluation_{dataset}.json")


def _evaluate(config, learner, episodes, num_episodes, split, checkpoint, seed, inner_steps,
              bn_mode, time_adaptation, verbose, with_adapted_model=False) -> dict:
    from keras_meta.evaluation import evaluate as evaluate_learner

    results = evaluate_learner(
        learner,
        episodes,
        num_episodes,
        inner_steps=inner_steps,
        bn_mode=bn_mode,
        time_adaptation=time_adaptation,
        with_adapted_model=with_adapted_model,
        adapted_batch_norm=serving_batch_norm(learner) if with_adapted_model else None,
        verbose=verbose,
    )
    ways, shots, queries = config.eval_episode_shape
    record = {
        "results": results,
        "split": split,
        "checkpoint": checkpoint or config.checkpoint,
        "seed": eval_seed(config, split, seed),
        "ways": ways,
        "shots": shots,
        "queries": queries,
        "published": config.published,
        "evaluated": files.now(),
        "machine": files.machine_info(),
    }
    return record


def adapt(
    run_dir,
    support_dir,
    out_dir,
    steps: int | None = None,
    checkpoint: str | None = None,
    invert: bool | None = None,
    batch_norm: str | None = None,
    pretrained: str | None = None,
) -> dict:
    """Adapts a run's learner to a folder of labelled images and exports it.

    With `pretrained` (a name of `keras_meta.presets.list_pretrained()`) and
    `run_dir=None`, adapts that pretrained learner instead: no training, no
    download.

    `batch_norm` says how the exported model's BatchNorm layers normalise (see
    `keras_meta.adapted`); by default a model that serves one image at a
    time: the support set's statistics when the learner normalises
    transductively, its moving statistics otherwise (`serving_batch_norm`).

    `support_dir` holds one sub-folder of images per class (read with
    `keras_meta.data.image_folder` at the run's image size and colour mode).
    Writes the adapted model as a SavedModel into `out_dir` (its `serve`
    endpoint takes float32 images in [0, 1], preprocessed as in training)
    and `out_dir/labels.json`, which maps each output index to its class
    name.

    Example:

    >>> adapt("runs/omniglot", "my_support", "adapted")  # doctest: +SKIP
    >>> adapt(None, "my_support", "adapted", pretrained="protonet_omniglot")  # doctest: +SKIP
    """
    from keras_meta import data

    config, learner = _adapt_source(run_dir, checkpoint, pretrained)
    if config.is_regression:
        raise RunError("adapt takes image folders; this run is a regression run")
    try:
        validation.check_int("steps", steps, allow_none=True)
        if batch_norm is not None:
            validation.check_choice("batch_norm", batch_norm, BATCH_NORM_CHOICES)
    except (TypeError, ValueError) as error:
        raise RunError(str(error)) from None
    if invert is None:
        # The Omniglot loader inverts the scans (ink = 1); user images of
        # dark ink on white must be inverted the same way.
        invert = config.dataset == "omniglot" or config.invert
    try:
        x, y, names = data.image_folder(
            support_dir, image_size=config.image_size, color_mode=config.color_mode, invert=invert
        )
    except (OSError, ValueError) as error:
        raise RunError(f"could not read the support images: {error}") from None
    if len(names) < 2:
        raise RunError(
            f"the support folder {os.fspath(support_dir)!r} has {len(names)} class "
            "sub-folder(s); it needs at least 2"
        )
    if config.algorithm != "protonet" and len(names) > config.ways:
        raise RunError(
            f"the support folder has {len(names)} classes, but the "
            f"{config.algorithm} model was trained {config.ways}-way and has "
            f"{config.ways} outputs"
        )
    files.writable_dir(out_dir)
    batch_norm = batch_norm or serving_batch_norm(learner)
    adapted = learner.adapt(x, y.astype("int32"), steps=steps, batch_norm=batch_norm)
    adapted.export(os.fspath(out_dir), verbose=False)
    labels = {str(i): name for i, name in enumerate(names)}
    files.write_json(os.path.join(out_dir, "labels.json"), labels)
    return {
        "out_dir": os.fspath(out_dir),
        "labels": labels,
        "num_images": int(len(x)),
        "input_shape": list(x.shape[1:]),
        "invert": bool(invert),
        "batch_norm": batch_norm,
    }


def _adapt_source(run_dir, checkpoint, pretrained) -> tuple[RunConfig, keras.Model]:
    """`(config, learner)` of a run directory, or of a pretrained learner."""
    if (run_dir is None) == (pretrained is None):
        raise RunError(
            "adapt takes a run directory or a pretrained learner, one of them; received "
            f"run_dir={run_dir!r}, pretrained={pretrained!r}"
        )
    if pretrained is None:
        return load_run(run_dir, checkpoint)
    from keras_meta import presets

    if checkpoint is not None:
        raise RunError(
            "`checkpoint` picks a run's checkpoint; a pretrained learner has one set of "
            f"weights; received checkpoint={checkpoint!r} with pretrained={pretrained!r}"
        )
    try:
        return presets.get_config(pretrained), presets.load_pretrained(pretrained)
    except ValueError as error:
        raise RunError(str(error)) from None


def serving_batch_norm(learner) -> str:
    """How an exported adapted model normalises by default: per example.

    `"support"` (the support set's statistics) for a learner that normalises
    transductively, `"running"` (its moving statistics) otherwise; either way
    a served request may hold a single image.

    Example:

    >>> serving_batch_norm(learner)  # doctest: +SKIP
    'support'
    """
    return "support" if getattr(learner, "bn_mode", "running") == "transductive" else "running"
