"""`keras-meta train --time-limit` and `benchmarks/reproduce.py --time-limit`:
stop after the last epoch that fits, exit 75, resume with the same command."""

import json

import pytest
from cli_helpers import _sinusoid_args
from helpers import load_benchmark

from keras_meta.cli import EXIT_TIME_LIMIT, main
from keras_meta.experiments import protocols

SMALL = {
    "iterations": 6, "steps_per_epoch": 2, "val_episodes": 2, "meta_batch_size": 2,
    "hidden_units": [8, 8],
}  # fmt: skip


def test_cli_time_limit_exits_75_then_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_sinusoid_args(out, "--time-limit", "0.000001s")) == EXIT_TIME_LIMIT == 75
    err = capsys.readouterr().err
    assert "stopped at the time limit after 1 epochs; run the same command again" in err
    assert main(_sinusoid_args(out, "--time-limit", "1h")) == 0
    assert json.loads((out / "run.json").read_text())["finished"] is True
    with pytest.raises(SystemExit) as exit_:
        main(_sinusoid_args(tmp_path / "bad", "--time-limit", "2 hours"))
    assert exit_.value.code == 2
    assert "a duration must be a positive number" in capsys.readouterr().err


def _reproduce(tmp_path, protocol):
    """reproduce.py, an empty results file, and its arguments for `protocol`."""
    reproduce = load_benchmark("reproduce")
    results = tmp_path / "results.md"
    results.write_text(f"| table |\n{reproduce.ROW_MARKER}\n")
    argv = ["--protocol", protocol, "--out", str(tmp_path / "run"), "--results", str(results),
            "--verbose", "0"]  # fmt: skip
    return reproduce, results, argv


def test_reproduce_time_limit(tmp_path, capsys):
    small = {**protocols.PROTOCOLS["maml-sinusoid"], **SMALL, "eval_episodes": 4}
    reproduce, results, argv = _reproduce(tmp_path, "t-small")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(protocols.PROTOCOLS, "t-small", small)
        assert reproduce.main([*argv, "--time-limit", "0.000001"]) == 75
        assert "stopped at the time limit after 1 epochs" in capsys.readouterr().err
        assert results.read_text().count("\n") == 2  # no row for an unfinished run
        assert reproduce.main(argv) == 0
    assert "`t-small`" in results.read_text().splitlines()[1]


def test_reproduce_tests_where_the_data_is_now(tmp_path, capsys):
    # A run carried between sessions finishes where its data has another path
    # than when it started: the test episodes come from --data-dir, not from
    # the folder config.json recorded.
    from cli_helpers import _make_image_folder

    folder = {
        **protocols.PROTOCOLS["maml-omniglot-5w1s"], "dataset": "folder", "split": "random",
        "split_sizes": None, "augmentation": None, "ways": 3, "meta_batch_size": 2,
        "iterations": 4, "steps_per_epoch": 2, "val_episodes": 0, "eval_episodes": 4,
        "filters": 4,
    }  # fmt: skip
    data = _make_image_folder(tmp_path / "before", 15, 3, seed=0)
    reproduce, results, argv = _reproduce(tmp_path, "t-folder")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(protocols.PROTOCOLS, "t-folder", folder)
        assert reproduce.main([*argv, "--data-dir", str(data), "--time-limit", "0.000001"]) == 75
        data.rename(tmp_path / "after")
        capsys.readouterr()
        assert reproduce.main([*argv, "--data-dir", str(tmp_path / "after")]) == 0, (
            capsys.readouterr().err
        )
    assert "`t-folder`" in results.read_text().splitlines()[1]
