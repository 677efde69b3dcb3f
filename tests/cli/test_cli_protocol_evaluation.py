"""A trained run tested as another protocol tests (`evaluate(protocol=...)`,
`keras-meta evaluate --protocol`, `benchmarks/reproduce.py --from-run`)."""

import json

import numpy as np
import pytest
from cli_helpers import _error
from helpers import load_benchmark

from keras_meta.cli import main
from keras_meta.evaluation import evaluate as evaluate_learner
from keras_meta.experiments import RunConfig, protocols, runs
from keras_meta.experiments.run_dir import RunError
from keras_meta.experiments.sources import EpisodeSource

SMALL = {
    **protocols.PROTOCOLS["maml-sinusoid"],
    "description": "a small sinusoid protocol", "iterations": 4, "steps_per_epoch": 2,
    "val_episodes": 2, "meta_batch_size": 2, "hidden_units": [8, 8], "eval_episodes": 4,
}  # fmt: skip
# The same training, tested with 5 shots and 3 inner steps, and another published number.
TESTED_OTHERWISE = {
    **SMALL, "description": "the same, tested otherwise", "eval_shots": 5,
    "eval_inner_steps": 3, "published": {**SMALL["published"], "value": 0.5},
}  # fmt: skip
TRAINED_OTHERWISE = {**SMALL, "inner_learning_rate": 0.02}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(protocols.PROTOCOLS, "t-small", SMALL)
        out = tmp_path_factory.mktemp("protocol") / "run"
        runs.train(out, "t-small", verbose=0)
    return out


@pytest.fixture
def test_protocols(monkeypatch):
    for name, fields in [("t-small", SMALL), ("t-tested", TESTED_OTHERWISE),
                         ("t-trained", TRAINED_OTHERWISE)]:  # fmt: skip
        monkeypatch.setitem(protocols.PROTOCOLS, name, fields)


def test_protocol_config():
    twenty = RunConfig.from_protocol("protonet-omniglot-20w1s", data_dir="data", iterations=300)
    five = runs.protocol_config(twenty, "protonet-omniglot-5w1s")
    assert five.name == "protonet-omniglot-5w1s" and five.eval_episode_shape == (5, 1, 15)
    assert five.published["value"] == 0.988
    # The run's own data folder and budget stay.
    assert five.data_dir == "data" and five.iterations == 300
    with pytest.raises(RunError, match=r"trains differently.*shots=1 \(the protocol: 5\)"):
        runs.protocol_config(twenty, "protonet-omniglot-5w5s")
    with pytest.raises(RunError, match="Unknown protocol 'nope'"):
        runs.protocol_config(twenty, "nope")


def test_evaluate_as_another_protocol(trained, test_protocols):
    record = runs.evaluate(trained, protocol="t-tested")
    assert record["protocol"] == "t-tested" and record["trained_as"] == "t-small"
    assert (record["shots"], record["results"]["inner_steps"]) == (5, 3)
    assert record["published"]["value"] == 0.5
    written = json.loads((trained / "evaluation_t-tested.json").read_text())
    assert written["results"] == record["results"]
    assert not (trained / "evaluation.json").exists()
    # The reference: the same learner on episodes of the protocol's shape,
    # through the library's own pieces.
    config, learner = runs.load_run(trained)
    tested = config.override(eval_shots=5)
    episodes = EpisodeSource(tested).fixed("test", 4)
    reference = evaluate_learner(learner, episodes, 4, inner_steps=3, time_adaptation=False)
    np.testing.assert_allclose(record["results"]["loss"], reference["loss"], rtol=1e-6)


def test_protocol_errors(trained, test_protocols, capsys):
    line = _error(capsys, ["evaluate", str(trained), "--protocol", "t-trained"])
    assert "trains differently" in line and "inner_learning_rate=0.01" in line
    line = _error(capsys, ["evaluate", str(trained), "--protocol", "t-tested",
                           "--dataset", "omniglot"])  # fmt: skip
    assert "--protocol or --dataset" in line


def test_cli_and_reproduce_from_run(trained, test_protocols, tmp_path, capsys):
    assert main(["evaluate", str(trained), "--protocol", "t-tested", "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "t-small run tested as t-tested tests:" in out and "evaluation_t-tested.json" in out
    reproduce = load_benchmark("reproduce")
    results = tmp_path / "results.md"
    results.write_text(f"| table |\n{reproduce.ROW_MARKER}\n")
    argv = ["--protocol", "t-tested", "--from-run", str(trained), "--results", str(results),
            "--verbose", "0"]  # fmt: skip
    assert reproduce.main(argv) == 0
    row = results.read_text().splitlines()[1]
    assert row.count("`t-tested`") == 1 and "the `t-small` run's learner (the same training)" in row
    assert "K=5 test" in row and "(test 3)" in row
    assert reproduce.main(["--protocol", "t-trained", "--from-run", str(trained),
                           "--no-record", "--verbose", "0"]) == 2  # fmt: skip
    assert "trains differently" in capsys.readouterr().err


def test_reproduce_row_names_the_commits():
    reproduce = load_benchmark("reproduce")
    a, b = "a" * 40, "b" * 40 + "+dirty"
    record = {"machine": {"keras_meta_commit": b}}
    state = {"epochs_done": 60, "commits": [{"commit": a, "from_epoch": 42},
                                            {"commit": b, "from_epoch": 60}]}  # fmt: skip
    assert reproduce.commit_text(record, state) == (
        "test `bbbbbbb+dirty`; train epochs 1–41 not recorded, epochs 42–59 `aaaaaaa`, "
        "epoch 60 `bbbbbbb+dirty`"
    )
    state = {"epochs_done": 3, "commits": [{"commit": a, "from_epoch": 1}]}
    assert reproduce.commit_text({"machine": {}}, state) == (
        "test unknown; train epochs 1–3 `aaaaaaa`"
    )
    assert reproduce.commit_text(record, {}) == (
        "test `bbbbbbb+dirty`; training's not recorded"
    )
