"""The run options of `keras-meta train`: --mixed-precision, --jit, --wandb and --threads."""

import json
import struct
import subprocess
import sys

import keras
import numpy as np
import pytest
from cli_helpers import _error, _sinusoid_args

from keras_meta.cli import main
from keras_meta.experiments import RunConfig
from keras_meta.experiments.builders import build_learner


def _final_weights(out):
    return keras.models.load_model(out / "learner.keras").model.get_weights()


@pytest.mark.slow
def test_jit_trains_the_same_weights(tmp_path):
    assert main(_sinusoid_args(tmp_path / "plain")) == 0
    assert main(_sinusoid_args(tmp_path / "jit", "--jit")) == 0
    config = json.loads((tmp_path / "jit" / "config.json").read_text())["config"]
    assert config["jit_compile"] is True
    for a, b in zip(_final_weights(tmp_path / "plain"), _final_weights(tmp_path / "jit")):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_builds_the_model_under_the_policy_only(policy):
    learner = build_learner(RunConfig.from_protocol("maml-sinusoid", mixed_precision=policy))
    assert keras.config.dtype_policy().name == "float32"  # restored
    assert learner.model.dtype_policy.name == policy
    assert {v.dtype for v in learner.model.weights} == {"float32"}
    is_scaled = isinstance(learner.optimizer, keras.optimizers.LossScaleOptimizer)
    assert is_scaled == (policy == "mixed_float16")


@pytest.mark.slow
def test_mixed_precision_train_records_and_reloads_the_policy(tmp_path):
    out = tmp_path / "mp"
    assert main(_sinusoid_args(out, "--mixed-precision", "mixed_float16")) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["mixed_precision"] == "mixed_float16"
    learner = keras.models.load_model(out / "learner.keras")
    # The policy is saved with the model's layers; the model keeps float32 weights.
    assert [layer.dtype_policy.name for layer in learner.model.layers[1:]] == [
        "mixed_float16"
    ] * 3
    assert isinstance(learner.optimizer, keras.optimizers.LossScaleOptimizer)
    history = (out / "history.csv").read_text()
    assert "nan" not in history.lower()


def test_run_option_errors(tmp_path, capsys):
    line = _error(capsys, _sinusoid_args(tmp_path / "a", "--mixed-precision", "float16"))
    assert "--mixed-precision" in line and "'float16'" in line
    line = _error(capsys, _sinusoid_args(tmp_path / "b", "--wandb-project", "p"))
    assert "wandb_project" in line and "wandb=False" in line


def test_threads_sets_tensorflow_intra_op_parallelism(tmp_path):
    # A fresh process: the option must act before TensorFlow's first op.
    out = tmp_path / "run"
    code = (
        "import tensorflow as tf\n"
        "from keras_meta.cli import main\n"
        f"code = main({_sinusoid_args(out, '--threads', '1')!r})\n"
        "print('RESULT', code, tf.config.threading.get_intra_op_parallelism_threads())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600
    )
    assert "RESULT 0 1" in result.stdout, result.stderr[-3000:]
    assert json.loads((out / "run.json").read_text())["finished"] is True
    # Not a field of the configuration: a run may resume with another value.
    assert "threads" not in json.loads((out / "config.json").read_text())["config"]


def test_threads_errors(tmp_path, capsys):
    import tensorflow as tf

    line = _error(capsys, _sinusoid_args(tmp_path / "a", "--threads", "0"))
    assert "`threads`" in line and "0" in line
    tf.constant(1.0) + 1.0  # TensorFlow has started in this process
    before = tf.config.threading.get_intra_op_parallelism_threads()
    line = _error(capsys, ["evaluate", str(tmp_path / "none"), "--threads", str(before + 3)])
    assert f"--threads {before + 3}" in line and "before TensorFlow runs its first op" in line
    assert tf.config.threading.get_intra_op_parallelism_threads() == before


def _wandb_records(path):
    """The protobuf records of an offline run's `.wandb` file (LevelDB's log
    format: 32 KiB blocks of chunks with a 7-byte header, after wandb's
    7-byte file header)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    block, header = 32768, 7
    pos, pending, records = 7, b"", []
    while pos + header <= len(data):
        if block - pos % block < header:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + header])
        chunk = data[pos + header : pos + header + length]
        pos += header + length
        if kind == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


@pytest.mark.slow
def test_wandb_logs_an_offline_run_and_continues_it_on_resume(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    args = _sinusoid_args(out, "--wandb", "--wandb-project", "km-test")
    assert main(args + ["--fail-after-epochs", "1"]) == 130
    wandb.finish()  # as the interrupted process's exit would
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["wandb"] is True and config["wandb_project"] == "km-test"
    # One offline folder per process, both of the same W&B run, whose id the
    # run directory keeps.
    run_files = sorted(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(run_files) == 2
    records = [r for path in run_files for r in _wandb_records(path)]
    logged = {
        item.key or "/".join(item.nested_key)
        for r in records
        if r.WhichOneof("record_type") == "history"
        for item in r.history.item
    }
    assert {"epoch/loss", "epoch/mae", "epoch/val_loss", "epoch/val_mae"} <= logged
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert {run.run_id for run in runs} == {(out / "wandb_id").read_text().strip()}
    run = runs[0]
    assert run.project == "km-test" and run.display_name == "run"
    recorded = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert recorded["wandb"] is True and recorded["iterations"] == 4


def test_wandb_missing_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    # A None entry makes `import wandb` raise ImportError, as when it is not installed.
    monkeypatch.setitem(sys.modules, "wandb", None)
    line = _error(capsys, _sinusoid_args(tmp_path / "run", "--wandb"))
    assert "pip install keras_meta[wandb]" in line
    # Nothing written: the same command without --wandb starts the run afresh.
    assert not (tmp_path / "run" / "config.json").exists()
