"""`benchmarks/pretrain.py --table`: the pretrained learners' table of
docs/results.md is generated from the package's metadata, and is current."""

import os

import pytest
from helpers import load_benchmark

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_results_md_holds_the_table_of_the_shipped_metadata():
    pretrain = load_benchmark("pretrain")
    with open(os.path.join(REPO, "docs", "results.md"), encoding="utf-8") as f:
        text = f.read()
    table = text.split(pretrain.TABLE_START + "\n", 1)[1].split("\n" + pretrain.TABLE_END)[0]
    assert table == pretrain.pretrained_table(), (
        "docs/results.md's pretrained table is stale: run `python benchmarks/pretrain.py --table`"
    )


def test_table_row_of_a_full_budget_learner(tmp_path):
    pretrain = load_benchmark("pretrain")
    meta = {
        "name": "maml_x", "protocol": "maml-omniglot-5w1s",
        "config": {"ways": 5, "bn_mode": "transductive", "steps_per_epoch": 1000},
        "budget": {"iterations": 60000, "protocol_iterations": 60000, "fraction": 1.0,
                   "short": False},
        "wall_seconds": 3.5 * 3600,
        "evaluation": {"5way1shot": {"accuracy": 0.98765, "accuracy_ci95": 0.00432,
                                     "queries": 1}},
        "build": {"model": {"kwargs": {"num_outputs": 5}}},
        "commit": "c" * 40,
        "training_commits": [{"commit": "a" * 40, "from_epoch": 1},
                             {"commit": "b" * 40, "from_epoch": 25}],
    }  # fmt: skip
    assert pretrain.table_row(meta) == (
        "| `maml_x` | `maml-omniglot-5w1s` (5-way training, transductive BN) | 60000 it (the "
        "protocol's full budget) | 3.5 h | 98.77% ± 0.43% (1 q/class) | — (5 outputs) | test "
        "`ccccccc`; train epochs 1–24 `aaaaaaa`, epochs 25–60 `bbbbbbb` |"
    )
    meta["evaluation_per_alphabet"] = {
        "ways": 5, "shots": 1, "queries": 1, "episodes": 100, "seed": 3,
        "alphabets": {"Kannada": {"accuracy": 0.8}, "Atlantean": {"accuracy": 0.97},
                      "Tengwar": {"accuracy": 0.9}, "Oriya": {"accuracy": 0.85}},
    }  # fmt: skip
    assert pretrain.alphabet_row(meta) == (
        "| `maml_x` | 5-way 1-shot, 1 q/class, 100 per alphabet | 80.0% (Kannada) | 87.5% "
        "| 97.0% (Atlantean) | 88.0% |"
    )
    del meta["evaluation_per_alphabet"]
    assert pretrain.alphabet_row(meta) == "| `maml_x` | not measured | | | | |"
    results = tmp_path / "results.md"
    results.write_text("intro\n")
    with pytest.raises(SystemExit, match="has no <!-- pretrained:start --> line"):
        pretrain.write_table(str(results))


def test_per_alphabet_evaluation_draws_each_evaluation_alphabet(omniglot_dir):
    """On the real evaluation alphabets: one entry per alphabet, with its
    characters (Omniglot's 20 evaluation alphabets have 659), and accuracy of a
    shipped learner well above chance within each."""
    import keras_meta as km
    from keras_meta.experiments import RunConfig

    pretrain = load_benchmark("pretrain")
    config = RunConfig.from_protocol("protonet-omniglot-20w1s").override(
        data_dir=str(omniglot_dir)
    )
    learner = km.ProtoNet.from_preset("protonet_omniglot")
    result = pretrain.evaluate_per_alphabet(config, learner, (5, 1, 15), 2, seed=3)
    assert (result["ways"], result["shots"], result["queries"], result["episodes"]) == (
        5, 1, 15, 2,
    )  # fmt: skip
    alphabets = result["alphabets"]
    assert len(alphabets) == 20 and "Kannada" in alphabets and "Tengwar" in alphabets
    assert sum(a["characters"] for a in alphabets.values()) == 659
    assert all(a["accuracy"] > 0.35 for a in alphabets.values()), alphabets  # chance: 0.2
