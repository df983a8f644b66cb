"""Decoder-side helpers of the `ctx` coder: the mode contexts of one step, pass by pass (the same values as
`ctx_model.mode_contexts`, less the CTX_A of pass B), and the values of a chunk's steps from their modes.
"""

from __future__ import annotations

import numpy as np

from . import ctx_model as cm


class ModePlanes:
    """The modes of the previous and of the current step, each in a flat (h + 1) x (w + 1) uint8 grid whose
    first row and column hold NONE (4); the two grids swap roles every step. A pass's contexts are three
    gathers at precomputed cells (faster than a multiply-add over whole grids, and than one wide gather)."""

    def __init__(self, h: int, w: int) -> None:
        stride = w + 1
        self._grids = [np.full((h + 1) * stride, cm.NONE, dtype=np.uint8) for _ in range(2)]
        self._interiors = [g.reshape(h + 1, stride)[1:, 1:] for g in self._grids]
        pos_a, pos_b = cm.parity_positions(h, w)

        def cells(pos: np.ndarray) -> np.ndarray:
            i, j = np.divmod(pos, w)
            return (i + 1) * stride + (j + 1)

        self._at_a, self._at_b = cells(pos_a), cells(pos_b)
        self._up_a, self._left_a = self._at_a - stride, self._at_a - 1
        self._up_b, self._left_b = self._at_b - stride, self._at_b - 1
        self.n_a = len(pos_a)  # positions of pass A
        self.prev: int | None = None  # the grid holding the previous step's modes (None: none)
        self.first = True  # whether the current step has no previous modes (pass-A contexts all FIRST_A)

    def reset(self) -> None:
        """A segment start: no previous modes."""
        self.prev = None

    def begin_step(self) -> None:
        self.first = self.prev is None
        if self.first:
            self.prev = 0
            self._interiors[0][...] = cm.NONE

    def contexts_a(self) -> np.ndarray:
        """Pass-A contexts (uint8) at pass-A positions: 25 * P + 5 * P(up) + P(left)."""
        if self.first:
            return np.full(self.n_a, cm.FIRST_A, dtype=np.uint8)
        p = self._grids[self.prev]
        out = p.take(self._at_a)
        out *= 25
        out += 5 * p.take(self._up_a)
        out += p.take(self._left_a)
        return out

    def contexts_b(self) -> np.ndarray:
        """Pass-B contexts less CTX_A (0..124) at pass-B positions, once pass A's modes are written:
        25 * M(up) + 5 * M(left) + P."""
        m, p = self._grids[1 - self.prev], self._grids[self.prev]
        out = m.take(self._up_b)
        out *= 25
        out += 5 * m.take(self._left_b)
        out += p.take(self._at_b)
        return out

    def write_a(self, modes: np.ndarray) -> None:
        self._grids[1 - self.prev][self._at_a] = modes

    def write_b(self, modes: np.ndarray) -> None:
        self._grids[1 - self.prev][self._at_b] = modes

    def end_step(self, out: np.ndarray) -> None:
        """Copy this step's modes into `out` (h, w); the current grid becomes the previous."""
        self.prev = 1 - self.prev
        out[...] = self._interiors[self.prev]


def resolve_values(modes: np.ndarray, literals: np.ndarray, ref: np.ndarray | None, w: int) -> np.ndarray:
    """Token values of a chunk's steps from their modes -> int64 (n, h * w).

    modes: uint8 (n, h * w), already checked (no T without `ref`, no U in row 0, no L in column 0).
    literals: int64, the literal tokens in step and raster order. ref: (h * w,) the step before, or None.
    Step by step: every cell starts as the previous step's value (right for T), literals go in, and each U
    or L cell takes the value of its source one row up or one column left: pointer doubling over the U/L
    cells finds each one's first non-U/L source in log2(longest chain) gathers.
    """
    n, hw = modes.shape
    out = np.empty((n, hw), dtype=np.int64)
    is_lit = modes == cm.MODE_LIT
    ends = np.cumsum(np.count_nonzero(is_lit, axis=1)).tolist()
    is_ul = (modes - np.uint8(cm.MODE_U)) <= np.uint8(cm.MODE_L - cm.MODE_U)  # U or L (T wraps to 255)
    has_ul = is_ul.any(axis=1).tolist()
    back = np.array([0, w, 1, 0], dtype=np.intp)  # how far back each mode's source lies
    prev = ref
    for k in range(n):
        v = out[k]
        if prev is not None:
            v[...] = prev
        v[is_lit[k]] = literals[ends[k - 1] if k else 0:ends[k]]
        if has_ul[k]:
            ul = np.flatnonzero(is_ul[k])
            ptr = np.arange(hw)
            src = ul - back.take(modes[k].take(ul))
            ptr[ul] = src
            while True:
                nxt = ptr.take(src)
                if np.array_equal(nxt, src):
                    break
                ptr[ul] = src = nxt
            v[ul] = v.take(src)
        prev = v
    return out
