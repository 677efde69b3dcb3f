"""The cross-domain study (examples/cross_domain.py) runs end to end in its quick mode.

Omniglot-trained learners adapted to scikit-learn's real 8x8 digits, which
`km.evaluate` upsamples to the learners' 28x28 input: after adaptation they
must beat chance on the digits' query sets by a clear margin (the quick run
trains for seconds, so the bound is loose; a learner that ignored the support
set, or images garbled by the matching, would sit at chance).
"""

import importlib.util
import pathlib

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "cross_domain.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("cross_domain_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_cross_domain_run_beats_chance_on_digits(omniglot_dir, tmp_path):
    example = _load_example()
    plot = tmp_path / "cross_domain.png"
    rows = example.main(
        [str(omniglot_dir), "--quick", "--out", str(tmp_path / "run"), "--plot", str(plot)]
    )
    assert plot.stat().st_size > 1000
    digits = {(r["learner"], r["steps"]): r for r in rows if r["domain"] == "digits"}
    assert set(digits) == {("protonet", None), ("maml", 0), ("maml", 5)}
    for row in rows:
        assert row["episodes"] == 10 and 0 <= row["accuracy"] <= 1
    chance = 1 / 5
    # Adapted on 5 shots per digit: well above chance (measured: ~0.6 and ~0.85).
    assert digits[("protonet", None)]["accuracy"] > chance + 0.15
    assert digits[("maml", 5)]["accuracy"] > chance + 0.15
    # Unadapted, MAML's initialisation cannot know the episode's random labels.
    assert abs(digits[("maml", 0)]["accuracy"] - chance) < 0.15
    table = example.markdown_table(rows)
    assert "| 5-way 5-shot |" in table
