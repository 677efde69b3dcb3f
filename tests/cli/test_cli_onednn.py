"""`--onednn on|off`: the command runs in a process whose TensorFlow has the
setting (TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it is imported)."""

import json
import os
import subprocess
import sys

import pytest
from cli_helpers import _sinusoid_args
from helpers import load_benchmark

from keras_meta import _backend
from keras_meta.cli import main


def _train_args(out, *extra):
    return _sinusoid_args(out, *extra, iterations=2)


def _onednn(out):
    return json.loads((out / "config.json").read_text())["machine"]["onednn"]


@pytest.mark.parametrize("setting", ["on", "off"])
def test_train_runs_with_the_setting(tmp_path, setting):
    out = tmp_path / setting
    # From Python: a child process when this one differs, in process otherwise.
    assert main(_train_args(out, "--onednn", setting)) == 0
    assert _onednn(out) is (setting == "on")
    assert json.loads((out / "run.json").read_text())["finished"] is True


@pytest.mark.slow
def test_shell_command_replaces_its_process(tmp_path):
    wanted = not _backend.onednn_enabled()  # the setting this process does not have
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != _backend.ONEDNN_ENV}
    argv = _train_args(out, "--onednn", "on" if wanted else "off")
    done = subprocess.run([sys.executable, "-m", "keras_meta.cli", *argv], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert _onednn(out) is wanted
    assert "Trained" in done.stdout


def test_a_setting_tensorflow_ignores_is_an_error(tmp_path, monkeypatch, capsys):
    # A TensorFlow without oneDNN kernels reports them off whatever the switch says.
    monkeypatch.setattr(_backend, "onednn_enabled", lambda: False)
    monkeypatch.setenv(_backend.ONEDNN_ENV, "1")
    assert main(_train_args(tmp_path / "run", "--onednn", "on")) == 2
    err = capsys.readouterr().err
    assert "--onednn on: this TensorFlow ignores TF_ENABLE_ONEDNN_OPTS=1" in err
    assert not (tmp_path / "run").exists()


def test_machine_info_says_whether_onednn_is_on():
    from keras_meta.experiments.run_dir import machine_info

    assert machine_info()["onednn"] is _backend.onednn_enabled()


@pytest.mark.parametrize("script", ["reproduce", "pretrain"])
def test_scripts_refuse_a_setting_they_cannot_apply(script, monkeypatch, capsys):
    # In this process TensorFlow is imported already: the switch cannot apply.
    monkeypatch.delenv(_backend.ONEDNN_ENV, raising=False)  # restored afterwards
    module = load_benchmark(script)
    setting = "off" if _backend.onednn_enabled() else "on"
    argv = {
        "reproduce": ["--protocol", "maml-sinusoid"],
        "pretrain": ["--name", "maml_omniglot_5way", "--data-dir", "nowhere"],
    }[script]
    with pytest.raises(SystemExit) as exit_:
        module.main([*argv, "--onednn", setting])
    assert exit_.value.code == 2
    assert f"--onednn {setting}: TensorFlow was imported before" in capsys.readouterr().err


def test_train_notes_onednn_for_protonet_only(tmp_path, capsys):
    from keras_meta.experiments import RunConfig, runs

    off = not _backend.onednn_enabled()  # this process has no GPU in CI
    assert runs._onednn_would_pay(RunConfig.from_protocol("protonet-omniglot-20w1s")) is off
    assert runs._onednn_would_pay(RunConfig.from_protocol("maml-omniglot-5w1s")) is False
    main(_train_args(tmp_path / "maml", "--verbose", "1"))
    assert "oneDNN" not in capsys.readouterr().out
