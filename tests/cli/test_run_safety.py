"""Crash safety of run directories and the CLI's argument errors (issue 11):
a second process, a corrupt backup, a crash at the end of training, a crash
between history.csv and the backup, invalid counts, unwritable outputs."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from cli_helpers import _error, _train_args

from keras_meta.cli import main
from keras_meta.experiments import run_dir

BACKUP_FILES = ("latest.weights.h5", "training_metadata.json")


def _history_rows(run):
    """The raw rows of history.csv (read_history would hide a duplicate)."""
    lines = (run / "history.csv").read_text().strip().splitlines()
    return [line.split(",")[0] for line in lines[1:]]


def _assert_same_weights(run, reference):
    resumed = keras.models.load_model(run / "learner.keras")
    expected = keras.models.load_model(reference / "learner.keras")
    assert int(resumed.optimizer.iterations) == 6
    for a, b in zip(resumed.get_weights(), expected.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture
def interrupted(interrupted_copy):
    """A run interrupted after 2 of its 3 epochs: the backup holds epoch 2 and,
    as the previous copy, epoch 1 (a private copy of the session's run)."""
    out = interrupted_copy()
    backup = out / "backup"
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 2
    assert json.loads((backup / "training_metadata.json.bkp").read_text())["epoch"] == 1
    return out


@pytest.mark.parametrize("corrupt", BACKUP_FILES)
def test_a_corrupt_backup_resumes_from_the_previous_epoch(
    folders, trained_run, interrupted, corrupt, capsys
):
    _, data, _ = folders
    file = interrupted / "backup" / corrupt
    file.write_bytes(file.read_bytes()[: len(file.read_bytes()) // 2])  # cut short by a crash
    capsys.readouterr()
    assert main(_train_args(data, interrupted, "--verbose", "1")) == 0
    out = capsys.readouterr().out
    assert f"The latest training backup is unreadable ({corrupt}:" in out
    assert "resuming from the previous epoch's backup" in out
    # Epoch 2 was trained again from epoch 1's state: the result is that of
    # the uninterrupted run, and history.csv has one row per epoch.
    _assert_same_weights(interrupted, trained_run)
    assert _history_rows(interrupted) == ["0", "1", "2"]
    assert not (interrupted / "backup").exists()


def test_a_backup_without_a_readable_copy_is_a_one_line_error(folders, interrupted, capsys):
    _, data, _ = folders
    for name in BACKUP_FILES:
        for file in (interrupted / "backup" / name, interrupted / "backup" / f"{name}.bkp"):
            file.write_bytes(file.read_bytes()[:20])
    line = _error(capsys, _train_args(data, interrupted))
    assert "training backup" in line and "unreadable" in line and "delete" in line
    assert str(interrupted / "backup") in line


def test_a_crash_between_history_and_backup_leaves_one_row_per_epoch(
    folders, trained_run, interrupted
):
    _, data, _ = folders
    # history.csv recorded epoch 2 (rows 0 and 1), the backup did not: it
    # is as after epoch 1.
    backup = interrupted / "backup"
    for name in BACKUP_FILES:
        shutil.copyfile(backup / f"{name}.bkp", backup / name)
    assert _history_rows(interrupted) == ["0", "1"]
    assert main(_train_args(data, interrupted)) == 0
    assert _history_rows(interrupted) == ["0", "1", "2"]
    _assert_same_weights(interrupted, trained_run)


def test_a_crash_after_the_backup_is_deleted_does_not_train_again(
    folders, trained_run, tmp_path, capsys
):
    _, data, _ = folders
    out = tmp_path / "late_crash"
    shutil.copytree(trained_run, out)
    # As left by a crash after the backup was deleted, before run.json said
    # "finished"; the config's data directory is the same.
    state = json.loads((out / "run.json").read_text())
    state["finished"] = False
    del state["finished_at"]
    (out / "run.json").write_text(json.dumps(state))
    before = (out / "learner.keras").stat().st_mtime_ns
    assert main(_train_args(data, out)) == 0
    assert json.loads((out / "run.json").read_text())["finished"]
    assert (out / "learner.keras").stat().st_mtime_ns == before  # not trained again
    assert _history_rows(out) == ["0", "1", "2"]
    # Epochs recorded without the backup to resume them: an error, not a new run.
    state.update(epochs_done=2, iterations_done=4)
    (out / "run.json").write_text(json.dumps(state))
    line = _error(capsys, _train_args(data, out))
    assert "records 2 trained epochs but the backup is missing" in line
    assert (out / "learner.keras").stat().st_mtime_ns == before


def test_a_crash_after_training_before_finishing_completes_without_training(folders, tmp_path):
    _, data, _ = folders
    out = tmp_path / "all_epochs"
    # Interrupted after its last epoch: the backup says 3 of 3.
    assert main(_train_args(data, out, "--fail-after-epochs", "3")) == 130
    before = (out / "learner.keras").stat().st_mtime_ns
    assert main(_train_args(data, out)) == 0
    assert json.loads((out / "run.json").read_text())["finished"]
    assert (out / "learner.keras").stat().st_mtime_ns == before
    assert not (out / "backup").exists() and (out / "curves.png").exists()


HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys, time
    f = open(os.path.join(sys.argv[1], "lock"), "a+")
    fcntl.flock(f, fcntl.LOCK_EX)
    f.seek(0); f.truncate(); f.write(str(os.getpid())); f.flush()
    print("locked", flush=True)
    time.sleep(600)
    """
)


def test_a_locked_run_directory_is_refused_naming_the_holder(
    folders, trained_run, tmp_path, capsys
):
    _, data, _ = folders
    out = tmp_path / "locked"
    out.mkdir()
    holders = []
    try:
        for run in (out, trained_run):
            holder = subprocess.Popen(
                [sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True
            )
            holders.append(holder)
            assert holder.stdout.readline().strip() == "locked"
        line = _error(capsys, _train_args(data, out))
        assert f"is in use by another process (pid {holders[0].pid})" in line
        assert not (out / "config.json").exists()
        line = _error(capsys, ["evaluate", str(trained_run), "--verbose", "0"])
        assert f"pid {holders[1].pid}" in line
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    # Released with its process: the run directory can be used again.
    assert main(["evaluate", str(trained_run), "--episodes", "2", "--verbose", "0"]) == 0


def test_atomic_writes_keep_the_old_file_when_writing_fails(tmp_path):
    file = tmp_path / "state.json"
    run_dir.write_json(str(file), {"epochs_done": 1})
    with pytest.raises(TypeError):
        run_dir.write_json(str(file), {"epochs_done": object()})
    assert json.loads(file.read_text()) == {"epochs_done": 1}
    assert os.listdir(tmp_path) == ["state.json"]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["evaluate", "RUN", "--episodes", "-5"], "`episodes` must be an integer >= 1"),
        (["evaluate", "RUN", "--episodes", "0"], "received episodes=0"),
        (["evaluate", "RUN", "--inner-steps", "0"], "received inner_steps=0"),
        (["adapt", "RUN", "--support", "S", "--out", "O", "--steps", "0"], "received steps=0"),
        (["demo", "--iterations", "0"], "received iterations=0"),
        (["demo", "--eval-tasks", "1"], "`eval_tasks` must be an integer >= 2"),
        (["evaluate", "RUN", "--episodes", "many"], "received 'many'"),
    ],
)
def test_invalid_counts_are_one_line_errors(trained_run, argv, expected, capsys):
    argv = [str(trained_run) if a == "RUN" else a for a in argv]
    line = _error(capsys, argv)
    assert expected in line


def test_unwritable_outputs_are_one_line_errors(folders, trained_run, tmp_path, capsys):
    _, data, support = folders
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    out = blocker / "out"
    line = _error(capsys, _train_args(data, out))
    assert f"cannot write to --out {str(out)!r}" in line
    line = _error(capsys, ["adapt", str(trained_run), "--support", str(support), "--out", str(out)])
    assert f"cannot write to --out {str(out)!r}" in line
    line = _error(capsys, ["demo", "--iterations", "2", "--out", str(out)])
    assert f"cannot write to --out {str(out)!r}" in line
