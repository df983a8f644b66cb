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
def _diagonals(b: int, h: int, w: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per anti-diagonal i + j = d, over the b grids of a batch laid end to end (index n * h * w + i * w + j):
    (positions, the positions above, which of them exist, the positions to the left, which of them exist)."""
    out = []
    grids = (np.arange(b) * (h * w))[:, None]
    for d in range(h + w - 1):
        i = np.arange(max(0, d - w + 1), min(h - 1, d) + 1)
        pos = (grids + i * w + (d - i)).ravel()
        has_up, has_left = np.tile(i > 0, b), np.tile(d - i > 0, b)
        out.append((pos, np.where(has_up, pos - w, pos), has_up, np.where(has_left, pos - 1, pos), has_left))
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
    Decided on the CPU in numpy, the batch's grids laid end to end: a step is a few thousand tokens, and
    the rounds are small.
    """
    if tau <= 0:
        return nearest.long()
    tau = min(float(tau), float(np.finfo(np.float32).max))  # the gaps are float32: a larger tau acts alike
    b, h, w = nearest.shape
    best = nearest.reshape(-1)
    best_codes = codes_of(best).float().cpu().numpy()  # (b * h * w, C)
    out = best.cpu().numpy().astype(np.int64)
    out_codes = best_codes.copy()
    free = np.ones(out.shape, dtype=bool)  # not settled by the previous step's token
    if previous is not None:
        prev = previous.reshape(-1)
        prev_codes = codes_of(prev).float().cpu().numpy()
        settled = _gap(best_codes, prev_codes) <= tau
        out[settled] = prev.cpu().numpy()[settled]
        out_codes[settled] = prev_codes[settled]
        free = ~settled
    for pos, up, has_up, left, has_left in _diagonals(b, h, w):
        here, open_ = best_codes.take(pos, axis=0), free.take(pos)
        take_up = _gap(here, out_codes.take(up, axis=0)) <= tau
        take_up &= has_up
        take_up &= open_
        take_left = _gap(here, out_codes.take(left, axis=0)) <= tau
        take_left &= has_left
        take_left &= open_
        take_left &= ~take_up
        if not (take_up.any() or take_left.any()):
            continue
        src = np.where(take_up, up, np.where(take_left, left, pos))  # where each token comes from
        out[pos] = out.take(src)
        out_codes[pos] = out_codes.take(src, axis=0)
    return torch.from_numpy(out.reshape(b, h, w)).to(nearest.device)


@torch.no_grad()
def choose_clip_tokens(nearest: Tensor, segment_starts: list[int], codes_of: Callable[[Tensor], Tensor],
                       tau: float) -> Tensor:
    """`choose_tokens` for every step of a clip (S, B, h, w) in order, as a stream chooses them: each step
    against the step before it in its segment (the steps in `segment_starts` against none)."""
    chosen: list[Tensor] = []
    for step, grid in enumerate(nearest):
        chosen.append(choose_tokens(grid, None if step in segment_starts else chosen[-1], codes_of, tau))
    return torch.stack(chosen)
