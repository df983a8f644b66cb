"""The integer probability model of the `ctx` coder (SPEC.md, "ctx coder"): modes and their contexts,
sub-symbol layout of large codebooks, and adaptive counts. Shared by the coder and by `Prior.from_tokens`.

Every position of a step has a mode: 0 = T (the token of the previous step at this place), 1 = U (the
token above), 2 = L (the token to the left), 3 = a literal. The encoder takes the first that holds, in
that order (T only when the segment has a previous step, U only below the first row, L only right of the
first column).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import bitpack

MAX_PART_BITS = 14
MODE_T, MODE_U, MODE_L, MODE_LIT = 0, 1, 2, 3
NUM_MODES = 4
NONE = 4  # a mode that is not there: outside the grid, or no previous step in the segment
CTX_A = 125  # contexts of pass A ((i + j) even): 25 * P(i, j) + 5 * P(i - 1, j) + P(i, j - 1)
CTX_B = 125  # contexts of pass B ((i + j) odd): 125 + 25 * M(i - 1, j) + 5 * M(i, j - 1) + P(i, j)
NUM_MODE_CTX = CTX_A + CTX_B
FIRST_A = 25 * NONE + 5 * NONE + NONE  # the pass-A context of every position of a segment's first step
PASS_ROWS = (slice(0, CTX_A), slice(CTX_A, NUM_MODE_CTX))  # the count rows of pass A and of pass B
# A pass is coded in rounds (see round_pieces): with counts of some weight (a prior, or a few steps seen)
# that is the whole pass in one round; fresh contexts learn within the pass.
PIECE_FACTOR = 8


@dataclass(frozen=True)
class PartLayout:
    """How an index splits into sub-symbols, most significant first: part i = (x >> shifts[i]) mod 2**bits."""

    shifts: tuple[int, ...]
    alphabets: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.shifts)


@lru_cache(maxsize=64)
def part_layout(codebook_size: int) -> PartLayout:
    """Split ceil(log2 K) bits into n = ceil(bits / 14) parts of ceil(bits / n) bits (the first may be smaller)."""
    bits = bitpack.bits_for(codebook_size)
    n = -(-bits // MAX_PART_BITS)
    part_bits = -(-bits // n)
    shifts = tuple(part_bits * (n - 1 - i) for i in range(n))
    alphabets = (((codebook_size - 1) >> shifts[0]) + 1,) + (1 << part_bits,) * (n - 1)
    return PartLayout(shifts, alphabets)


def split_parts(values: np.ndarray, layout: PartLayout) -> list[np.ndarray]:
    """values (N,) -> one int32 array (N,) per part."""
    mask = layout.alphabets[-1] - 1
    return [(values >> s if i == 0 else (values >> s) & mask).astype(np.int32) for i, s in enumerate(layout.shifts)]


# The grouped literal model (literal_model 1, format 1.2): a literal is coded through its rank in the
# prior's code order, as a group (the top GROUP_BITS bits of the rank, in the context of the group of the
# previous step's token at the same place, or in a segment's first step of the token above) and then the
# bits below (one or more parts of at most LO_PART_BITS bits, each in the context of the group). Counts
# adapt in rounds inside a step, or row by row in a segment's first step.
GROUP_BITS = 6
LO_PART_BITS = 7


@dataclass(frozen=True)
class GroupLayout:
    """How a rank r in [0, K) splits: group r >> lo_bits (alphabet `groups`), then the lo parts, most
    significant first: part j = (r >> lo_shifts[j]) mod lo_alphabets[j]."""

    lo_bits: int
    groups: int
    lo_shifts: tuple[int, ...]
    lo_alphabets: tuple[int, ...]

    @property
    def contexts(self) -> int:
        """Group contexts: 0 = nothing known (row 0 of a segment's first step); 1 + g = the previous step's
        token is in group g and that step is the segment's first (an image step); 1 + G + g = the same
        after a later step; 1 + 2G + g = in a segment's first step, the token above is in group g."""
        return 3 * self.groups + 1


@lru_cache(maxsize=64)
def group_layout(codebook_size: int) -> GroupLayout:
    """GROUP_BITS (or all b = ceil(log2 K) bits when fewer) for the group; the b - GROUP_BITS bits below
    in m = ceil(lo / LO_PART_BITS) parts of q = ceil(lo / m) bits, the first taking what is left."""
    bits = bitpack.bits_for(codebook_size)
    lo_bits = bits - min(GROUP_BITS, bits)
    m = -(-lo_bits // LO_PART_BITS)
    q = -(-lo_bits // m) if m else 0
    widths = [lo_bits - q * (m - 1)] + [q] * (m - 1) if m else []
    shifts = tuple(q * (m - 1 - j) for j in range(m))
    return GroupLayout(lo_bits, ((codebook_size - 1) >> lo_bits) + 1, shifts, tuple(1 << b for b in widths))


def group_contexts(ref_ranks: np.ndarray | None, n: int, layout: GroupLayout, ref_is_first: bool) -> np.ndarray:
    """Group contexts (intp (n,)) of a step's literals, from the ranks of the previous step's tokens at
    their places (None for a segment's first step: 0 everywhere): 1 + their group, plus G unless that
    previous step is the segment's first (an image step's tokens predict a video step's differently)."""
    if ref_ranks is None:
        return np.zeros(n, dtype=np.intp)
    return (ref_ranks >> layout.lo_bits).astype(np.intp) + (1 if ref_is_first else 1 + layout.groups)


def key_step_contexts(ranks: np.ndarray, at: np.ndarray, layout: GroupLayout) -> tuple[np.ndarray, np.ndarray]:
    """Group contexts (intp (n,)) of the literals of a segment's first step, in raster order, from the
    step's ranks (h, w) and its literal positions `at` (bool (h, w)): 1 + 2G + the group of the token
    above, 0 in row 0; and the rows' boundaries in that order (the step's literals are coded and counted
    row by row, since a decoder knows a row's tokens only after it)."""
    i, j = np.nonzero(at)
    above = ranks[np.maximum(i - 1, 0), j] >> layout.lo_bits
    ctx = np.where(i > 0, above + 1 + 2 * layout.groups, 0).astype(np.intp)
    return ctx, np.searchsorted(i, np.arange(at.shape[0] + 1))


def split_ranks(ranks: np.ndarray, layout: GroupLayout) -> tuple[np.ndarray, list[np.ndarray]]:
    """ranks (N,) -> (groups intp (N,), one int32 array (N,) per lo part)."""
    groups = (ranks >> layout.lo_bits).astype(np.intp)
    parts = [((ranks >> s) & (a - 1)).astype(np.int32) for s, a in zip(layout.lo_shifts, layout.lo_alphabets)]
    return groups, parts


@lru_cache(maxsize=16)

@lru_cache(maxsize=16)
def parity_a(h: int, w: int) -> np.ndarray:
    """bool (h, w): True at pass-A positions ((i + j) even)."""
    return (np.add.outer(np.arange(h), np.arange(w)) & 1) == 0


def mode_contexts(modes: np.ndarray, prev: np.ndarray | None) -> np.ndarray:
    """Contexts (uint8 (n, h, w), 0..249) of the modes (n, h, w) of consecutive steps of a segment: pass A
    at (i + j) even, pass B at (i + j) odd. `prev` (h, w): the modes of the step before modes[0] (None:
    modes[0] starts a segment); modes[k] has previous modes modes[k - 1] for k > 0."""
    n, h, w = modes.shape
    # P: each step's previous modes, bordered by NONE above and to the left -> (n, h + 1, w + 1)
    pp = np.full((n, h + 1, w + 1), NONE, dtype=np.uint8)
    if prev is not None:
        pp[0, 1:, 1:] = prev
    pp[1:, 1:, 1:] = modes[:-1]
    mp = np.full((n, h + 1, w + 1), NONE, dtype=np.uint8)
    mp[:, 1:, 1:] = modes
    p_here = pp[:, 1:, 1:]
    ctx_a = 25 * p_here + 5 * pp[:, :-1, 1:] + pp[:, 1:, :-1]
    ctx_b = CTX_A + 25 * mp[:, :-1, 1:] + 5 * mp[:, 1:, :-1] + p_here
    return np.where(parity_a(h, w), ctx_a, ctx_b)


def round_pieces(sizes: np.ndarray, sums: np.ndarray) -> tuple[np.ndarray, list[list[tuple[int, int]]]]:
    """How a pass splits into rounds.

    sizes: the pass's symbols per context; sums: each context's count sum at the start of the pass.
    Round k takes from context c the next q = min(left, PIECE_FACTOR * b) of its symbols, where b is the
    sum at the start of the pass plus the symbols of c in earlier rounds (halving is not applied to b,
    so the split does not depend on the symbols). A pass with sizes <= PIECE_FACTOR * sums is one round.
    -> (round 0's piece of every context (int64 array), the later rounds: [(context, piece), ...] each,
    contexts ascending).
    """
    budget = sums.astype(np.int64)
    first = np.minimum(sizes, PIECE_FACTOR * budget)
    later: list[list[tuple[int, int]]] = []
    left = {c: int(sizes[c] - first[c]) for c in np.flatnonzero(first < sizes).tolist()}
    spent = {c: int(budget[c] + first[c]) for c in left}
    while left:
        later.append([])
        for c in list(left):
            q = min(left[c], PIECE_FACTOR * spent[c])
            later[-1].append((c, q))
            spent[c] += q
            left[c] -= q
            if not left[c]:
                del left[c]
    return first, later


def mode_observations(ctx: np.ndarray, modes: np.ndarray) -> np.ndarray:
    """Counts (NUM_MODE_CTX, NUM_MODES) int64 of modes per context (any matching shapes)."""
    key = ctx.reshape(-1).astype(np.intp) * NUM_MODES + modes.reshape(-1)
    return np.bincount(key, minlength=NUM_MODE_CTX * NUM_MODES).reshape(NUM_MODE_CTX, NUM_MODES)


def add_counts(table: np.ndarray, observed: np.ndarray, limit: int) -> None:
    """table += observed, then halve (c + 1) >> 1 every row whose sum exceeds `limit`, until none does.

    table: int64 (or float64 holding integers, exact below 2**53: the tests' constriction oracle), (rows, n)
    or (n,), updated in place. Integer arithmetic only, so every machine gets the same counts.
    """
    table += observed
    rows = table.reshape(-1, table.shape[-1])
    while True:
        over = rows.sum(axis=1) > limit
        if not over.any():
            return
        rows[over] = (rows[over] + 1) // 2  # == (c + 1) >> 1 on integers, also exact on float64 integers
