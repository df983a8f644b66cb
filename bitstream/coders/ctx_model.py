"""The integer probability model of the `ctx` coder (SPEC.md, "ctx coder"): flag contexts, sub-symbol
layout of large codebooks, and adaptive counts. Shared by the coder and by `Prior.from_tokens`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import bitpack

MAX_PART_BITS = 14
CTX_A = 11  # contexts of pass A (checkerboard parity 0): 0 = no previous flags, 1 + 5 * g + n(g)
CTX_B = 15  # contexts of pass B (parity 1): 11 + 3 * n(f) + (g or 2 when there are no previous flags)
NUM_FLAG_CTX = CTX_A + CTX_B


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


def join_parts(parts: list[np.ndarray], layout: PartLayout) -> np.ndarray:
    """Inverse of split_parts -> int64 (N,)."""
    out = np.zeros(parts[0].shape, dtype=np.int64)
    for part, shift in zip(parts, layout.shifts):
        out |= part.astype(np.int64) << shift
    return out


@lru_cache(maxsize=16)
def parity_positions(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat raster indices of the checkerboard halves: ((i + j) even, (i + j) odd)."""
    parity = (np.add.outer(np.arange(h), np.arange(w)) & 1).ravel()
    return np.flatnonzero(parity == 0), np.flatnonzero(parity == 1)


def neighbour_sum(flags: np.ndarray) -> np.ndarray:
    """flags (..., h, w) of 0/1 -> uint8 (..., h, w): set 4-neighbours (up, down, left, right; outside = 0)."""
    out = np.zeros(flags.shape, dtype=np.uint8)
    out[..., 1:, :] += flags[..., :-1, :]
    out[..., :-1, :] += flags[..., 1:, :]
    out[..., :, 1:] += flags[..., :, :-1]
    out[..., :, :-1] += flags[..., :, 1:]
    return out


def contexts_a(prev: np.ndarray | None, pos: np.ndarray) -> np.ndarray:
    """Pass-A contexts (uint8) at flat positions `pos` from the previous step's flags `prev` (..., h, w);
    None (no previous flags) gives context 0 everywhere."""
    if prev is None:
        return np.zeros(pos.shape, dtype=np.uint8)
    flat = prev.reshape(prev.shape[:-2] + (-1,))
    return 1 + 5 * flat[..., pos] + neighbour_sum(prev).reshape(flat.shape)[..., pos]


def contexts_b(cur: np.ndarray, prev: np.ndarray | None, pos: np.ndarray) -> np.ndarray:
    """Pass-B contexts (uint8) at flat positions `pos`: set 4-neighbours in this step's flags `cur` (..., h, w)
    (only pass-A positions are read) and the previous step's flag at the same place (2 when there is none)."""
    nb = neighbour_sum(cur).reshape(cur.shape[:-2] + (-1,))[..., pos]
    here = 2 if prev is None else prev.reshape(prev.shape[:-2] + (-1,))[..., pos]
    return (CTX_A + 3 * nb + here).astype(np.uint8)


NO_PREV_B = np.array([CTX_A + 3 * n + 2 for n in range(5)])  # pass-B contexts used when there are no previous flags


def add_counts(table: np.ndarray, observed: np.ndarray, limit: int) -> None:
    """table += observed, then halve (c + 1) >> 1 every row whose sum exceeds `limit`, until none does.

    table: int64, or float64 holding integers (exact below 2**53, as the ctx coder keeps its tables so that
    constriction gets them without a conversion), (rows, n) or (n,), updated in place. Integer arithmetic
    only, so every machine gets the same counts.
    """
    table += observed
    rows = table.reshape(-1, table.shape[-1])
    while True:
        over = rows.sum(axis=1) > limit
        if not over.any():
            return
        rows[over] = (rows[over] + 1) // 2  # == (c + 1) >> 1 on integers, also exact on float64 integers


def flag_observations(ctx: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Counts (NUM_FLAG_CTX, 2) of flag values per context."""
    return np.bincount(ctx.astype(np.int64) * 2 + flags, minlength=2 * NUM_FLAG_CTX).reshape(NUM_FLAG_CTX, 2)


def step_flags(grid: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(h, w) uint8: 1 where the token equals the previous step's token at the same place."""
    return (grid == ref).view(np.uint8)

