"""The callbacks that record a training run into its run directory.

Each writes its file atomically (`run_dir.atomic`): `learner.keras` and
`best.keras` (`AtomicCheckpoint`), `history.csv` (`HistoryFile`, one row per
epoch even when an epoch is trained again after a crash) and `run.json`
(`RunProgress`); with `wandb`, Weights & Biases' `WandbMetricsLogger` logs
the epoch metrics beside TensorBoard. `BackupAndRestore` comes last, so that an epoch counts as done
only once everything else has recorded it.

Example:

>>> from keras_meta.experiments import RunConfig
>>> callbacks = run_callbacks("runs/a", RunConfig(), None, start_epoch=0)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
import secrets
import signal
import sys
import time

import keras

from keras_meta._source import source_commit
from keras_meta.experiments import run_dir as files
from keras_meta.experiments.config import RunConfig


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the learner after each epoch (or after each best `monitor` value)
    to a temporary file renamed into place.

    Example:

    >>> AtomicCheckpoint("best.keras", monitor="val_loss", mode="min").best is None
    True
    """

    def __init__(self, file, monitor=None, mode="min", best=None):
        super().__init__()
        self.file, self.monitor, self.mode, self.best = file, monitor, mode, best

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is not None:
            value = (logs or {}).get(self.monitor)
            if value is None:
                return
            if self.best is not None:
                improved = value < self.best if self.mode == "min" else value > self.best
                if not improved:
                    return
            self.best = value
        with files.atomic(self.file) as tmp:
            self.model.save(tmp)


class HistoryFile(keras.callbacks.Callback):
    """Writes `history.csv` (as `keras.callbacks.CSVLogger` does) atomically,
    keeping only the rows of the epochs before the one just ended, so that
    an epoch trained again after a crash has one row.

    Example:

    >>> HistoryFile("history.csv").file
    'history.csv'
    """

    def __init__(self, file):
        super().__init__()
        self.file = file

    def on_epoch_end(self, epoch, logs=None):
        rows, keys = [], []
        if os.path.exists(self.file):
            with open(self.file, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                keys = [k for k in reader.fieldnames or [] if k != "epoch"]
                rows = [r for r in reader if int(float(r["epoch"])) < epoch]
        logs = dict(logs or {})
        keys += sorted(k for k in logs if k not in keys)
        rows.append({"epoch": epoch, **logs})
        with files.atomic(self.file) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, ["epoch"] + keys, restval="NA")
                writer.writeheader()
                writer.writerows(rows)


class RunProgress(keras.callbacks.Callback):
    """Writes `run.json` after each epoch: progress, training wall time, and
    how long the rest of the run will take at the last epoch's pace.

    With `verbose`, also prints that estimate (long runs span sessions: the
    progress bar only shows the epoch's).

    Example:

    >>> RunProgress("runs/a", steps_per_epoch=10, previous_seconds=0.0).steps_per_epoch
    10
    """

    def __init__(self, run_dir, steps_per_epoch, previous_seconds, verbose=0):
        super().__init__()
        self.run_dir = run_dir
        self.steps_per_epoch = steps_per_epoch
        self.previous_seconds = previous_seconds
        self.verbose = verbose
        self.start = time.perf_counter()
        self.epoch_start = self.start

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        # Validation and checkpoints (the callbacks before this one) count:
        # they are part of what every remaining epoch costs.
        epoch_seconds = now - self.epoch_start
        epochs = self.params.get("epochs") if self.params else None
        remaining = max(epochs - epoch - 1, 0) * epoch_seconds if epochs else None
        state = files.run_state(self.run_dir)
        # A long run is resumed across sessions, perhaps by other code: each
        # commit that trained it, from the first epoch it trained.
        commits = state.get("commits") or []
        commit = source_commit()
        if not commits or commits[-1]["commit"] != commit:
            commits.append({"commit": commit, "from_epoch": epoch + 1})
        state.update(
            {
                "commits": commits,
                "epochs_done": epoch + 1,
                "iterations_done": (epoch + 1) * self.steps_per_epoch,
                "train_seconds": self.previous_seconds + now - self.start,
                "epoch_seconds": epoch_seconds,
                "remaining_seconds": remaining,
                "finished": False,
            }
        )
        files.write_json(files.path(self.run_dir, files.RUN_FILE), state)
        if self.verbose and remaining is not None:
            print(
                f"{os.fspath(self.run_dir)}: epoch {epoch + 1} of {epochs} done; "
                f"{_duration(remaining)} left at this epoch's pace ({_duration(epoch_seconds)})"
            )


class TimeLimit(keras.callbacks.Callback):
    """Stops training at the end of the last epoch that fits before `deadline`.

    After each epoch, training stops when another epoch at that epoch's pace
    would end after `deadline` (a `clock()` time, `time.monotonic` by
    default). An epoch is never cut short: it is the unit a run resumes from,
    so the first epoch always runs. `stopped_epoch` is the number of epochs
    done when it stopped training, `None` while it has not.

    Example:

    >>> import time
    >>> TimeLimit(time.monotonic() + 3600).stopped_epoch is None
    True
    """

    def __init__(self, deadline: float, clock=time.monotonic):
        super().__init__()
        self.deadline = deadline
        self.clock = clock
        self.epoch_start = None
        self.stopped_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        epoch_seconds = now - self.epoch_start
        if now + epoch_seconds > self.deadline:
            self.model.stop_training = True
            self.stopped_epoch = epoch + 1


def _duration(seconds: float) -> str:
    """`seconds` as `"42 s"`, `"7.5 min"` or `"3.2 h"`."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


WANDB_INSTALL = "pip install keras_meta[wandb]"
WANDB_DEFAULT_PROJECT = "keras_meta"


class FinishWandb(keras.callbacks.Callback):
    """Ends the Weights & Biases run (`wandb.finish()`) when training ends.

    Example:

    >>> FinishWandb().run is None
    True
    """

    def __init__(self, run=None):
        super().__init__()
        self.run = run

    def on_train_end(self, logs=None):
        if self.run is not None:
            self.run.finish()


def require_wandb():
    """The `wandb` module; `RunError` naming the install command if it is missing.

    Example:

    >>> require_wandb()  # doctest: +SKIP
    """
    try:
        import wandb
    except ImportError:
        raise files.RunError(
            f"--wandb needs the wandb package, which is not installed: {WANDB_INSTALL}"
        ) from None
    return wandb


def wandb_callbacks(run_dir, config: RunConfig) -> list:
    """Starts (or, for a resumed run, continues) a Weights & Biases run and
    returns its Keras callbacks.

    The run is named after the run directory, records the configuration and
    writes its local files under `run_dir` (or `WANDB_DIR`); `WANDB_MODE=offline`
    logs without an account (`wandb sync` uploads later). Its id is kept in
    `run_dir/wandb_id`, so that resuming the training continues the same W&B
    run. `RunError` if the optional `wandb` package is missing.

    Example:

    >>> wandb_callbacks("runs/a", RunConfig(wandb=True))  # doctest: +SKIP
    """
    wandb = require_wandb()
    from wandb.integration.keras import WandbMetricsLogger

    id_file = files.path(run_dir, files.WANDB_ID_FILE)
    if os.path.exists(id_file):
        with open(id_file, encoding="utf-8") as f:
            run_id = f.read().strip()
    else:
        # W&B run ids: 8 characters of [a-z0-9].
        run_id = secrets.token_hex(4)
        with open(id_file, "w", encoding="utf-8") as f:
            f.write(run_id + "\n")
    run = wandb.init(
        project=config.wandb_project or WANDB_DEFAULT_PROJECT,
        name=os.path.basename(os.path.normpath(os.fspath(run_dir))),
        config=config.to_dict(),
        dir=os.environ.get("WANDB_DIR") or os.fspath(run_dir),
        id=run_id,
        resume="allow",
    )
    return [WandbMetricsLogger(log_freq="epoch"), FinishWandb(run)]


class SimulatedInterruption(KeyboardInterrupt):
    """Raised by the hidden `--fail-after-epochs` test flag."""


class FailAfterEpochs(keras.callbacks.Callback):
    """Interrupts training after a number of epochs (tests of resumption).

    Example:

    >>> FailAfterEpochs(2).epochs
    2
    """

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs
        self.seen = 0

    def on_epoch_end(self, epoch, logs=None):
        self.seen += 1
        if self.seen >= self.epochs:
            raise SimulatedInterruption(f"simulated interruption after epoch {epoch}")


class CrashAfterBatches(keras.callbacks.Callback):
    """Kills the process after a number of training batches (tests of a crash
    in the middle of an epoch: no exception, no clean-up, as when a machine
    is lost).

    Example:

    >>> CrashAfterBatches(3).batches
    3
    """

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


def run_callbacks(
    run_dir,
    config: RunConfig,
    val_episodes,
    start_epoch: int,
    backup=None,
    chief: bool = True,
    verbose=0,
    time_limit: TimeLimit | None = None,
) -> list:
    """The callbacks of a run's `fit`, resuming after `start_epoch` epochs.

    `backup` is the run's `keras.callbacks.BackupAndRestore` (by default one
    in `run_dir/backup`). A worker other than the chief (`chief=False`)
    writes nothing but its backup, and logs nothing to Weights & Biases.
    With `verbose`, each epoch ends with a line that estimates the time left.
    A `time_limit` callback comes after the backup (its epoch time includes
    the backup's) on every worker.
    """
    from keras_meta.callbacks import MetaEvaluation, ScalarLogger, tensorboard_installed

    if backup is None:
        backup = keras.callbacks.BackupAndRestore(
            files.path(run_dir, files.BACKUP_DIR), double_checkpoint=True, delete_checkpoint=False
        )
    limit = [time_limit] if time_limit is not None else []
    if not chief:
        # The validation results only serve the chief's files; it needs no
        # other worker for them (no collective op), so the others skip it.
        return [backup, *limit]
    monitor, mode = config.monitor
    done = files.read_history(run_dir).get(monitor, [])[:start_epoch] if start_epoch else []
    best = ((max if mode == "max" else min)(done)) if done else None
    log_dir = files.path(run_dir, files.LOG_DIR)
    if tensorboard_installed():
        tensorboard = keras.callbacks.TensorBoard(log_dir, write_graph=False, profile_batch=0)
    else:
        # keras.callbacks.TensorBoard needs the tensorboard package, which
        # TensorFlow no longer installs; the scalars are what a run needs.
        tensorboard = ScalarLogger(log_dir)
    previous = files.run_state(run_dir).get("train_seconds", 0.0) if start_epoch else 0.0
    _, steps = config.epochs_and_steps
    # After MetaEvaluation, so that they log the validation metrics too.
    wandb = wandb_callbacks(run_dir, config) if config.wandb else []
    # A run without validation (val_episodes=0) has no best epoch to keep.
    validated = [
        MetaEvaluation(val_episodes, num_episodes=config.val_episodes),
    ] if config.val_episodes else []
    best_checkpoint = [
        AtomicCheckpoint(files.path(run_dir, files.CHECKPOINTS["best"]), monitor, mode, best),
    ] if config.val_episodes else []
    return [
        *validated,
        AtomicCheckpoint(files.path(run_dir, files.CHECKPOINTS["final"])),
        *best_checkpoint,
        HistoryFile(files.path(run_dir, files.HISTORY_FILE)),
        tensorboard,
        *wandb,
        RunProgress(run_dir, steps, previous, verbose=verbose),
        # Last but the time limit, so that an epoch counts as done only once
        # everything above has recorded it. The backup is kept until run.json
        # says "finished".
        backup,
        *limit,
    ]
