"""Run directories: train, evaluate and adapt from a configuration.

What the `keras-meta` command line does, as functions (the CLI only parses
arguments). A run directory holds:

```
config.json      the resolved configuration (see keras_meta.presets) and the
                 environment it started in
run.json         progress: epochs and iterations done, training wall time
learner.keras    the learner after the last completed epoch
best.keras       the learner of the best validation epoch
history.csv      per-epoch logs (CSVLogger)
logs/            TensorBoard logs
backup/          BackupAndRestore state while training is unfinished
curves.png       learning curves; adaptation.png for regression
evaluation.json  the last `evaluate` results
```

Running `train` again on an unfinished run directory resumes it at the
last completed epoch, with the same episodes as an uninterrupted run
(classification; regression tasks are re-seeded per resume).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import signal
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from keras_meta import presets

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
HISTORY_FILE = "history.csv"
EVALUATION_FILE = "evaluation.json"
CHECKPOINTS = {"final": "learner.keras", "best": "best.keras"}
BACKUP_DIR = "backup"
LOG_DIR = "logs"

# Offsets of the validation and test episode seeds from the run's seed, so
# that the three streams never share episodes.
_VAL_SEED_OFFSET = 1
_TEST_SEED_OFFSET = 2


class RunError(ValueError):
    """A problem with the user's arguments, data or run directory.

    The CLI prints its message as a one-line error, without a traceback.
    """


class _SimulatedInterruption(KeyboardInterrupt):
    """Raised by the hidden `--fail-after-epochs` test flag."""


# ----------------------------------------------------------------------
# Environment.
# ----------------------------------------------------------------------
def machine_info() -> dict:
    """The machine and software a run uses, for configuration files and tables.

    Example:

    >>> sorted(machine_info())[:3]
    ['cpu_count', 'devices', 'keras']
    """
    from keras_meta import __version__

    devices = sorted({d.device_type for d in tf.config.list_physical_devices()})
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "devices": devices,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_meta": __version__,
    }


def _write_json(path, data):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def run_state(run_dir) -> dict:
    """The progress record (`run.json`) of a run directory, or `{}`.

    Example:

    >>> run_state("runs/sine").get("finished")  # doctest: +SKIP
    True
    """
    path = os.path.join(os.fspath(run_dir), RUN_FILE)
    return _read_json(path) if os.path.exists(path) else {}


def run_config(run_dir) -> dict:
    """The configuration stored in a run directory's `config.json`.

    Example:

    >>> run_config("runs/sine")["algorithm"]  # doctest: +SKIP
    'maml'
    """
    path = os.path.join(os.fspath(run_dir), CONFIG_FILE)
    if not os.path.exists(path):
        raise RunError(f"{os.fspath(run_dir)!r} is not a run directory (no {CONFIG_FILE})")
    return presets.validate_config(_read_json(path)["config"])


# ----------------------------------------------------------------------
# Data.
# ----------------------------------------------------------------------
def input_shape(config: dict) -> tuple:
    """The shape of one example of the configuration's dataset.

    Example:

    >>> input_shape(presets.get_preset("maml-omniglot-5w1s"))
    (28, 28, 1)
    """
    if config["dataset"] == "sinusoid":
        return (1,)
    channels = 1 if config["color_mode"] == "grayscale" else 3
    return (config["image_size"], config["image_size"], channels)


def _require_data_dir(config):
    data_dir = config["data_dir"]
    if not data_dir:
        raise RunError(
            f"the {config['dataset']} dataset needs --data-dir (the folder "
            + (
                "holding images_background.zip and images_evaluation.zip"
                if config["dataset"] == "omniglot"
                else "with one sub-folder of images per class"
            )
            + ")"
        )
    if not os.path.exists(data_dir):
        raise RunError(f"the data directory {data_dir!r} does not exist")
    return data_dir


def _split_sizes(sizes, num_classes, default):
    sizes = list(sizes or default)
    return {"train": sizes[0], "validation": sizes[1], "test": sizes[2]}


def load_class_splits(config: dict) -> dict:
    """Loads a classification dataset as `{split: (images, labels)}`.

    Splits are `"train"`, `"validation"` and `"test"`, disjoint in classes;
    with `augmentation="rotations_as_classes"` each split's classes are
    multiplied by four rotations within the split.

    Example:

    >>> config = presets.resolve_config(dataset="folder", data_dir="images",
    ...                                 split="random")        # doctest: +SKIP
    >>> splits = load_class_splits(config)                      # doctest: +SKIP
    >>> sorted(splits)                                          # doctest: +SKIP
    ['test', 'train', 'validation']
    """
    import keras_meta as km

    data_dir = _require_data_dir(config)
    size = config["image_size"]
    try:
        if config["dataset"] == "omniglot":
            if config["split"] == "mixed":
                x, y = km.data.omniglot(data_dir, split="all", image_size=size)
                sizes = _split_sizes(config["split_sizes"], None, [1100, 100, 423])
                split = km.data.split_classes(y, sizes, seed=config["split_seed"])
                parts = {name: split.select(name, x, y) for name in split}
            else:
                x, y = km.data.omniglot(data_dir, split="background", image_size=size)
                num_val = int((config["split_sizes"] or [0, 100, 0])[1])
                split = km.data.split_classes(
                    y,
                    {"train": len(np.unique(y)) - num_val, "validation": num_val},
                    seed=config["split_seed"],
                )
                parts = {name: split.select(name, x, y) for name in split}
                parts["test"] = km.data.omniglot(data_dir, split="evaluation", image_size=size)
        else:
            x, y, _ = km.data.image_folder(
                data_dir,
                image_size=size,
                color_mode=config["color_mode"],
                invert=config["invert"],
            )
            sizes = _split_sizes(config["split_sizes"], None, [0.6, 0.2, 0.2])
            split = km.data.split_classes(y, sizes, seed=config["split_seed"])
            parts = {name: split.select(name, x, y) for name in split}
    except (OSError, ValueError, TypeError) as error:
        raise RunError(f"could not load the {config['dataset']} data: {error}") from None
    if config["augmentation"] == "rotations_as_classes":
        parts = {
            name: km.data.rotate_classes(xs, ys) if len(xs) else (xs, ys)
            for name, (xs, ys) in parts.items()
        }
    return parts


class EpisodeSource:
    """The training, validation and test episodes of a configuration.

    Example:

    >>> source = EpisodeSource(presets.get_preset("maml-sinusoid"))
    >>> train = source.train(start=0)
    >>> x, y = next(iter(train))
    >>> tuple(y.shape)
    (25, 10, 1)
    """

    def __init__(self, config: dict):
        self.config = config
        self.regression = config["dataset"] == "sinusoid"
        self._parts = None if self.regression else load_class_splits(config)

    def _sampler(self, split, ways, shots, queries, seed, num_episodes=None):
        import keras_meta as km

        images, labels = self._parts[split]
        augment = "class_rotation" if self.config["augmentation"] == "class_rotation" else None
        try:
            return km.data.EpisodeSampler(
                images,
                labels,
                ways=ways,
                shots=shots,
                queries=queries,
                seed=seed,
                num_episodes=num_episodes,
                augment=augment,
            )
        except ValueError as error:
            raise RunError(
                f"the {split} split ({len(np.unique(labels))} classes, "
                f"{len(labels)} images) cannot make {ways}-way {shots}-shot "
                f"episodes with {queries} queries per class: {error}"
            ) from None

    def train(self, start: int = 0) -> tf.data.Dataset:
        """Batches of training episodes, from meta-iteration `start` on."""
        import keras_meta as km

        c = self.config
        batch = c["meta_batch_size"]
        if self.regression:
            # Sinusoid tasks are re-seeded per resume rather than skipped,
            # which would generate every earlier task.
            seed = c["seed"] if start == 0 else c["seed"] + 7919 * start
            episodes = km.data.sinusoid(shots=c["shots"], queries=c["queries"], seed=seed)
        else:
            sampler = self._sampler("train", c["ways"], c["shots"], c["queries"], c["seed"])
            seed = tf.constant(c["seed"], tf.int64)
            # Episode i of the stream is a pure function of (seed, i), so
            # starting the counter at the episodes already seen resumes the
            # exact stream of an uninterrupted run.
            episodes = tf.data.Dataset.counter(start * batch, dtype=tf.int64).map(
                lambda i: sampler.sample(tf.stack([seed, i])),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
        return episodes.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    def fixed(self, split: str, num_episodes: int, seed: int | None = None):
        """A fixed set of single validation or test episodes."""
        import keras_meta as km

        c = self.config
        offset = _VAL_SEED_OFFSET if split == "validation" else _TEST_SEED_OFFSET
        seed = c["seed"] + offset if seed is None else seed
        ways, shots, queries = presets.eval_episode_shape(c)
        if self.regression:
            return km.data.sinusoid(
                shots=shots, queries=queries, seed=seed, num_episodes=num_episodes
            )
        return self._sampler(split, ways, shots, queries, seed, num_episodes).dataset()


# ----------------------------------------------------------------------
# Training.
# ----------------------------------------------------------------------
def _monitor(config):
    if config["dataset"] == "sinusoid":
        return "val_loss", "min"
    return "val_accuracy", "max"


def _read_history(run_dir):
    from keras_meta.plots import read_history

    path = os.path.join(run_dir, HISTORY_FILE)
    return read_history(path) if os.path.exists(path) else {}


def _resume_epoch(run_dir) -> int:
    path = os.path.join(run_dir, BACKUP_DIR, "training_metadata.json")
    if not os.path.exists(path):
        return 0
    return int(_read_json(path).get("epoch", 0))


def _check_resume_config(stored: dict, given: dict):
    changed = {k: (stored.get(k), v) for k, v in given.items() if stored.get(k) != v}
    if changed:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise RunError(
            "the run directory holds an unfinished run with another "
            f"configuration ({detail}); resume it without these options or "
            "use a new --out"
        )


def prepare_run(
    run_dir, preset: str | None = None, overrides: dict | None = None
) -> tuple[dict, bool]:
    """Resolves the configuration of a new or resumed run in `run_dir`.

    Returns `(config, resuming)`. A new run writes `config.json`; an
    unfinished run's stored configuration is used, and options that
    contradict it are an error.

    Example:

    >>> config, resuming = prepare_run("runs/sine", "maml-sinusoid",
    ...                                {"iterations": 1000})  # doctest: +SKIP
    """
    overrides = dict(overrides or {})
    config_path = os.path.join(run_dir, CONFIG_FILE)
    if os.path.exists(config_path):
        run = (
            _read_json(os.path.join(run_dir, RUN_FILE))
            if os.path.exists(os.path.join(run_dir, RUN_FILE))
            else {}
        )
        if run.get("finished"):
            raise RunError(
                f"{run_dir!r} holds a finished run; evaluate it with `keras-meta "
                "evaluate`, or train into a new --out"
            )
        stored = _read_json(config_path)["config"]
        given = dict(overrides)
        if preset is not None:
            given["name"] = preset
        _check_resume_config(stored, given)
        try:
            return presets.validate_config(stored), True
        except (TypeError, ValueError) as error:
            raise RunError(f"invalid {config_path}: {error}") from None
    try:
        config = presets.resolve_config(preset, **overrides)
    except (TypeError, ValueError) as error:
        raise RunError(str(error)) from None
    return config, False


class _RunProgress(keras.callbacks.Callback):
    """Writes `run.json` after each epoch: progress and training wall time."""

    def __init__(self, path, steps_per_epoch, previous_seconds):
        super().__init__()
        self.path = path
        self.steps_per_epoch = steps_per_epoch
        self.previous_seconds = previous_seconds
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        state = _read_json(self.path) if os.path.exists(self.path) else {}
        state.update(
            {
                "epochs_done": epoch + 1,
                "iterations_done": (epoch + 1) * self.steps_per_epoch,
                "train_seconds": self.previous_seconds + time.perf_counter() - self.start,
                "finished": False,
            }
        )
        _write_json(self.path, state)


class _CrashAfterBatches(keras.callbacks.Callback):
    """Kills the process after a number of training batches (tests of a crash
    in the middle of an epoch: no exception, no clean-up, as when a machine
    is lost)."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches
        self.seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen >= self.batches:
            sys.stdout.flush()
            sys.stderr.flush()
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


class _FailAfterEpochs(keras.callbacks.Callback):
    """Interrupts training after a number of epochs (tests of resumption)."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs
        self.seen = 0

    def on_epoch_end(self, epoch, logs=None):
        self.seen += 1
        if self.seen >= self.epochs:
            raise _SimulatedInterruption(f"simulated interruption after epoch {epoch}")


def epochs_and_steps(config: dict) -> tuple[int, int]:
    """`(epochs, steps_per_epoch)` covering `iterations` meta-iterations.

    When `steps_per_epoch` does not divide `iterations`, the epochs are made
    slightly shorter so that the total is the smallest multiple of the
    number of epochs that is at least `iterations`.

    Example:

    >>> epochs_and_steps({"iterations": 60000, "steps_per_epoch": 1000})
    (60, 1000)
    >>> epochs_and_steps({"iterations": 1234, "steps_per_epoch": 500})
    (3, 412)
    """
    iterations, per_epoch = config["iterations"], config["steps_per_epoch"]
    epochs = max(1, math.ceil(iterations / per_epoch))
    return epochs, math.ceil(iterations / epochs)


def train(
    run_dir,
    preset: str | None = None,
    overrides: dict | None = None,
    verbose="auto",
    fail_after_epochs: int | None = None,
    argv=None,
    crash_after_batches: int | None = None,
) -> dict:
    """Trains (or resumes) a run; returns the final `run.json` state.

    Args:
        run_dir: the run directory (created if needed).
        preset: a preset name (see `keras_meta.presets.list_presets()`).
        overrides: configuration fields that replace the preset's.
        verbose: `fit`'s verbosity (the Keras progress bar by default).
        fail_after_epochs: interrupt after this many epochs of this call
            (for tests of resumption).
        crash_after_batches: kill the process after this many training
            batches of this call (for tests of resumption after a crash).
        argv: the command line, recorded in `config.json`.

    Example:

    >>> train("runs/sine", "maml-sinusoid", {"iterations": 2000})  # doctest: +SKIP
    """
    from keras_meta.callbacks import MetaEvaluation, ScalarLogger, tensorboard_installed
    from keras_meta.plots import plot_history, plot_regression_adaptation

    run_dir = os.fspath(run_dir)
    config, resuming = prepare_run(run_dir, preset, overrides)
    epochs, steps = epochs_and_steps(config)
    start_epoch = _resume_epoch(run_dir)
    # Data problems (missing files, too few classes for the ways) surface
    # here, before anything is written.
    source = EpisodeSource(config)
    train_episodes = source.train(start=start_epoch * steps)
    val_episodes = source.fixed("validation", config["val_episodes"])
    os.makedirs(run_dir, exist_ok=True)
    config_path = os.path.join(run_dir, CONFIG_FILE)
    if not resuming:
        _write_json(
            config_path,
            {
                "config": config,
                "epochs": epochs,
                "steps_per_epoch": steps,
                "iterations": epochs * steps,
                "command": argv,
                "started": datetime.datetime.now().isoformat(timespec="seconds"),
                "machine": machine_info(),
            },
        )
    run_path = os.path.join(run_dir, RUN_FILE)
    run_state = _read_json(run_path) if os.path.exists(run_path) else {}
    if start_epoch == 0:
        run_state = {}

    keras.utils.set_random_seed(config["seed"])
    learner = presets.build_learner(config, input_shape(config))
    monitor, mode = _monitor(config)
    history = _read_history(run_dir)
    best = None
    if start_epoch and history.get(monitor):
        done = history[monitor][:start_epoch]
        best = (max if mode == "max" else min)(done) if done else None
    log_dir = os.path.join(run_dir, LOG_DIR)
    if tensorboard_installed():
        tensorboard = keras.callbacks.TensorBoard(log_dir, write_graph=False, profile_batch=0)
    else:
        # keras.callbacks.TensorBoard needs the tensorboard package, which
        # TensorFlow no longer installs; the scalars are what a run needs.
        tensorboard = ScalarLogger(log_dir)
    callbacks = [
        MetaEvaluation(val_episodes, num_episodes=config["val_episodes"]),
        keras.callbacks.ModelCheckpoint(os.path.join(run_dir, CHECKPOINTS["final"]), verbose=0),
        keras.callbacks.ModelCheckpoint(
            os.path.join(run_dir, CHECKPOINTS["best"]),
            monitor=monitor,
            mode=mode,
            save_best_only=True,
            initial_value_threshold=best,
            verbose=0,
        ),
        keras.callbacks.CSVLogger(os.path.join(run_dir, HISTORY_FILE), append=start_epoch > 0),
        tensorboard,
        _RunProgress(run_path, steps, run_state.get("train_seconds", 0.0)),
        # Last, so that an epoch counts as done only once everything above
        # has recorded it.
        keras.callbacks.BackupAndRestore(os.path.join(run_dir, BACKUP_DIR)),
    ]
    if fail_after_epochs:
        callbacks.append(_FailAfterEpochs(fail_after_epochs))
    if crash_after_batches:
        callbacks.append(_CrashAfterBatches(crash_after_batches))
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
    state = _read_json(run_path)
    state["finished"] = True
    state["finished_at"] = datetime.datetime.now().isoformat(timespec="seconds")
    _write_json(run_path, state)

    plot_history(
        os.path.join(run_dir, HISTORY_FILE),
        os.path.join(run_dir, "curves.png"),
        steps_per_epoch=steps,
        title=config["name"] or config["algorithm"],
    )
    if source.regression:
        plot_regression_adaptation(
            learner,
            source.fixed("test", 3),
            os.path.join(run_dir, "adaptation.png"),
        )
    return state


# ----------------------------------------------------------------------
# Evaluation and adaptation of a trained run.
# ----------------------------------------------------------------------
def load_run(run_dir, checkpoint: str | None = None):
    """`(config, learner)` of a run directory's checkpoint.

    Args:
        run_dir: the run directory.
        checkpoint: `"final"` (after the last epoch), `"best"` (best
            validation epoch), or `None` for the configuration's choice.

    Example:

    >>> config, learner = load_run("runs/sine")  # doctest: +SKIP
    """
    import keras_meta  # noqa: F401 - registers the learners for loading.

    run_dir = os.fspath(run_dir)
    config_path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.exists(config_path):
        raise RunError(f"{run_dir!r} is not a run directory (no {CONFIG_FILE})")
    config = presets.validate_config(_read_json(config_path)["config"])
    checkpoint = checkpoint or config["checkpoint"]
    if checkpoint not in CHECKPOINTS:
        raise RunError(f"unknown checkpoint {checkpoint!r}; choose one of {sorted(CHECKPOINTS)}")
    path = os.path.join(run_dir, CHECKPOINTS[checkpoint])
    if not os.path.exists(path) and checkpoint == "best":
        path = os.path.join(run_dir, CHECKPOINTS["final"])
    if not os.path.exists(path):
        raise RunError(f"{run_dir!r} has no trained learner yet (no {path})")
    return config, keras.models.load_model(path)


def format_result(results: dict, metric: str) -> str:
    """`"accuracy: 98.70% ± 0.40% (95% CI, 600 episodes)"`.

    Example:

    >>> format_result({"accuracy": 0.987, "accuracy_ci95": 0.004,
    ...                "num_episodes": 600}, "accuracy")
    'accuracy: 98.70% ± 0.40% (95% CI, 600 episodes)'
    """
    mean, half = results[metric], results[metric + "_ci95"]
    n = results["num_episodes"]
    if metric == "accuracy":
        return f"{metric}: {100 * mean:.2f}% ± {100 * half:.2f}% (95% CI, {n} episodes)"
    return f"{metric}: {mean:.4g} ± {half:.2g} (95% CI, {n} episodes)"


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
) -> dict:
    """Evaluates a run on a fixed set of test (or validation) episodes.

    Writes the results, with the evaluation settings and the published
    number of the configuration, to `run_dir/evaluation.json`.

    Example:

    >>> results = evaluate("runs/sine", num_episodes=600)  # doctest: +SKIP
    """
    from keras_meta.evaluation import evaluate as evaluate_learner

    config, learner = load_run(run_dir, checkpoint)
    if data_dir is not None:
        config = dict(config, data_dir=os.fspath(data_dir))
    if split not in ("test", "validation"):
        raise RunError(f"unknown split {split!r}; choose 'test' or 'validation'")
    num_episodes = num_episodes or config["eval_episodes"]
    source = EpisodeSource(config)
    episodes = source.fixed(split, num_episodes, seed)
    results = evaluate_learner(
        learner,
        episodes,
        num_episodes,
        inner_steps=inner_steps,
        bn_mode=bn_mode,
        time_adaptation=time_adaptation,
        verbose=verbose,
    )
    offset = _VAL_SEED_OFFSET if split == "validation" else _TEST_SEED_OFFSET
    ways, shots, queries = presets.eval_episode_shape(config)
    record = {
        "results": results,
        "split": split,
        "checkpoint": checkpoint or config["checkpoint"],
        "seed": config["seed"] + offset if seed is None else seed,
        "ways": ways,
        "shots": shots,
        "queries": queries,
        "published": config["published"],
        "evaluated": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
    }
    if write:
        _write_json(os.path.join(run_dir, EVALUATION_FILE), record)
    return record


def adapt(
    run_dir,
    support_dir,
    out_dir,
    steps: int | None = None,
    checkpoint: str | None = None,
    invert: bool | None = None,
) -> dict:
    """Adapts a run's learner to a folder of labelled images and exports it.

    `support_dir` holds one sub-folder of images per class (read with
    `keras_meta.data.image_folder` at the run's image size and colour mode).
    Writes the adapted model as a SavedModel into `out_dir` (its `serve`
    endpoint takes float32 images in [0, 1], preprocessed as in training)
    and `out_dir/labels.json`, which maps each output index to its class
    name.

    Example:

    >>> adapt("runs/omniglot", "my_support", "adapted")  # doctest: +SKIP
    """
    import keras_meta as km

    config, learner = load_run(run_dir, checkpoint)
    if config["dataset"] == "sinusoid":
        raise RunError("adapt takes image folders; this run is a regression run")
    if invert is None:
        # The Omniglot loader inverts the scans (ink = 1); user images of
        # dark ink on white must be inverted the same way.
        invert = config["dataset"] == "omniglot" or config["invert"]
    try:
        x, y, names = km.data.image_folder(
            support_dir,
            image_size=config["image_size"],
            color_mode=config["color_mode"],
            invert=invert,
        )
    except (OSError, ValueError) as error:
        raise RunError(f"could not read the support images: {error}") from None
    if len(names) < 2:
        raise RunError(
            f"the support folder {os.fspath(support_dir)!r} has {len(names)} class "
            "sub-folder(s); it needs at least 2"
        )
    if config["algorithm"] != "protonet" and len(names) > config["ways"]:
        raise RunError(
            f"the support folder has {len(names)} classes, but the "
            f"{config['algorithm']} model was trained {config['ways']}-way and has "
            f"{config['ways']} outputs"
        )
    adapted = learner.adapt(x, y.astype("int32"), steps=steps)
    os.makedirs(out_dir, exist_ok=True)
    adapted.export(os.fspath(out_dir), verbose=False)
    labels = {str(i): name for i, name in enumerate(names)}
    _write_json(os.path.join(out_dir, "labels.json"), labels)
    return {
        "out_dir": os.fspath(out_dir),
        "labels": labels,
        "num_images": int(len(x)),
        "input_shape": list(x.shape[1:]),
        "invert": bool(invert),
    }


def main_guard(fn, *args, **kwargs):
    """Calls `fn`, turning `RunError` into a message on stderr and exit 2."""
    try:
        return fn(*args, **kwargs)
    except RunError as error:
        print(f"keras-meta: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
