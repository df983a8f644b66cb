"""Decoder-side flag contexts of the `ctx` coder in two numpy calls per pass (the same values as
`ctx_model.contexts_a` / `contexts_b`, which need a dozen calls on whole grids: per-call overhead, not
arithmetic, is what a 360p step costs).

The flags of the previous and of the current step live in two halves of one flat uint8 buffer, each
an (h + 2) x (w + 2) grid with a zero border; the halves swap roles every step, and a last cell holds 1.
A context is a weighted sum of at most 8 cells (the position, its 4 neighbours, the constant cell), so
one `take` gathers 8 bytes per position, read as one uint64, and one multiplication by a constant whose
bytes are the weights leaves the sum in the top byte: every partial sum stays below 256, so no carry
reaches it. The contexts come out doubled (2 * ctx), ready for counting (2 * ctx + flag).
"""

from __future__ import annotations

import sys

import numpy as np

from . import ctx_model as cm

_AROUND = ((-1, 0), (1, 0), (0, -1), (0, 1))
# significance (in bytes) of each of a uint64's 8 bytes in memory, and where its top byte lies
_SIG = np.arange(8) if sys.byteorder == "little" else 7 - np.arange(8)
_TOP = int(np.flatnonzero(_SIG == 7)[0])


def _multiplier(weights: list[int]) -> np.uint64:
    """The constant that sums byte k of a gathered uint64 times weights[k] into the top byte."""
    return np.uint64(sum(wt << (8 * (7 - int(s))) for wt, s in zip(weights, _SIG)))


class FlagPlanes:
    def __init__(self, h: int, w: int) -> None:
        pos_a, pos_b = cm.parity_positions(h, w)
        size = (h + 2) * (w + 2)
        self.buffer = np.zeros(2 * size + 1, dtype=np.uint8)
        self.buffer[-1] = 1
        one, zero = 2 * size, 0  # the constant cell; a border cell of half 0 (never written)
        self._interiors = [self.buffer[k * size:(k + 1) * size].reshape(h + 2, w + 2)[1:-1, 1:-1] for k in (0, 1)]

        def cells(half: int, pos: np.ndarray, di: int = 0, dj: int = 0) -> np.ndarray:
            i, j = np.divmod(pos, w)
            return half * size + (i + 1 + di) * (w + 2) + (j + 1 + dj)

        def rows(*columns) -> np.ndarray:  # (n, 8) gather indices, unused bytes read the zero cell
            n = len(columns[0])
            full = [c if isinstance(c, np.ndarray) else np.full(n, c) for c in columns]
            full += [np.full(n, zero)] * (8 - len(full))
            return np.ascontiguousarray(np.stack(full, axis=1))

        # pass A: 1 + 5 * prev + n(prev), from the previous half; pass B: CTX_A + 3 * n(cur) + prev
        self._gather_a = [rows(cells(p, pos_a), *(cells(p, pos_a, *d) for d in _AROUND), one) for p in (0, 1)]
        self._gather_b = [rows(*(cells(1 - p, pos_b, *d) for d in _AROUND), cells(p, pos_b), one) for p in (0, 1)]
        self._mul_a = _multiplier([2 * 5, 2, 2, 2, 2, 2 * 1])
        self._mul_b = _multiplier([2 * 3] * 4 + [2, 2 * cm.CTX_A])
        self._at_a = [cells(c, pos_a) for c in (0, 1)]  # where each pass writes its flags, per current half
        self._at_b = [cells(c, pos_b) for c in (0, 1)]
        self._no_prev_a = np.zeros(len(pos_a), dtype=np.uint8)
        self.prev: int | None = None  # the half holding the previous step's flags (None: none)
        self._first = True  # whether the current step has no previous flags (set by begin_step)

    def reset(self) -> None:
        """A segment start: no previous flags."""
        self.prev = None

    def begin_step(self) -> bool:
        """Before pass A: -> whether there are previous flags. Without, the previous half reads 2 (the
        "here" of pass B) and pass A's contexts are all 0."""
        self._first = self.prev is None
        if self._first:
            self.prev = 0
            self._interiors[0][...] = 2
        return not self._first

    def contexts_a(self) -> np.ndarray:
        """2 * pass-A contexts (uint8, a strided view) at pass-A positions."""
        if self._first:
            return self._no_prev_a
        return self._weighted(self._gather_a[self.prev], self._mul_a)

    def contexts_b(self) -> np.ndarray:
        """2 * pass-B contexts at pass-B positions, once pass A's flags are written."""
        return self._weighted(self._gather_b[self.prev], self._mul_b)

    def write_a(self, bits: np.ndarray) -> None:
        self.buffer[self._at_a[1 - self.prev]] = bits

    def write_b(self, bits: np.ndarray) -> None:
        self.buffer[self._at_b[1 - self.prev]] = bits

    def end_step(self) -> np.ndarray:
        """-> flat indices (raster order) of this step's zero flags; the current half becomes the previous."""
        self.prev = 1 - self.prev
        return np.flatnonzero(self._interiors[self.prev] == 0)

    def _weighted(self, gather: np.ndarray, mul: np.uint64) -> np.ndarray:
        words = np.take(self.buffer, gather).view(np.uint64).reshape(-1)
        return (words * mul).view(np.uint8)[_TOP::8]
