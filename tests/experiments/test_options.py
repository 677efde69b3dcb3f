"""The `train` options and the docs table are generated from RunConfig's fields."""

import dataclasses
import os

import pytest

from keras_meta.cli import build_parser
from keras_meta.experiments import RunConfig, options
from keras_meta.experiments.options import config_overrides

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI_DOC = os.path.join(REPO_ROOT, "docs", "cli.md")


def _train_options():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["train"]


def test_every_cli_field_is_an_option_with_its_choices():
    train = _train_options()
    by_dest = {a.dest: a for a in train._actions}
    hidden = {"name", "description", "published", "notes"}
    for f in dataclasses.fields(RunConfig):
        if f.name in hidden:
            assert f.name not in by_dest
            continue
        action = by_dest[f.name]
        assert action.help == f.metadata["help"]
        if "choices" in f.metadata:
            expected = ["none" if c is None else c for c in f.metadata["choices"]]
            assert list(action.choices) == expected


def test_parsed_options_are_the_configuration_fields():
    args = _train_options().parse_args(
        "--out r --inner-lr 0.1 --meta-lr 0.01 --split-sizes 8,5,5 --hidden-units 8,8 "
        "--no-bn-scale --augmentation none --lr-schedule step --ways 3".split()
    )
    overrides = config_overrides(args)
    assert overrides == {
        "inner_learning_rate": 0.1,
        "meta_learning_rate": 0.01,
        "split_sizes": (8, 5, 5),
        "hidden_units": (8, 8),
        "bn_scale": False,
        "augmentation": None,
        "lr_schedule": "step",
        "ways": 3,
    }
    fractions = _train_options().parse_args(["--out", "r", "--split-sizes", "0.6,0.2,0.2"])
    assert fractions.split_sizes == (0.6, 0.2, 0.2)


def test_bad_list_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        _train_options().parse_args(["--out", "r", "--split-sizes", "a,b"])
    assert exit_.value.code == 2
    assert "expected comma-separated numbers" in capsys.readouterr().err


def test_docs_table_is_the_generated_one():
    with open(CLI_DOC, encoding="utf-8") as f:
        text = f.read()
    assert options.TABLE_START in text and options.TABLE_END in text
    assert options.replace_table(text) == text, (
        "docs/cli.md's options table is stale: python -m keras_meta.experiments.options docs/cli.md"
    )
    # The table has one row per option.
    rows = [line for line in options.options_table().splitlines() if line.startswith("| `--")]
    assert len(rows) == len(options.cli_fields())


def test_check_mode_reports_a_stale_table(tmp_path):
    doc = tmp_path / "cli.md"
    doc.write_text(f"intro\n{options.TABLE_START}\n| old |\n{options.TABLE_END}\noutro\n")
    assert options.main(["--check", str(doc)]) == 1
    assert options.main([str(doc)]) == 0
    assert options.main(["--check", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "`--ways`" in text
