"""`keras-meta train --strategy {none,mirrored,multi-worker}`.

References: a `--strategy none` run of the same command (the single-process
meta-gradient of the same global batch). The multi-worker run starts two
workers of `python -m keras_meta.cli` on 127.0.0.1 (free ports, one
`TF_CONFIG` each, CPU collectives), as tests/distribute/test_multi_worker.py
does with its own script.
"""

import contextlib
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from cli_helpers import _error
from helpers import free_ports, start_loopback_worker, stop_workers

from keras_meta import distribute
from keras_meta.cli import STRATEGIES, main

TIMEOUT = 420  # seconds for one run of the two workers


def _sine_args(out, *extra):
    return [
        "train", "--protocol", "maml-sinusoid", "--iterations", "6", "--steps-per-epoch", "2",
        "--meta-batch-size", "4", "--val-episodes", "4", "--seed", "3",
        "--out", str(out), "--verbose", "0", *extra,
    ]  # fmt: skip


def _weights(run):
    return keras.models.load_model(run / "learner.keras").get_weights()


def _assert_same_weights(run, reference, rtol):
    got, expected = _weights(run), _weights(reference)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-7)


def test_the_cli_choices_are_the_library_strategies():
    assert STRATEGIES == distribute.STRATEGIES


@pytest.mark.slow
def test_mirrored_trains_as_none_and_resumes_a_run_of_another_strategy(tmp_path, capsys):
    assert main(_sine_args(tmp_path / "none")) == 0
    assert main(_sine_args(tmp_path / "mirrored", "--strategy", "mirrored")) == 0
    _assert_same_weights(tmp_path / "mirrored", tmp_path / "none", rtol=1e-6)
    # Interrupted without a strategy, resumed under another: the strategy is
    # not part of the configuration, and the sinusoid stream continues where
    # it stopped, so the run ends on the uninterrupted weights.
    resumed = tmp_path / "resumed"
    assert main(_sine_args(resumed, "--fail-after-epochs", "1")) == 130
    assert json.loads((resumed / "run.json").read_text())["epochs_done"] == 1
    assert main(_sine_args(resumed, "--strategy", "mirrored")) == 0
    assert json.loads((resumed / "run.json").read_text())["finished"]
    assert not (resumed / "backup").exists()
    _assert_same_weights(resumed, tmp_path / "none", rtol=1e-6)
    capsys.readouterr()


@pytest.mark.parametrize(
    "tf_config, expected",
    [
        (None, "TF_CONFIG environment variable, which is not set"),
        ("{not json", "TF_CONFIG must be JSON"),
        (
            '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
            'index" must be an integer in [0, 1)',
        ),
    ],
)
def test_a_missing_or_invalid_tf_config_is_a_one_line_error(
    tmp_path, capsys, monkeypatch, tf_config, expected
):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    out = tmp_path / "run"
    line = _error(capsys, _sine_args(out, "--strategy", "multi-worker"))
    assert line.startswith("keras-meta train: error:") and expected in line
    assert not out.exists()


def test_a_global_batch_that_does_not_divide_between_the_workers_is_an_error(
    tmp_path, capsys, monkeypatch
):
    # Checked before the strategy connects to the (absent) other worker.
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})
    )
    out = tmp_path / "run"
    args = _sine_args(out, "--strategy", "multi-worker")
    args[args.index("--meta-batch-size") + 1] = "3"
    line = _error(capsys, args)
    assert "--meta-batch-size" in line and "multiple of the number of replicas (2" in line
    assert "received 3" in line
    assert not out.exists()


# ---------------------------------------------------------------------------
# Two workers on loopback.
# ---------------------------------------------------------------------------
@contextlib.contextmanager
def _workers(outs, logs):
    """Starts one `keras-meta train --strategy multi-worker` per entry of `outs`;
    kills whatever is still running on the way out."""
    ports = free_ports(len(outs))
    procs = []
    try:
        for index, out in enumerate(outs):
            command = [sys.executable, "-m", "keras_meta.cli",
                       *_sine_args(out, "--strategy", "multi-worker")]  # fmt: skip
            procs.append(start_loopback_worker(command, ports, index, logs / f"worker-{index}.txt"))
        yield procs
    finally:
        stop_workers(procs)


def _wait(procs, logs):
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(TIMEOUT))
        except subprocess.TimeoutExpired:
            codes.append("timeout")
    text = "\n".join(f"--- {f.name}\n{f.read_text()[-3000:]}" for f in sorted(logs.iterdir()))
    assert codes == [0] * len(procs), f"exit codes {codes}\n{text}"


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["shared-out", "out-per-worker"])
def test_two_loopback_workers_train_the_single_process_learner(tmp_path, capsys, layout):
    logs = tmp_path / "logs"
    logs.mkdir()
    chief = tmp_path / "run"
    # One machine's workers may share --out (each locks what it writes);
    # on two machines each has its own.
    outs = [chief, chief if layout == "shared-out" else tmp_path / "worker-1"]
    with _workers(outs, logs) as procs:
        _wait(procs, logs)
    names = {p.name for p in chief.iterdir()}
    assert {"config.json", "run.json", "history.csv", "learner.keras", "best.keras",
            "curves.png", "adaptation.png", "logs", "lock"} <= names  # fmt: skip
    assert "backup" not in names  # both workers' backups deleted once finished
    assert json.loads((chief / "run.json").read_text())["epochs_done"] == 3
    assert json.loads((chief / "run.json").read_text())["finished"]
    assert len((chief / "history.csv").read_text().splitlines()) == 1 + 3
    if layout == "out-per-worker":
        assert list(outs[1].iterdir()) == []  # the other worker wrote only its backup
    reference = tmp_path / "reference"
    assert main(_sine_args(reference)) == 0
    _assert_same_weights(chief, reference, rtol=1e-5)
    capsys.readouterr()
