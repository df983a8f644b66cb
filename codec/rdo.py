"""Rate-distortion optimized token choice: an encoder-side decision, like a video codec's mode decision.

The nearest code is the best token for quality, but a token equal to the one at the same place in the
previous step (T), to the one above (U) or to the one to the left (L) costs the `ctx` coder a fraction of a
bit where a new token (a literal) costs ten or more. `choose_tokens` lets each position take such a source
token, in the coder's order T, U, L, when its code lies within `tau` of the nearest code:

    gap(a, b) = |code(a) - code(b)|^2 / 2        (= 1 - cosine for the unit codes of VQ)

Positions are decided along anti-diagonals, so that the tokens above and to the left are final when a
position is decided (the result is that of a raster scan), one vectorized round per diagonal. The choice
depends only on the nearest tokens and the previous step's chosen tokens, so a stream and a whole clip get
the same tokens, on any backend. tau = 0 keeps every nearest token.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor


def check_tau(tau: float) -> float:
    """tau as a float, or ValueError unless it is finite and >= 0."""
    tau = float(tau)
    if not math.isfinite(tau) or tau < 0:
        raise ValueError(f"the rate-distortion tolerance must be a finite number >= 0, got {tau}")
    return tau


@lru_cache(maxsize=32)
def _diagonals(h: int, w: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per anti-diagonal i + j = d: (flat positions, flat positions above, above exists, left, left exists)."""
    out = []
    for d in range(h + w - 1):
        i = np.arange(max(0, d - w + 1), min(h - 1, d) + 1)
        pos = i * w + (d - i)
        out.append((pos, np.maximum(pos - w, 0), i > 0, np.maximum(pos - 1, 0), (d - i) > 0))
    return out


def _gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    diff = a - b
    diff *= diff
    return 0.5 * diff.sum(-1)


@torch.no_grad()
def choose_tokens(nearest: Tensor, previous: Tensor | None, codes_of: Callable[[Tensor], Tensor],
                  tau: float) -> Tensor:
    """The tokens (B, h, w) int64 to code for one step (on the device of `nearest`).

    nearest: (B, h, w) the nearest-code tokens; previous: (B, h, w) the tokens chosen for the step before
    in the same segment (None at a segment start); codes_of: tokens (...) -> codes (..., C).
    Decided on the CPU in numpy: a step is a few thousand tokens, and the rounds are small.
    """
    if tau <= 0:
        return nearest.long()
    b, h, w = nearest.shape
    best = nearest.reshape(b, h * w)
    best_codes = codes_of(best).float().cpu().numpy()
    out = best.cpu().numpy().copy()
    out_codes = best_codes.copy()
    settled = np.zeros(out.shape, dtype=bool)
    if previous is not None:
        prev = previous.reshape(b, h * w)
        prev_codes = codes_of(prev).float().cpu().numpy()
        settled = _gap(best_codes, prev_codes) <= tau
        out[settled] = prev.cpu().numpy()[settled]
        out_codes[settled] = prev_codes[settled]
    rows = np.arange(b)[:, None]
    for pos, up, has_up, left, has_left in _diagonals(h, w):
        free = ~settled[:, pos]
        here = best_codes[:, pos]
        take_up = free & has_up & (_gap(here, out_codes[:, up]) <= tau)
        take_left = free & ~take_up & has_left & (_gap(here, out_codes[:, left]) <= tau)
        src = np.where(take_up, up, np.where(take_left, left, pos))  # (B, n): where each token comes from
        out[:, pos] = out[rows, src]
        out_codes[:, pos] = out_codes[rows, src]
    return torch.from_numpy(out.reshape(b, h, w)).to(device=nearest.device, dtype=torch.int64)
