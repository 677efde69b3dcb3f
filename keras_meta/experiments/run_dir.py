"""The files of a run directory.

```
config.json      the resolved configuration (`RunConfig.to_dict()`), the
                 command and the machine it started on
run.json         progress: epochs and iterations done, training wall time
learner.keras    the learner after the last completed epoch
best.keras       the learner of the best validation epoch
history.csv      per-epoch logs (CSVLogger)
logs/            TensorBoard logs
backup/          BackupAndRestore state while training is unfinished
curves.png       learning curves; adaptation.png for regression
evaluation.json  the last `evaluate` results
```

Example:

>>> os.path.basename(path("runs/sine", CONFIG_FILE))
'config.json'
"""

from __future__ import annotations

import datetime
import json
import os
import platform

from keras_meta.experiments.config import RunConfig

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
HISTORY_FILE = "history.csv"
EVALUATION_FILE = "evaluation.json"
CHECKPOINTS = {"final": "learner.keras", "best": "best.keras"}
BACKUP_DIR = "backup"
LOG_DIR = "logs"


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


def write_json(file: str, data) -> None:
    """Writes `data` as JSON, atomically: a reader sees the old file or the new one.

    Example:

    >>> write_json("state.json", {"epochs_done": 2})
    >>> read_json("state.json")
    {'epochs_done': 2}
    """
    tmp = f"{file}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, file)


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


def backup_epoch(run_dir) -> int:
    """Epochs completed according to the backup (`0`: no backup)."""
    file = os.path.join(path(run_dir, BACKUP_DIR), "training_metadata.json")
    if not os.path.exists(file):
        return 0
    return int(read_json(file).get("epoch", 0))


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
