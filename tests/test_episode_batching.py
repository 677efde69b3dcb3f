"""benchmarks/episode_batching.py: its two forms of per-episode convolutions
compute the same meta-gradient (checked against the loop in float64)."""

import pytest
from helpers import load_benchmark


@pytest.mark.parametrize("form", ["loop", "batched"])
@pytest.mark.parametrize("size,channels", [(7, 3), (4, 8)])
def test_forms_agree_with_float64(form, size, channels):
    script = load_benchmark("episode_batching")
    row = script._measure(form, size, channels, episodes=3, shots=2, repeats=1, steps=1)
    assert row["error"] < 1e-5
    assert row["cpu_ms"] > 0 and row["wall_ms"] > 0

