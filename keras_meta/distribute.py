"""Training a learner with `tf.distribute`: on one machine or across workers.

Four pieces, which a training script (or `keras-meta train --strategy`) uses
in this order:

1. `make_strategy("none" | "mirrored" | "multi-worker")`: the strategy; the
   multi-worker one reads the cluster from the `TF_CONFIG` environment
   variable and must be made before any other TensorFlow op of the process.
2. `worker_backup(strategy, backup_dir)`: a `keras.callbacks.BackupAndRestore`
   that backs up at the end of each epoch into a directory of this worker.
3. `resume_step(strategy, backup, steps_per_epoch)`: the global step the
   backup resumes from (0 for a new run), the same on every worker.
4. `distribute_episodes(strategy, episodes, global_batch_size, initial_step)`:
   the episodes split between the replicas. Global batch `g` is episodes
   `g*B .. g*B + B-1` of the stream, whatever the strategy; input pipeline
   `p` of `P` (one per worker) takes the contiguous `p`-th `B/P` of it. So no
   two workers train on the same episode, the stream is the one a single
   process would see (deterministic per seed), and the meta-gradient (the
   mean over the global batch) is the single-process one.

docs/distributed.md has the commands for two machines and what a crash
loses. (The module is a little over 400 lines: the `TF_CONFIG` checks and the
Keras fix for multi-worker logs belong with the strategy they serve.)

Example (one process; the same script runs on each worker with
`make_strategy("multi-worker")`):

>>> import keras, keras_meta as km
>>> from keras_meta import distribute
>>> strategy = distribute.make_strategy("none")
>>> with strategy.scope():
...     net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
...     learner = km.MAML(net, inner_learning_rate=0.01, inner_steps=1)
...     learner.compile(optimizer="adam", loss="mse")
>>> data = distribute.distribute_episodes(strategy, km.data.sinusoid(seed=0), 4)
>>> history = learner.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import keras
import tensorflow as tf

from keras_meta import _keras_compat, validation

STRATEGIES = ("none", "mirrored", "multi-worker")


# ---------------------------------------------------------------------------
# Strategies.
# ---------------------------------------------------------------------------
def read_tf_config(text: str | None = None) -> dict:
    """Parses `TF_CONFIG`, or raises a `ValueError` that says what is wrong.

    Args:
        text: the JSON text; by default the `TF_CONFIG` environment variable.

    Returns:
        The configuration as a dict (`"cluster"`, `"task"`), checked.

    Example:

    >>> from keras_meta import distribute
    >>> config = distribute.read_tf_config(
    ...     '{"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]},'
    ...     ' "task": {"type": "worker", "index": 1}}')
    >>> len(config["cluster"]["worker"]), config["task"]["index"]
    (2, 1)
    """
    if text is None:
        text = os.environ.get("TF_CONFIG")
    example = (
        'e.g. TF_CONFIG=\'{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
        '"task": {"type": "worker", "index": 0}}\''
    )
    if not text:
        raise ValueError(
            "The multi-worker strategy reads the cluster from the TF_CONFIG environment "
            f"variable, which is not set; set it on each worker, {example}."
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG must be JSON ({example}); received {text!r} ({e}).") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ValueError(
            f'TF_CONFIG must have a "cluster" and a "task" object ({example}); received {text!r}.'
        )
    for job, addresses in cluster.items():
        if job not in ("chief", "worker"):
            raise ValueError(
                'TF_CONFIG\'s "cluster" may only have "chief" and "worker" jobs under '
                f"MultiWorkerMirroredStrategy; received the job {job!r}."
            )
        if (
            not isinstance(addresses, list)
            or not addresses
            or not all(isinstance(a, str) and ":" in a for a in addresses)
        ):
            raise ValueError(
                f'TF_CONFIG\'s cluster["{job}"] must be a non-empty list of "host:port" '
                f"strings; received {addresses!r}."
            )
    if "worker" not in cluster and "chief" not in cluster:
        raise ValueError(f'TF_CONFIG\'s "cluster" has no "worker" list ({example}).')
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster:
        raise ValueError(
            f"TF_CONFIG's task \"type\" must be one of the cluster's jobs {sorted(cluster)}; "
            f"received {kind!r}."
        )
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise ValueError(
            f'TF_CONFIG\'s task "index" must be an integer in [0, {len(cluster[kind])}) for '
            f'the {len(cluster[kind])} "{kind}" address(es); received {index!r}.'
        )
    return config


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy called `name`.

    Args:
        name: `"none"` (TensorFlow's default strategy: one device),
            `"mirrored"` (`MirroredStrategy`: every GPU of this machine, or
            its CPU) or `"multi-worker"` (`MultiWorkerMirroredStrategy`
            across the machines that the `TF_CONFIG` environment variable
            lists; CPU workers use ring all-reduce over gRPC).

    A multi-worker strategy must be made once per process, before any other
    TensorFlow op runs (TensorFlow configures its collectives at start-up);
    every worker blocks here until all workers of `TF_CONFIG` have started.

    Raises:
        ValueError: an unknown `name`, or (for `"multi-worker"`) a missing or
            invalid `TF_CONFIG`.

    Example:

    >>> from keras_meta import distribute
    >>> distribute.make_strategy("none").num_replicas_in_sync
    1
    """
    validation.check_choice("name", name, STRATEGIES)
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    read_tf_config()
    _keras_compat.patch_multi_worker_scalar_logs()
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as e:
        raise RuntimeError(
            "Could not start MultiWorkerMirroredStrategy: it must be made before any "
            "other TensorFlow op of the process (make it first thing, and only once). "
            f"TensorFlow said: {e}"
        ) from e


def worker_index(strategy: tf.distribute.Strategy) -> int:
    """This process's worker index (0 without a multi-worker strategy).

    Example:

    >>> from keras_meta import distribute
    >>> distribute.worker_index(distribute.make_strategy("none"))
    0
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_id = getattr(resolver, "task_id", None) if resolver is not None else None
    return int(task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's shared files (models, logs).

    Every worker runs the same training; only the chief (worker 0, or the
    `"chief"` task) should write the run directory, so that two workers
    never write the same file.

    Example:

    >>> from keras_meta import distribute
    >>> distribute.is_chief(distribute.make_strategy("none"))
    True
    """
    extended = getattr(strategy, "extended", None)
    return bool(getattr(extended, "should_checkpoint", True))


def _num_workers(strategy) -> int:
    extended = strategy.extended
    return int(getattr(extended, "_num_workers", 1) or 1)


# ---------------------------------------------------------------------------
# Episodes.
# ---------------------------------------------------------------------------
def check_global_batch_size(strategy: tf.distribute.Strategy, global_batch_size: int) -> int:
    """Returns `global_batch_size`, or raises unless every replica gets the same share.

    Example:

    >>> from keras_meta import distribute
    >>> distribute.check_global_batch_size(distribute.make_strategy("none"), 4)
    4
    """
    global_batch_size = validation.check_int("global_batch_size", global_batch_size)
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ValueError(
            "`global_batch_size` must be a multiple of the number of replicas "
            f"({replicas}: {_num_workers(strategy)} worker(s)), so that each replica "
            f"trains on the same number of episodes; received global_batch_size="
            f"{global_batch_size}."
        )
    return global_batch_size


def _check_seeded(dataset, strategy):
    config = getattr(dataset, "episode_config", None)
    if _num_workers(strategy) > 1 and isinstance(config, dict) and config.get("seed", 0) is None:
        raise ValueError(
            "Multi-worker training needs a seeded episode stream (every worker builds the "
            "same stream and keeps its share); received a dataset whose "
            "episode_config has seed=None. Pass seed=... to the sampler."
        )


def _share_of_batch(start: int, size: int):
    def take(*elements):
        sliced = tf.nest.map_structure(lambda t: t[start : start + size], elements)
        return sliced if len(sliced) > 1 else sliced[0]

    return take


def distribute_episodes(
    strategy: tf.distribute.Strategy,
    episodes: tf.data.Dataset | Callable[[], tf.data.Dataset],
    global_batch_size: int,
    initial_step: int = 0,
):
    """Batches a stream of single episodes and splits each batch between the replicas.

    Global batch `g` holds episodes `g*B .. g*B + B-1` of `episodes` (`B` =
    `global_batch_size`), starting at `g = initial_step`. Input pipeline `p`
    of `P` (one per worker) takes the `p`-th contiguous `B/P` episodes of
    each global batch and splits them between its local replicas; no two
    replicas get the same episode, and together they train on exactly the
    batch that one process would. Each worker builds the whole stream and
    keeps its share, so the stream must be the same on every worker: seed
    the sampler.

    Args:
        strategy: the strategy the learner was built under.
        episodes: a `tf.data.Dataset` of single (unbatched) episodes, such as
            `km.data.sinusoid(seed=0)` or `EpisodeSampler(...).dataset()`, or
            a function of no arguments that returns one (called on each
            worker).
        global_batch_size: episodes per training step across all replicas; a
            multiple of `strategy.num_replicas_in_sync`.
        initial_step: the global step at which the stream starts, e.g.
            `resume_step(...)` when a run resumes from a backup; the skipped
            episodes are sampled and dropped, which takes time on long runs.

    Returns:
        A dataset for `learner.fit`: the batched dataset itself under the
        default strategy, else a `tf.distribute` distributed dataset.

    Example:

    >>> import keras_meta as km
    >>> from keras_meta import distribute
    >>> strategy = distribute.make_strategy("none")
    >>> data = distribute.distribute_episodes(strategy, km.data.sinusoid(seed=0), 4)
    >>> x, y = next(iter(data))
    >>> tuple(x["support_x"].shape)
    (4, 10, 1)
    """
    global_batch_size = check_global_batch_size(strategy, global_batch_size)
    initial_step = validation.check_int("initial_step", initial_step, minimum=0)
    if isinstance(episodes, tf.data.Dataset):
        _check_seeded(episodes, strategy)
        dataset, make = episodes, None
    else:
        validation.check_callable("episodes", episodes)
        dataset, make = None, episodes

    def batches(pipelines: int, pipeline: int, per_replica: int) -> tf.data.Dataset:
        ds = dataset if make is None else make()
        if not isinstance(ds, tf.data.Dataset):
            raise TypeError(
                "`episodes` must be a tf.data.Dataset of single episodes or a function that "
                f"returns one; the function returned {type(ds).__name__}."
            )
        if make is not None:
            _check_seeded(ds, strategy)
        ds = ds.batch(global_batch_size, drop_remainder=True)
        if initial_step:
            ds = ds.skip(initial_step)
        share = global_batch_size // pipelines
        if pipelines > 1:
            ds = ds.map(_share_of_batch(pipeline * share, share))
        if per_replica != share:
            ds = ds.rebatch(per_replica, drop_remainder=True)
        return ds.prefetch(tf.data.AUTOTUNE)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        return batches(
            context.num_input_pipelines,
            context.input_pipeline_id,
            context.get_per_replica_batch_size(global_batch_size),
        )

    return strategy.distribute_datasets_from_function(dataset_fn)


# ---------------------------------------------------------------------------
# Backups.
# ---------------------------------------------------------------------------
def worker_backup(
    strategy: tf.distribute.Strategy, backup_dir: str | os.PathLike
) -> keras.callbacks.BackupAndRestore:
    """A `keras.callbacks.BackupAndRestore` for this worker, saving at each epoch end.

    Every worker backs up its own copy of the training state (the same
    weights: they are in sync after every step), into `backup_dir` under the
    default and mirrored strategies and into `backup_dir/worker-<index>`
    (`chief-0` for a chief task) under a multi-worker one, so that workers
    sharing a file system never write the same file. Backups are made at
    epoch ends only: Keras restores the epoch of a backup, not the batch, so
    a mid-epoch backup would replay part of an epoch; choose
    `steps_per_epoch` to set how much a crash loses. `double_checkpoint=True`
    keeps the previous backup beside the latest, for a crash while writing.

    Example:

    >>> from keras_meta import distribute
    >>> backup = distribute.worker_backup(distribute.make_strategy("none"), "run/backup")
    >>> backup.backup_dir
    'run/backup'
    """
    backup_dir = os.fspath(backup_dir)
    if _num_workers(strategy) > 1:
        # The task type too: a "chief" and "worker" 0 both have index 0.
        task_type = getattr(strategy.cluster_resolver, "task_type", None) or "worker"
        backup_dir = os.path.join(backup_dir, f"{task_type}-{worker_index(strategy)}")
    return keras.callbacks.BackupAndRestore(backup_dir, save_freq="epoch", double_checkpoint=True)


def _backup_epoch(path: str) -> int | None:
    """The epoch a backup's metadata file records, or None without one."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read()
    try:
        return int(json.loads(text)["epoch"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ValueError(
            f"The backup's metadata file {path} is unreadable (received {text[:80]!r}); "
            f"delete {os.path.dirname(path)} to start the run again."
        ) from None


def _gather_across_workers(strategy, values: list[int]) -> list[list[int]]:
    """Every worker's `values` (one row per replica), on every worker."""
    local = tf.constant([values], tf.float32)
    gathered = strategy.gather(strategy.run(lambda: tf.identity(local)), axis=0)
    return [[int(v) for v in row] for row in gathered.numpy()]


def resume_step(
    strategy: tf.distribute.Strategy,
    backup: keras.callbacks.BackupAndRestore,
    steps_per_epoch: int,
) -> int:
    """The global step at which `backup` resumes training: epoch * steps_per_epoch.

    0 when there is no backup yet. Pass it as `initial_step` to
    `distribute_episodes`, so that the resumed run trains on the episodes
    the interrupted one had not reached yet. Call it on every worker, before
    `fit`: under a multi-worker strategy the workers compare their backups
    (a collective op), and when a crash during the epoch-end backup left
    them one epoch apart, the workers ahead go back to their previous
    backup (kept by `double_checkpoint`), so that all resume from the same
    epoch; when that is impossible, every worker raises the same error.

    Example:

    >>> from keras_meta import distribute
    >>> strategy = distribute.make_strategy("none")
    >>> backup = distribute.worker_backup(strategy, "run/backup")
    >>> distribute.resume_step(strategy, backup, steps_per_epoch=100)
    0
    """
    steps_per_epoch = validation.check_int("steps_per_epoch", steps_per_epoch)
    latest = _backup_epoch(backup._training_metadata_path)
    if _num_workers(strategy) == 1:
        return (latest or 0) * steps_per_epoch
    previous = _backup_epoch(backup._prev_training_metadata_path)
    # -1: no backup (a new run, or a worker whose disk was replaced).
    rows = _gather_across_workers(
        strategy, [-1 if latest is None else latest, -1 if previous is None else previous]
    )
    target = min(row[0] for row in rows)
    if all(row[0] == target for row in rows):
        return max(target, 0) * steps_per_epoch
    if target < 0 or not all(target in row for row in rows):
        raise ValueError(
            "The workers' backups are of different epochs and cannot be brought to the "
            f"same one (latest and previous epoch per replica, -1 for none: {rows}); "
            "copy one worker's backup directory to every worker, or delete them all "
            "to start again."
        )
    if latest != target:  # this worker is ahead: its previous backup is the common one
        for path in (backup._weights_path, backup._training_metadata_path):
            os.replace(f"{path}.bkp", path)
    return target * steps_per_epoch
