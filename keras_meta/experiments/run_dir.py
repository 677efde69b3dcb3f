"""The files of a run directory.

```
config.json      the resolved configuration (`RunConfig.to_dict()`), the
                 command and the machine it started on
run.json         progress: epochs and iterations done, training wall time,
                 the commits of the code that trained it
learner.keras    the learner after the last completed epoch
best.keras       the learner of the best validation epoch
history.csv      per-epoch logs (CSVLogger)
logs/            TensorBoard logs
backup/          BackupAndRestore state (two epochs) until the run is finished
                 (backup/worker-<i>/ per worker under `--strategy multi-worker`)
curves.png       learning curves; adaptation.png for regression
evaluation.json  the last `evaluate` results
lock             the pid of the process that holds the directory
```

Under `--strategy multi-worker` only the chief writes these files and holds
`lock`; each other worker writes only its backup `backup/worker-<i>/` and
holds the lock of that folder (`backup/worker-<i>/lock`), so that workers on
one machine may share the run directory.

Crash safety: `train` and `evaluate` hold an exclusive lock on the directory
(`fcntl.flock` on `lock`; the lock goes with the process, however it ends), so
a second process writing into it stops with an error naming the holder. Every
file above is written to a temporary name and renamed into place, so a crash
leaves the previous version or the new one, never half a file; the exceptions
are `logs/` (TensorBoard appends to its event files) and `backup/`, which Keras
writes in place but keeps twice (`BackupAndRestore(double_checkpoint=True)`):
when the latest copy is unreadable, training resumes from the previous epoch's.

Example:

>>> os.path.basename(path("runs/sine", CONFIG_FILE))
'config.json'
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import shutil
import tempfile

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not protected there.
    fcntl = None

from keras_meta.experiments.config import RunConfig

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
HISTORY_FILE = "history.csv"
EVALUATION_FILE = "evaluation.json"
CHECKPOINTS = {"final": "learner.keras", "best": "best.keras"}
BACKUP_DIR = "backup"
LOG_DIR = "logs"
LOCK_FILE = "lock"
# The Weights & Biases run of --wandb, continued when the run resumes.
WANDB_ID_FILE = "wandb_id"
# BackupAndRestore's files, and their previous-epoch copies (double_checkpoint).
BACKUP_WEIGHTS = "latest.weights.h5"
BACKUP_METADATA = "training_metadata.json"
PREVIOUS_SUFFIX = ".bkp"


class RunError(ValueError):
    """A problem with the user's arguments, data or run directory.

    The CLI prints its message as a one-line error, without a traceback.

    Example:

    >>> str(RunError("no such run"))
    'no such run'
    """


def path(run_dir, name: str) -> str:
    """The path of file `name` of a run directory."""
    return os.path.join(os.fspath(run_dir), name)


def now() -> str:
    """The local time in ISO format, to the second, for the records."""
    return datetime.datetime.now().isoformat(timespec="seconds")


def machine_info() -> dict:
    """The machine and software a run uses, for configuration files and tables.

    Example:

    >>> sorted(machine_info())[:3]
    ['cpu_count', 'devices', 'keras']
    """
    import keras
    import tensorflow as tf

    from keras_meta import __version__
    from keras_meta._backend import onednn_enabled
    from keras_meta._source import source_commit

    devices = sorted({d.device_type for d in tf.config.list_physical_devices()})
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "devices": devices,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        # Its kernels give slightly different floats, and other speeds.
        "onednn": onednn_enabled(),
        "keras": keras.__version__,
        "keras_meta": __version__,
        "keras_meta_commit": source_commit(),
    }


@contextlib.contextmanager
def atomic(file: str):
    """Yields a temporary path beside `file` (same extension) to write; renames
    it to `file` when the block succeeds, removes it when it fails.

    Example:

    >>> with atomic("notes.txt") as tmp:
    ...     _ = open(tmp, "w").write("done")
    >>> open("notes.txt").read()
    'done'
    """
    root, ext = os.path.splitext(file)
    tmp = f"{root}.tmp{os.getpid()}{ext}"
    try:
        yield tmp
        os.replace(tmp, file)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(file: str, data) -> None:
    """Writes `data` as JSON, atomically: a reader sees the old file or the new one.

    Example:

    >>> write_json("state.json", {"epochs_done": 2})
    >>> read_json("state.json")
    {'epochs_done': 2}
    """
    with atomic(file) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")


def writable_dir(directory, option: str = "--out") -> str:
    """Creates `directory` if needed and checks that files can be written in it.

    Raises `RunError` naming `option` otherwise.

    Example:

    >>> writable_dir("new_folder")
    'new_folder'
    """
    directory = os.fspath(directory)
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise RunError(f"cannot write to {option} {directory!r}: {reason}") from None
    return directory


@contextlib.contextmanager
def locked(run_dir, option: str = "--out"):
    """Holds the exclusive lock of a run directory (created if needed).

    Raises `RunError` naming the holder's pid when another process holds it,
    or naming `option` when the directory cannot be written.

    Example:

    >>> with locked("runs/a"):
    ...     open("runs/a/lock").read() == str(os.getpid())
    True
    """
    run_dir = writable_dir(run_dir, option)
    if fcntl is None:
        yield
        return
    with open(path(run_dir, LOCK_FILE), "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise RunError(
                f"{run_dir!r} is in use by another process (pid {holder}); wait for it "
                "to end or use another directory"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield


def read_json(file: str):
    """The JSON content of `file`; a `RunError` if it is not valid JSON."""
    try:
        with open(file, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as error:
        raise RunError(f"{file} is not valid JSON ({error}); was it cut short?") from None


def run_state(run_dir) -> dict:
    """The progress record (`run.json`) of a run directory, or `{}`.

    Example:

    >>> run_state("no_such_run")
    {}
    """
    file = path(run_dir, RUN_FILE)
    return read_json(file) if os.path.exists(file) else {}


def has_config(run_dir) -> bool:
    """Whether `run_dir` holds a run (a `config.json`)."""
    return os.path.exists(path(run_dir, CONFIG_FILE))


def run_config(run_dir) -> RunConfig:
    """The configuration stored in a run directory's `config.json`.

    Example:

    >>> run_config("runs/sine").algorithm  # doctest: +SKIP
    'maml'
    """
    file = path(run_dir, CONFIG_FILE)
    if not os.path.exists(file):
        raise RunError(f"{os.fspath(run_dir)!r} is not a run directory (no {CONFIG_FILE})")
    stored = read_json(file)
    try:
        return RunConfig.from_dict(stored["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise RunError(f"invalid {file}: {error}") from None


def write_config(run_dir, config: RunConfig, command=None) -> None:
    """Writes `config.json` of a new run."""
    epochs, steps = config.epochs_and_steps
    write_json(
        path(run_dir, CONFIG_FILE),
        {
            "config": config.to_dict(),
            "epochs": epochs,
            "steps_per_epoch": steps,
            "iterations": epochs * steps,
            "command": command,
            "started": now(),
            "machine": machine_info(),
        },
    )


def _backup_problem(weights: str, metadata: str) -> str | None:
    """Why a backup (weights and metadata files) is unusable, or `None`."""
    import h5py

    try:
        with open(metadata, encoding="utf-8") as f:
            epoch = json.load(f)["epoch"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"no epoch count: {epoch!r}")
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{os.path.basename(metadata)}: {error}"
    try:
        with h5py.File(weights, "r") as f:
            # Reading every array finds a file cut short after its header.
            f.visititems(lambda _, item: item[()] if isinstance(item, h5py.Dataset) else None)
    except (OSError, ValueError, KeyError) as error:
        return f"{os.path.basename(weights)}: {error}"
    return None


def backup_epoch(run_dir, say=print, backup_dir=None) -> int:
    """Epochs completed according to the backup (`0`: no backup).

    `backup_dir` is the backup's folder when it is not `run_dir/backup`
    (a worker's own folder under a multi-worker strategy).

    When the latest backup is unreadable (a crash while Keras wrote it), the
    previous epoch's copy replaces it and `say` reports it; when both are
    unreadable, a `RunError` says how to start over.

    Example:

    >>> backup_epoch("no_such_run")
    0
    """
    backup = path(run_dir, BACKUP_DIR) if backup_dir is None else os.fspath(backup_dir)
    weights = os.path.join(backup, BACKUP_WEIGHTS)
    metadata = os.path.join(backup, BACKUP_METADATA)
    if not os.path.exists(metadata) and not os.path.exists(weights):
        return 0
    problem = _backup_problem(weights, metadata)
    if problem is not None:
        previous = [f + PREVIOUS_SUFFIX for f in (weights, metadata)]
        if not all(os.path.exists(f) for f in previous) or _backup_problem(*previous):
            raise RunError(
                f"the training backup in {backup!r} is unreadable ({problem}) and has no "
                f"readable previous copy; delete {backup!r} to train again from the start"
            )
        for copy, file in zip(previous, (weights, metadata)):
            with atomic(file) as tmp:
                shutil.copyfile(copy, tmp)
        say(
            f"The latest training backup is unreadable ({problem}); resuming from the "
            "previous epoch's backup."
        )
    with open(metadata, encoding="utf-8") as f:
        return int(json.load(f)["epoch"])


def remove_backup(run_dir, backup_dir=None) -> None:
    """Deletes `backup/` (once `run.json` records the run as finished).

    With `backup_dir` (one worker's folder under `backup/`), deletes that
    folder, and `backup/` once no other worker's folder is left in it.
    """
    backup = path(run_dir, BACKUP_DIR)
    if backup_dir is None:
        shutil.rmtree(backup, ignore_errors=True)
        return
    shutil.rmtree(backup_dir, ignore_errors=True)
    with contextlib.suppress(OSError):  # another worker's backup is still there
        os.rmdir(backup)


def read_history(run_dir) -> dict:
    """The columns of `history.csv` (`{}` before the first epoch)."""
    from keras_meta.plots import read_history as read

    file = path(run_dir, HISTORY_FILE)
    return read(file) if os.path.exists(file) else {}


def checkpoint_path(run_dir, checkpoint: str) -> str:
    """The learner file of `checkpoint` ("final" or "best"); the final one when
    no epoch was ever the best yet.

    Example:

    >>> os.path.basename(checkpoint_path("no_such_run", "best"))
    'learner.keras'
    """
    file = path(run_dir, CHECKPOINTS[checkpoint])
    if not os.path.exists(file) and checkpoint == "best":
        file = path(run_dir, CHECKPOINTS["final"])
    return file
