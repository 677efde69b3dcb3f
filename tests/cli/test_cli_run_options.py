"""The run options of `keras-meta train`: --mixed-precision, --jit and --wandb."""

import json
import struct
import sys

import keras
import numpy as np
import pytest
from cli_helpers import _error

from keras_meta.cli import main
from keras_meta.experiments import RunConfig
from keras_meta.experiments.builders import build_learner


def _sinusoid_args(out, *extra):
    return [
        "train", "--preset", "maml-sinusoid", "--iterations", "4", "--steps-per-epoch", "2",
        "--val-episodes", "2", "--meta-batch-size", "2", "--hidden-units", "8,8",
        "--out", str(out), "--verbose", "0", *extra,
    ]  # fmt: skip


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
def test_wandb_logs_an_offline_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    assert main(_sinusoid_args(out, "--wandb", "--wandb-project", "km-test")) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["wandb"] is True and config["wandb_project"] == "km-test"
    (run_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    records = _wandb_records(run_file)
    logged = {
        item.key or "/".join(item.nested_key)
        for r in records
        if r.WhichOneof("record_type") == "history"
        for item in r.history.item
    }
    assert {"epoch/loss", "epoch/mae", "epoch/val_loss", "epoch/val_mae"} <= logged
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.project == "km-test" and run.display_name == "run"
    recorded = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert recorded["wandb"] is True and recorded["iterations"] == 4


def test_wandb_missing_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    # A None entry makes `import wandb` raise ImportError, as when it is not installed.
    monkeypatch.setitem(sys.modules, "wandb", None)
    line = _error(capsys, _sinusoid_args(tmp_path / "run", "--wandb"))
    assert "pip install keras_meta[wandb]" in line
