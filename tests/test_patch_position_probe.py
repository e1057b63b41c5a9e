"""The patch-position probe (benchmarks/patch_position_probe.py) on tokens with a known answer: tokens that carry
their cell are placed exactly, tokens of pure noise at chance."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import patch_position_probe as probe  # noqa: E402


def test_tokens_that_carry_their_cell_are_placed_and_noise_is_at_chance() -> None:
    rng = np.random.default_rng(0)
    cells, width = 16, 24
    codes = rng.normal(size=(cells, width))  # each cell's own direction

    def frames(count: int, signal: float) -> np.ndarray:
        return signal * codes[None] + rng.normal(size=(count, cells, width))

    placed = probe.cell_accuracy(frames(200, 3.0), {"test": frames(50, 3.0)}, alpha=1e-3)["test"]
    noise = probe.cell_accuracy(frames(200, 0.0), {"test": frames(400, 0.0)}, alpha=1e-3)["test"]
    assert placed > 0.95
    assert abs(noise - 1 / cells) < 0.03
