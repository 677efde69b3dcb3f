"""benchmarks/episode_batching.py: its two forms of per-episode convolutions
compute the same meta-gradient (checked against the loop in float64)."""

import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script():
    spec = importlib.util.spec_from_file_location(
        "episode_batching", os.path.join(REPO, "benchmarks", "episode_batching.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("form", ["loop", "batched"])
@pytest.mark.parametrize("size,channels", [(7, 3), (4, 8)])
def test_forms_agree_with_float64(form, size, channels):
    row = _script()._measure(form, size, channels, episodes=3, shots=2, repeats=1, steps=1)
    assert row["error"] < 1e-5
    assert row["cpu_ms"] > 0 and row["wall_ms"] > 0

