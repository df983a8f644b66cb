"""The `ctx` coder's loops as numba kernels (SPEC.md §6.5), one call per step and direction.

The ANS arithmetic is constriction's `AnsCoder` (32-bit words, 64-bit state, 24-bit precision) with models
quantized from integer counts as `Categorical(counts, perfect=False)` does, byte for byte (the tests check
it against constriction). The encoder side never touches the ANS state while the model runs: the model
kernels append each symbol's (left edge, probability) to a buffer in decoding order (`emit`), and
`encode_reverse` pushes the whole buffer last symbol first. The decoder side keeps its state in two small
arrays that the model kernels pass on (`decode`), so a whole step decodes in one call.

Each model kernel serves both directions: with `enc` it reads the symbols from its input and appends them
to the encoder's buffer, else it decodes them and writes them out. So the encoder and the decoder share
one description of the symbol order, the contexts and the count updates, and cannot drift apart. Counts
are int64 tables updated in place; cdf caches hold rows' quantized edges, recomputed only where counts
changed (`dirty`).

Arguments shared by the kernels: buf, io, state, words: the ANS side (`code`); limit: the count limit of
a row (a row whose sum exceeds it is halved, (c + 1) >> 1, until it does not). All kernels live in this
one module: numba's cache notices a change to a kernel's own file only, so a kernel must not call a cached
kernel of another module.
"""

from __future__ import annotations


import os
import tempfile

import numpy as np


def _choose_cache_dir() -> None:
    """numba caches compiled kernels beside this file (`cache=True`); where that folder is read-only (a
    system-wide install) and NUMBA_CACHE_DIR is not set, use a per-user folder that is writable."""
    if "NUMBA_CACHE_DIR" in os.environ or os.access(os.path.dirname(__file__), os.W_OK):
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for root in (base, tempfile.gettempdir()):
        path = os.path.join(root, f"otok-numba-{os.getuid()}" if root != base else "otok/numba")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            os.environ["NUMBA_CACHE_DIR"] = path
            return


_choose_cache_dir()

from numba import njit  # noqa: E402  (after the cache folder is chosen: numba reads it on import)

PRECISION = 24
ONE = 1 << PRECISION  # the quantized probabilities of a model sum to 2**24
_MASK = np.uint64(ONE - 1)
_WORD = np.uint64(32)
_LOW = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(PRECISION)
_TOP = np.uint64(64 - PRECISION)  # state >> 40 >= p: a word must go out before encoding
_REFILL = np.uint64(1 << 32)
_U32 = np.uint64(32)


@njit(cache=True)
def quantize(counts, cdf) -> None:
    """Edges cdf[0..n] (int64, cdf[n] = 2**24) of the model of integer counts (n,) (all >= 1): with
    C_s = counts[0] + ... + counts[s - 1] and scale = float64(2**24 - n) / float64(sum), cdf[s] =
    trunc(C_s * scale) + s. Exact in IEEE double for integer counts (no fastmath)."""
    n = counts.shape[0]
    total = 0.0
    for s in range(n):
        total += float(counts[s])
    scale = float(ONE - n) / total
    acc = 0.0
    for s in range(n):
        cdf[s] = np.int64(acc * scale) + s
        acc += float(counts[s])
    cdf[n] = ONE


@njit(cache=True, inline="always")
def emit(buf, io, left, prob) -> None:
    """Append one symbol's (left edge, probability) to the encoder's buffer (io[0]: its length)."""
    buf[io[0]] = (np.uint64(left) << _U32) | np.uint64(prob)
    io[0] += 1


@njit(cache=True, inline="always")
def decode(cdf, n, state, io, words) -> int:
    """Decode one symbol of the model with edges cdf[0..n] -> the symbol. state[0]: the ANS state;
    io[1]: words not yet read (words[:io[1]] is the stack, read from its end)."""
    x = state[0]
    q = np.int64(x & _MASK)
    lo, hi = 0, n
    while hi - lo > 1:  # the symbol s with cdf[s] <= q < cdf[s + 1]
        mid = (lo + hi) >> 1
        if cdf[mid] <= q:
            lo = mid
        else:
            hi = mid
    left = cdf[lo]
    x = (x >> _SHIFT) * np.uint64(cdf[lo + 1] - left) + np.uint64(q - left)
    if x < _REFILL and io[1] > 0:
        io[1] -= 1
        x = (x << _WORD) | np.uint64(words[io[1]])
    state[0] = x
    return lo


@njit(cache=True, inline="always")
def code(enc, symbol, cdf, n, buf, io, state, words) -> int:
    """Encode `symbol` (enc: appended to buf) or decode one (symbol ignored) with edges cdf[0..n]."""
    if enc:
        emit(buf, io, cdf[symbol], cdf[symbol + 1] - cdf[symbol])
        return symbol
    return decode(cdf, n, state, io, words)


@njit(cache=True)
def encode_reverse(buf, n, out) -> int:
    """Push the symbols buf[:n] (decoding order) last first into an empty coder -> the number of u32
    words written to `out` (at least n + 2 long): the words emitted, then the state's, low word first,
    until the state is 0 (constriction's `get_compressed()`)."""
    x = np.uint64(0)
    k = 0
    for i in range(n - 1, -1, -1):
        v = buf[i]
        left = v >> _U32
        p = v & _LOW
        if (x >> _TOP) >= p:
            out[k] = np.uint32(x & _LOW)
            k += 1
            x >>= _WORD
        x = ((x // p) << _SHIFT) | (x % p + left)
    while x != np.uint64(0):
        out[k] = np.uint32(x & _LOW)
        k += 1
        x >>= _WORD
    return k


class Decoder:
    """An ANS stack read from its compressed words (constriction's `AnsCoder(words)`): the state is the
    last two words (the last one high), and decoding reads the rest from the end."""

    def __init__(self, words: np.ndarray) -> None:
        self.words = words
        self.state = np.zeros(1, dtype=np.uint64)
        self.io = np.zeros(2, dtype=np.int64)  # [unused, words left]
        n = len(words)
        if n and words[-1] == 0:
            raise ValueError("ANS data never ends in a zero word")
        x = 0
        for _ in range(min(2, n)):
            n -= 1
            x = (x << 32) | int(words[n])
        self.state[0] = x
        self.io[1] = n

    def is_empty(self) -> bool:
        return int(self.io[1]) == 0 and int(self.state[0]) == 0


# -- the ctx model ------------------------------------------------------------------------------------
NONE = 4  # the mode read outside the grid, or where there is no previous step
PIECE_FACTOR = 8  # a mode pass round takes at most 8 x (a context's count sum) of its modes
FIRST_ROUND = 16  # literal model 1: the first round of a step's literals


@njit(cache=True)
def _halve(row, limit) -> int:
    """Halve `row` until its sum is at most `limit` -> its sum."""
    total = 0
    for s in range(row.shape[0]):
        total += row[s]
    while total > limit:
        total = 0
        for s in range(row.shape[0]):
            row[s] = (row[s] + 1) >> 1
            total += row[s]
    return total


# -- modes (§6.5.3–6.5.6) ----------------------------------------------------------------------------
@njit(cache=True)
def _mode_pass(enc, parity, modes, prev, has_prev, h, w, counts, sums, limit, buf, io, state, words) -> None:
    """One checkerboard pass of a step's modes ((i + j) % 2 == parity: 0 = pass A, 1 = pass B), coded in
    rounds; modes (h * w) uint8 are read (enc) or written, prev (h * w) are the previous step's."""
    base = 0 if parity == 0 else 125
    n_c = np.zeros(125, dtype=np.int64)
    ctx = np.empty(h * w, dtype=np.int64)
    for i in range(h):
        for j in range((i + parity) & 1, w, 2):
            p_here = prev[i * w + j] if has_prev else NONE
            if parity == 0:
                if has_prev:
                    up = prev[(i - 1) * w + j] if i > 0 else NONE
                    left = prev[i * w + j - 1] if j > 0 else NONE
                    c = 25 * p_here + 5 * up + left
                else:
                    c = 124
            else:
                up = modes[(i - 1) * w + j] if i > 0 else NONE
                left = modes[i * w + j - 1] if j > 0 else NONE
                c = 25 * up + 5 * left + p_here
            ctx[i * w + j] = c
            n_c[c] += 1
    start = np.zeros(126, dtype=np.int64)
    for c in range(125):
        start[c + 1] = start[c] + n_c[c]
    order = np.empty(start[125], dtype=np.int64)  # positions by context, raster order inside one
    fill = start[:125].copy()
    for i in range(h):
        for j in range((i + parity) & 1, w, 2):
            c = ctx[i * w + j]
            order[fill[c]] = i * w + j
            fill[c] += 1
    budget = np.empty(125, dtype=np.int64)
    for c in range(125):
        budget[c] = sums[base + c]
    done = np.zeros(125, dtype=np.int64)
    left_total = start[125]
    cdf = np.empty(5, dtype=np.int64)
    seen = np.zeros((125, 4), dtype=np.int64)
    while left_total > 0:  # rounds: from each context the next min(left, 8 x budget) of its modes
        for c in range(125):
            q = min(n_c[c] - done[c], PIECE_FACTOR * budget[c])
            if q <= 0:
                continue
            quantize(counts[base + c], cdf)
            at = start[c] + done[c]
            for k in range(q):
                pos = order[at + k]
                m = code(enc, modes[pos], cdf, 4, buf, io, state, words)
                if not enc:
                    modes[pos] = m
                seen[c, m] += 1
            done[c] += q
            budget[c] += q
            left_total -= q
        for c in range(125):  # the round's counts
            total = seen[c, 0] + seen[c, 1] + seen[c, 2] + seen[c, 3]
            if total:
                for m in range(4):
                    counts[base + c, m] += seen[c, m]
                    seen[c, m] = 0
                sums[base + c] += total
                if sums[base + c] > limit:
                    sums[base + c] = _halve(counts[base + c], limit)


@njit(cache=True)
def code_modes(enc, modes, prev, has_prev, h, w, counts, sums, limit, buf, io, state, words) -> None:
    """A step's modes: pass A, then pass B (contexts from the previous step's modes `prev` and pass A's)."""
    _mode_pass(enc, 0, modes, prev, has_prev, h, w, counts, sums, limit, buf, io, state, words)
    _mode_pass(enc, 1, modes, prev, has_prev, h, w, counts, sums, limit, buf, io, state, words)


# -- literal model 0 (§6.5.2, §6.5.6) ------------------------------------------------------------------
@njit(cache=True)
def code_literals0(enc, values, shifts, alphabets, tables, sums, increment, limit, cdf,
                   buf, io, state, words) -> None:
    """A step's literals `values` (int64, read or written as the OR of their parts): for each part, all its
    sub-symbols with the part's table, then the table counted. tables (parts, A) int64; cdf (A + 1,)."""
    n = values.shape[0]
    if not enc:
        values[:] = 0
    for j in range(shifts.shape[0]):
        a = alphabets[j]
        table = tables[j, :a]
        quantize(table, cdf)
        mask = a - 1 if j > 0 else -1
        for k in range(n):
            s = values[k] >> shifts[j]
            if mask >= 0:
                s &= mask
            s = code(enc, s, cdf, a, buf, io, state, words)
            if not enc:
                values[k] |= s << shifts[j]
            table[s] += increment
        sums[j] += increment * n
        if sums[j] > limit:
            sums[j] = _halve(table, limit)


# -- literal model 1 (§6.5.8) ----------------------------------------------------------------------------
@njit(cache=True)
def _piece(enc, ranks, pos, ctx, a, b, gtab, gsums, gcdf, gdirty, ltab, lsums, lcdf, ldirty, lshifts, lwidths,
           lo_bits, groups, k, increment, limit, buf, io, state, words) -> bool:
    """The literals pos[a:b] (ranks read or written) with group contexts ctx[a:b]: their groups, then
    each lo part; then the counts. -> False when a decoded rank is outside the codebook."""
    for t in range(a, b):
        c = ctx[t]
        if gdirty[c]:
            quantize(gtab[c], gcdf[c])
            gdirty[c] = False
        g = code(enc, ranks[pos[t]] >> lo_bits, gcdf[c], groups, buf, io, state, words)
        if not enc:
            ranks[pos[t]] = g << lo_bits
    for j in range(lshifts.shape[0]):
        width = lwidths[j]
        for t in range(a, b):
            r = ranks[pos[t]]
            g = r >> lo_bits
            if ldirty[j, g]:
                quantize(ltab[j, g, :width], lcdf[j, g, :width + 1])
                ldirty[j, g] = False
            s = code(enc, (r >> lshifts[j]) & (width - 1), lcdf[j, g], width, buf, io, state, words)
            if not enc:
                ranks[pos[t]] = r | (s << lshifts[j])
    ok = True
    for t in range(a, b):
        r = ranks[pos[t]]
        if r >= k:
            ok = False
            continue
        c, g = ctx[t], r >> lo_bits
        gtab[c, g] += increment
        gsums[c] += increment
        gdirty[c] = True
        for j in range(lshifts.shape[0]):
            s = (r >> lshifts[j]) & (lwidths[j] - 1)
            ltab[j, g, s] += increment
            lsums[j, g] += increment
            ldirty[j, g] = True
    for t in range(a, b):  # halve the rows that passed the limit
        c = ctx[t]
        if gsums[c] > limit:
            gsums[c] = _halve(gtab[c], limit)
        r = ranks[pos[t]]
        if r < k:
            g = r >> lo_bits
            for j in range(lshifts.shape[0]):
                if lsums[j, g] > limit:
                    lsums[j, g] = _halve(ltab[j, g, :lwidths[j]], limit)
    return ok


@njit(cache=True)
def code_literals1(enc, modes, ranks, ref, has_ref, ref_is_first, h, w, gtab, gsums, gcdf, gdirty,
                   ltab, lsums, lcdf, ldirty, lshifts, lwidths, lo_bits, groups, k, increment, limit,
                   buf, io, state, words) -> bool:
    """A step's literals by group (ranks (h * w) int64 of the step: read, or written at literal positions;
    ref: the previous step's ranks when has_ref). In a segment's first step, row by row in the context of
    the group above (the decoder resolves each row before the next: `ranks` then holds the whole step);
    else in rounds of 16, 16, 32, 64, ... in the context of the previous step's group at the same place.
    -> False when a decoded rank is outside the codebook."""
    pos = np.empty(h * w, dtype=np.int64)
    ctx = np.empty(h * w, dtype=np.int64)
    ok = True
    if not has_ref:
        for i in range(h):
            n = 0
            for j in range(w):
                if modes[i * w + j] == 3:
                    pos[n] = i * w + j
                    ctx[n] = 0 if i == 0 else 1 + 2 * groups + (ranks[(i - 1) * w + j] >> lo_bits)
                    n += 1
            if n:
                ok &= _piece(enc, ranks, pos, ctx, 0, n, gtab, gsums, gcdf, gdirty, ltab, lsums, lcdf, ldirty,
                             lshifts, lwidths, lo_bits, groups, k, increment, limit, buf, io, state, words)
            if not enc:
                for j in range(w):  # the row's values: U from the row above, L from the left
                    m = modes[i * w + j]
                    if m == 1:
                        ranks[i * w + j] = ranks[(i - 1) * w + j]
                    elif m == 2:
                        ranks[i * w + j] = ranks[i * w + j - 1]
        return ok
    offset = 1 if ref_is_first else 1 + groups
    n = 0
    for p in range(h * w):
        if modes[p] == 3:
            pos[n] = p
            ctx[n] = offset + (ref[p] >> lo_bits)
            n += 1
    a = 0
    while a < n:
        b = min(n, max(FIRST_ROUND, 2 * a))
        ok &= _piece(enc, ranks, pos, ctx, a, b, gtab, gsums, gcdf, gdirty, ltab, lsums, lcdf, ldirty,
                     lshifts, lwidths, lo_bits, groups, k, increment, limit, buf, io, state, words)
        a = b
    return ok


@njit(cache=True)
def resolve(modes, ref, has_ref, w, out) -> None:
    """A step's values in place (out, h * w, holding its literals at their places) from its modes and the
    previous step `ref`: raster order, each T, U or L taking its source's value."""
    for p in range(out.shape[0]):
        m = modes[p]
        if m == 0:
            out[p] = ref[p] if has_ref else 0
        elif m == 1:
            out[p] = out[p - w]
        elif m == 2:
            out[p] = out[p - 1]
