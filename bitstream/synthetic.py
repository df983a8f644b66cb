"""Synthetic token streams with a known entropy, for tests and `tools/bench/bitstream.py`.

Each step after a segment's first repeats the previous step's token at each position with probability
`repeat`, otherwise draws a fresh uniform token; a segment's first step is all fresh tokens.
"""

from __future__ import annotations

import math

import numpy as np


def repetition_grids(steps: int, grid: tuple[int, int], codebook_size: int, repeat: float, gop: int,
                     seed: int = 0) -> np.ndarray:
    """-> int64 (steps, h, w) tokens in [0, codebook_size)."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, codebook_size, (steps,) + tuple(grid), dtype=np.int64)
    for s in range(steps):
        if s and (gop == 0 or s % gop):
            keep = rng.random(grid) < repeat
            out[s][keep] = out[s - 1][keep]
    return out


def entropy_bound(steps: int, codebook_size: int, repeat: float, gop: int) -> float:
    """Source entropy in bits per token of `repetition_grids` (averaged over its steps).

    A predicted token equals its reference with probability q = repeat + (1 - repeat) / K, and is each
    other symbol with probability (1 - repeat) / K.
    """
    k = codebook_size
    q, other = repeat + (1 - repeat) / k, (1 - repeat) / k
    predicted = -sum(p * math.log2(p) for p in (q,) if p > 0) - ((k - 1) * other * math.log2(other) if other > 0 else 0.0)
    starts = sum(1 for s in range(steps) if s == 0 or (gop and s % gop == 0))
    return (starts * math.log2(k) + (steps - starts) * predicted) / steps
