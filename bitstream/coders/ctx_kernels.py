"""The `ctx` coder's loops as numba kernels (SPEC.md §6.5), one call per chunk and direction (`code_chunk`).

The ANS arithmetic is constriction's `AnsCoder` (32-bit words, 64-bit state, 24-bit precision) with models
quantized from integer counts as `Categorical(counts, perfect=False)` does, byte for byte (the tests check
it against constriction). The encoder side never touches the ANS state while the model runs: the model
kernels put each symbol's (left edge, probability) in a buffer in decoding order, and `encode_reverse`
pushes the whole buffer last symbol first (dividing by a reciprocal, `push`). The decoder keeps its state
in two small arrays (`Decoder`) that the kernels read and write once per run of symbols (`load`, `store`),
so a chunk decodes in one call.

Each model kernel serves both directions: with `enc` it reads the symbols from its input and appends them
to the encoder's buffer, else it decodes them and writes them out. So the encoder and the decoder share
one description of the symbol order, the contexts and the count updates, and cannot drift apart. Counts
are int64 tables updated in place, with their row sums. A model is built whole (`build`) where many
symbols use it: a mode context in a round, a literal part of model 0 in a step, the rows of a large piece
of model 1; else model 1 finds a symbol's edges from its row's counts and block sums.

Arguments shared by the kernels: buf, io, state, words: the ANS side; limit: the count limit of a row (a
row whose sum exceeds it is halved, (c + 1) >> 1, until it does not). numba notes: all kernels live in
this one module (numba's cache notices a change to a kernel's own file only); symbol loops call no other
function and inline none (numba then counts references to the arrays at every turn, several times the
cost of the coding).
"""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np


def _writable(path: str) -> bool:
    """Whether `path` is (or can be made) a folder this process can write to."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK)


def _choose_cache_dir() -> bool:
    """numba caches compiled kernels beside this file (`cache=True`); where that folder is read-only (a
    system-wide install), or NUMBA_CACHE_DIR names a folder that cannot be written, use a per-user folder
    that is writable (XDG_CACHE_HOME or ~/.cache, else the temporary folder). -> False where there is
    none: the kernels are then compiled in each process, not cached (issue 29 D.16: numba raised at import)."""
    given = os.environ.get("NUMBA_CACHE_DIR")
    if given and _writable(given):
        return True
    os.environ.pop("NUMBA_CACHE_DIR", None)  # (one that cannot be written would make numba raise)
    if os.access(os.path.dirname(__file__), os.W_OK):
        return True
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidates = [os.path.join(base, "otok", "numba")]
    try:
        candidates.append(os.path.join(tempfile.gettempdir(), f"otok-numba-{os.getuid()}"))
    except (OSError, AttributeError):  # no usable temporary folder at all; (os.getuid: not on Windows)
        pass
    for path in candidates:
        if _writable(path):
            os.environ["NUMBA_CACHE_DIR"] = path
            return True
    return False


CACHING = _choose_cache_dir()

from llvmlite import ir  # noqa: E402
from numba import njit, types  # noqa: E402  (after the cache folder is chosen: numba reads it on import)
from numba.core import config as _numba_config  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

_numba_config.CACHE_DIR = os.environ.get("NUMBA_CACHE_DIR", "")  # (numba may have been imported before us)


def _no_cache_warning() -> None:
    """One line on stderr (a warning without a source line), once."""
    warnings.warn_explicit("no writable folder for numba's cache (set NUMBA_CACHE_DIR to one): the ctx coder's "
                           "kernels are compiled in every process", RuntimeWarning, "otok", 0)


if not CACHING:
    _no_cache_warning()


def kernel(**options):
    """numba's njit as the kernels use it: cached on disk where a folder can be written (else compiled in
    each process); NumPy's error model (no check for a division by zero, which the kernels never do: it
    made a loop with a division several times slower)."""
    def decorate(fn):
        global CACHING
        if CACHING:
            try:
                return njit(cache=True, error_model="numpy", **options)(fn)
            except RuntimeError as e:  # numba found no folder it could write after all
                if "cannot cache" not in str(e):
                    raise
                CACHING = False
                _no_cache_warning()
        return njit(error_model="numpy", **options)(fn)
    return decorate


def compiled_on_disk() -> bool:
    """Whether numba's cache holds every kernel compiled from this file as it is now; False after an install
    or a change of this file, when the first use compiles them (tens of seconds), and where nothing is
    cached. (numba has no public call for it: its cache's index files are looked at.)"""
    if not CACHING:
        return False
    stamp = os.stat(__file__).st_mtime
    try:
        indexes = [value._cache._cache_file._index_path for value in globals().values()
                   if hasattr(value, "targetoptions") and value.targetoptions.get("inline") != "always"]
    except AttributeError:  # another numba's internals: say nothing rather than something wrong
        return True
    return all(os.path.exists(path) and os.stat(path).st_mtime >= stamp for path in indexes)


PRECISION = 24
ONE = 1 << PRECISION  # the quantized probabilities of a model sum to 2**24
_MASK = np.uint64(ONE - 1)
_WORD = np.uint64(32)
_LOW = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(PRECISION)
_TOP = np.uint64(64 - PRECISION)  # state >> 40 >= p: a word must go out before encoding
_REFILL = np.uint64(1 << 32)
_U32 = np.uint64(32)
_ONE_U = np.uint64(ONE)


@kernel()
def lut_shift(n) -> int:
    """How the decoder finds a symbol of a model of n symbols: by a binary search of its edges (0: small
    models, rebuilt often) or, above 256 symbols, a lookup of 2**(24 - shift) buckets (one or two per
    symbol, at most 2**13: a lookup is built every step, and on small grids building it costs more than finding)."""
    if n <= 256:
        return 0
    bits = 1
    while (1 << bits) < n:
        bits += 1
    return PRECISION - min(13, bits)


@kernel()
def build(counts, row, n, total, cdf, lut, shift, with_lut) -> None:
    """The model of row `row` of a table of integer counts (all >= 1, summing to `total`): its edges
    cdf[row, :n + 1], and with_lut (the decoder, shift > 0) its lookup lut[row, b] = the symbol whose
    interval holds the quantile b << shift.

    With C_s = counts[row, 0] + ... + counts[row, s - 1] and scale = float64(2**24 - n) / float64(total),
    cdf[row, s] = trunc(float64(C_s) * scale) + s (cdf[row, n] = 2**24): constriction's fast quantization,
    exact in IEEE double for integer counts (no fastmath); C_s is summed in integers (the float sums
    constriction forms are exact below 2**53, so equal)."""
    scale = float(ONE - n) / float(total)
    acc = 0
    for s in range(n):
        cdf[row, s] = np.int64(float(acc) * scale) + s
        acc += counts[row, s]
    cdf[row, n] = ONE
    if with_lut and shift:  # lut[b] = the number of edges cdf[1..n-1] at most b << shift: each edge
        # counted in the first bucket that starts at or above it, then summed (no branch to guess per edge)
        buckets, up = ONE >> shift, (1 << shift) - 1
        for b in range(buckets):
            lut[row, b] = 0
        for s in range(1, n):
            b = (cdf[row, s] + up) >> shift
            if b < buckets:
                lut[row, b] += 1
        acc = 0
        for b in range(buckets):
            acc += lut[row, b]
            lut[row, b] = acc


@kernel()
def code_run(enc, values, order, at, count, bits, mask, cdf, lut, row, n, shift, hist, increment,
             buf, io, state, words) -> None:
    """Code `count` symbols with the model of n symbols of edges cdf[row] (decoder: found by the lookup
    lut[row] when shift > 0, `build`, else by a binary search). Symbol k is (values[i] >> bits) & mask with
    i = order[at + k] (order None: i = at + k); the decoder ORs it in (values zero there before). Each
    symbol adds `increment` to hist[symbol]. (The decoder's modes and values start zeroed.) The ANS side: buf, io, state, words (`load`).

    Written out rather than as a function per symbol: numba's inlining of a function of several arrays
    counted references to them at every symbol, several times the cost of the coding."""
    p, x, left_words = load(io, state)
    top = 1
    while top * 2 <= n:
        top *= 2
    for k in range(at, at + count):
        i = k if order is None else order[k]
        if enc:
            s = (np.int64(values[i]) >> bits) & mask
            left = cdf[row, s]
            buf[p] = (np.uint64(left) << _U32) | np.uint64(cdf[row, s + 1] - left)
            p += 1
        else:
            q = np.int64(x & _MASK)
            if shift:  # the symbol s with cdf[s] <= q < cdf[s + 1]
                s = np.int64(lut[row, q >> shift])
                while cdf[row, s + 1] <= q:
                    s += 1
            else:  # branch-free: cdf[n] = 2**24 > q, so s stays below n
                s, step = np.int64(0), top
                while step:
                    t = min(s + step, n)
                    s = t if cdf[row, t] <= q else s
                    step >>= 1
            left = cdf[row, s]
            x = (x >> _SHIFT) * np.uint64(cdf[row, s + 1] - left) + np.uint64(q - left)
            if x < _REFILL and left_words > 0:
                left_words -= 1
                x = (x << _WORD) | np.uint64(words[left_words])
            values[i] |= s << bits
        hist[s] += increment
    store(io, state, p, x, left_words)


@kernel(inline="always")
def load(io, state):
    """The coder's position from its arrays: (at: symbols in the encoder's buffer, x: the decoder's
    state, left_words: the decoder's words not yet read)."""
    return io[0], state[0], io[1]


@kernel(inline="always")
def store(io, state, at, x, left_words) -> None:
    io[0], state[0], io[1] = at, x, left_words


@intrinsic
def _mulhi(typingctx, a, b):
    """The high 64 bits of the 128-bit product of two uint64 (one multiplication; numba has no 128-bit
    integers)."""
    def codegen(context, builder, signature, args):
        wide = ir.IntType(128)
        product = builder.mul(builder.zext(args[0], wide), builder.zext(args[1], wide))
        return builder.trunc(builder.lshr(product, ir.Constant(wide, 64)), ir.IntType(64))
    return types.uint64(types.uint64, types.uint64), codegen


_TWO64 = 2.0 ** 64
_SHRINK = 1.0 - 2.0 ** -52  # makes the float reciprocal round down (the proof at `reciprocal`)


@kernel(inline="always")
def reciprocal(p):
    """For a probability 1 <= p <= 2**24: m with 2**64 - 2**24 <= m * p <= 2**64, so that for every state
    x < p * 2**40 (what the encoder divides) the quotient x // p is _mulhi(x, m) or one more: x * m / 2**64
    <= x / p, and x / p - x * m / 2**64 = x * (2**64 - m * p) / (p * 2**64) < 1.

    Why m is such: f = float(2**64 / p) * (1 - 2**-52) lies in 2**64 / p * (1 - 2**-51, 1) (two roundings of
    at most 2**-53 and the factor), so its floor m has m * p < 2**64, and m * p >= 2**64 - 2**24 wherever
    2**-51 of 2**64 plus p is at most 2**24 (p <= 2**24 - 2**13). Above that, f is within 2**-11 of 2**64 / p,
    so m is floor(2**64 / p) or one less, and one more where (m + 1) * p <= 2**64 makes it that floor, whose
    product with p exceeds 2**64 - p. (The tests check every p.) Computed from p alone: off the state's
    dependency chain, where the division sat."""
    m = np.uint64(_TWO64 / float(p) * _SHRINK)
    return m + np.uint64(m * p <= np.uint64(0) - p)


@kernel(inline="always")
def push(x, p, left):
    """The encoder's step for a symbol of probability p and left edge `left` on a state x < p * 2**40:
    (x // p) << 24 | (x % p + left), with a reciprocal: a quotient q one short leaves a remainder r >= p,
    and (q << 24) + r + left is then 2**24 - p short of the result."""
    q = _mulhi(x, reciprocal(p))
    r = x - q * p
    y = (q << _SHIFT) + r + left
    return y + (_ONE_U - p) if r >= p else y


@kernel()
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
        x = push(x, p, left)
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
BIG_PIECE = 1024  # literal model 1: the decoder builds the models of a piece this long whole ...
BIG_PIECE_ENC = 512  # ... the encoder sooner (it builds no lookups) ...
ROWS_SHIFT = 18  # ... the decoder's lookups of 64 buckets


@kernel()
def _halve(table, row, n, limit) -> int:
    """Halve table[row, :n] until its sum is at most `limit` -> its sum."""
    total = 0
    for s in range(n):
        total += table[row, s]
    while total > limit:
        total = 0
        for s in range(n):
            table[row, s] = (table[row, s] + 1) >> 1
            total += table[row, s]
    return total


# -- modes (§6.5.3–6.5.6) ----------------------------------------------------------------------------
@kernel()
def step_modes(steps, ref):
    """Modes of steps (n, h, w) -> uint8 (n, h, w): at each place the first that holds of T (the token of
    the previous step: steps[k - 1], or `ref` (h, w) for steps[0]; None where steps[0] starts a segment),
    U (the token above), L (the token to the left), else a literal (3)."""
    n, h, w = steps.shape
    out = np.empty((n, h, w), dtype=np.uint8)
    for k in range(n):
        for i in range(h):
            for j in range(w):
                v = steps[k, i, j]
                if (steps[k - 1, i, j] == v) if k else (ref is not None and ref[i, j] == v):
                    out[k, i, j] = 0
                elif i and steps[k, i - 1, j] == v:
                    out[k, i, j] = 1
                elif j and steps[k, i, j - 1] == v:
                    out[k, i, j] = 2
                else:
                    out[k, i, j] = 3
    return out


@kernel()
def _mode_pass(enc, parity, modes, prev, has_prev, h, w, counts, sums, limit, cdf, lut,
               buf, io, state, words) -> None:
    """One checkerboard pass of a step's modes ((i + j) % 2 == parity: 0 = pass A, 1 = pass B), coded in
    rounds; modes (h * w) uint8 are read (enc) or written, prev (h * w) are the previous step's.
    cdf (250, 5), lut (250, buckets): the rows' models (scratch)."""
    base = 0 if parity == 0 else 125
    lanes = np.zeros((4, 125), dtype=np.int64)  # counted in 4 lanes: a run of one context is not one chain
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
            lanes[(j >> 1) & 3, c] += 1
    n_c = lanes[0] + lanes[1] + lanes[2] + lanes[3]
    start = np.zeros(126, dtype=np.int64)
    for c in range(125):
        start[c + 1] = start[c] + n_c[c]
    order = np.empty(start[125], dtype=np.int64)  # positions by context, raster order inside one
    fill = start[:125].copy()
    last, at = 0, fill[0]  # the place of the context last seen kept in a register (runs are common)
    for i in range(h):
        for j in range((i + parity) & 1, w, 2):
            c = ctx[i * w + j]
            if c != last:
                fill[last] = at  # the slot where the run of `last` stopped
                last, at = c, fill[c]
            order[at] = i * w + j
            at += 1
    budget = np.empty(125, dtype=np.int64)
    for c in range(125):
        budget[c] = sums[base + c]
    done = np.zeros(125, dtype=np.int64)
    left_total = start[125]
    seen = np.zeros((125, 4), dtype=np.int64)
    while left_total > 0:  # rounds: from each context the next min(left, 8 x budget) of its modes
        for c in range(125):
            q = min(n_c[c] - done[c], PIECE_FACTOR * budget[c])
            if q <= 0:
                continue
            row = base + c
            build(counts, row, 4, sums[row], cdf, lut, 0, False)
            code_run(enc, modes, order, start[c] + done[c], q, 0, 3, cdf, lut, row, 4, 0, seen[c], 1,
                     buf, io, state, words)
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
                    sums[base + c] = _halve(counts, base + c, 4, limit)


@kernel()
def code_modes(enc, modes, prev, has_prev, h, w, counts, sums, limit, buf, io, state, words) -> None:
    """A step's modes: pass A, then pass B (contexts from the previous step's modes `prev` and pass A's)."""
    cdf = np.empty((250, 5), dtype=np.int64)
    lut = np.empty((1, 1), dtype=np.int32)  # (modes: a binary search)
    _mode_pass(enc, 0, modes, prev, has_prev, h, w, counts, sums, limit, cdf, lut, buf, io, state, words)
    _mode_pass(enc, 1, modes, prev, has_prev, h, w, counts, sums, limit, cdf, lut, buf, io, state, words)


# -- literal model 0 (§6.5.2, §6.5.6) ------------------------------------------------------------------
@kernel()
def code_literals0(enc, values, shifts, alphabets, tables, sums, increment, limit, cdf, lut,
                   buf, io, state, words) -> None:
    """A step's literals `values` (int64, read or written as the OR of their parts): for each part j, all
    its sub-symbols with the model of tables[j] (parts, A), then the table counted. cdf (parts, A + 1),
    lut (parts, buckets): scratch."""
    n = values.shape[0]
    if not enc:
        values[:] = 0
    for j in range(shifts.shape[0]):
        a = alphabets[j]
        shift = lut_shift(a)
        build(tables, j, a, sums[j], cdf, lut, shift, not enc)
        code_run(enc, values, None, 0, n, shifts[j], a - 1 if j else -1, cdf, lut, j, a, shift, tables[j], increment,
                 buf, io, state, words)
        sums[j] += increment * n
        if sums[j] > limit:
            sums[j] = _halve(tables, j, a, limit)


# -- literal model 1 (§6.5.8) ----------------------------------------------------------------------------
# Literal model 1 codes each symbol from its count row and the row's block sums (blocks[row, b] = the sum of
# counts[row, 8b .. 8b + 7]), so a model is never built whole: a key step's pieces (one per grid row) touch
# many rows a few symbols each. C_s is then a sum of at most n / 8 blocks and 7 counts, and the decoder finds
# a symbol by comparing every block's first edge with q, then every edge inside the block it falls in:
# independent comparisons that the processor overlaps, where a search tree is a chain of dependent loads and
# guessed branches. The edges are those of `build`, symbol by symbol.
BLOCK_BITS = 3
BLOCK = 1 << BLOCK_BITS


@kernel()
def build_blocks(table, n, blocks, sums, scale, starts) -> None:
    """For every row r of table[:, :n]: its block sums blocks[r], the scale of its model,
    float64(2**24 - n) / float64(sums[r]), and its blocks' starts (`_block_starts`)."""
    for r in range(table.shape[0]):
        _block_row(table, r, n, blocks)
        scale[r] = float(ONE - n) / float(sums[r])
        _block_starts(blocks, r, scale[r], starts)


@kernel()
def _block_starts(blocks, row, sc, starts) -> None:
    """What the decoder needs of each block b of a row: starts[row, 0, b] = C_8b, the counts below its first
    symbol, and starts[row, 1, b] = that symbol's left edge (`build`), so that finding a symbol's block is
    comparing q with integers, no arithmetic on the state's dependency chain."""
    c = 0
    for b in range(blocks.shape[1]):
        starts[row, 0, b] = c
        starts[row, 1, b] = np.int64(float(c) * sc) + (b << BLOCK_BITS)
        c += blocks[row, b]


@kernel()
def _block_row(table, row, n, blocks) -> None:
    for b in range(blocks.shape[1]):
        blocks[row, b] = 0
    for i in range(n):
        blocks[row, i >> BLOCK_BITS] += table[row, i]


@kernel()
def _code_block_run(enc, groups, ranks, pos, ctx, a, b, first_row, lo_bits, at, n, table, blocks, scale, starts,
                    built, cdf, lut, buf, io, state, words) -> None:
    """Code the literals pos[a:b] (ranks read, or written): with `groups`, their groups (row ctx[t] of the
    group table); else their lo part (rank >> at) & (n - 1) (row first_row + group of the lo tables). The
    models: `built` whole in `cdf` with the decoder's lookup `lut` (a large piece, `_build_rows`), or from
    each row's counts, block sums and scale (and the decoder's block starts), the edges of `build` for one
    symbol. (Written out rather than calling a function per symbol: numba's inlining of a function of
    several arrays counted references to them at every symbol, several times the cost of the coding.)"""
    p, x, left_words = load(io, state)
    n_blocks = (n + BLOCK - 1) >> BLOCK_BITS
    for t in range(a, b):
        r = ranks[pos[t]]
        row = ctx[t] if groups else first_row + (r >> lo_bits)
        if enc:
            s = r >> lo_bits if groups else (r >> at) & (n - 1)
        else:
            q = np.int64(x & _MASK)
        if built:
            if not enc:  # the symbol s with cdf[s] <= q < cdf[s + 1], from the bucket of q
                s = np.int64(lut[row, q >> ROWS_SHIFT])
                while cdf[row, s + 1] <= q:
                    s += 1
            left, right = cdf[row, s], cdf[row, s + 1]
        else:
            sc = scale[row]
            if enc:  # C_s: the blocks below s's, then the counts below s in its block (masked sums of
                # fixed length: no loop exit to guess)
                acc = 0
                sb, base = s >> BLOCK_BITS, s & ~(BLOCK - 1)
                for k in range(n_blocks):
                    acc += blocks[row, k] * np.int64(k < sb)
                for i in range(min(BLOCK, n - base)):
                    acc += table[row, base + i] * np.int64(base + i < s)
            else:  # the largest s whose left edge trunc(C_s * scale) + s is at most q; edges rise with s, so
                # s counts the edges at most q: first the blocks' first edges (`starts`), then inside the
                # block, where trunc(x) + u <= q  <=>  x < q + 1 - u  (x >= 0)
                q1 = float(q + 1)
                s = 0
                for k in range(1, n_blocks):
                    s += np.int64(starts[row, 1, k] <= q)
                acc = c = starts[row, 0, s]
                s <<= BLOCK_BITS
                for u in range(s + 1, min(s + BLOCK, n)):
                    c += table[row, u - 1]
                    take = float(c) * sc < q1 - float(u)
                    s += np.int64(take)
                    acc = c if take else acc
            left = np.int64(float(acc) * sc) + s
            right = ONE if s == n - 1 else np.int64(float(acc + table[row, s]) * sc) + s + 1
        if enc:
            buf[p] = (np.uint64(left) << _U32) | np.uint64(right - left)
            p += 1
            continue
        x = (x >> _SHIFT) * np.uint64(right - left) + np.uint64(q - left)
        if x < _REFILL and left_words > 0:
            left_words -= 1
            x = (x << _WORD) | np.uint64(words[left_words])
        ranks[pos[t]] = s << lo_bits if groups else r | (s << at)
    store(io, state, p, x, left_words)


@kernel()
def _build_rows(groups, ranks, pos, ctx, a, b, first_row, lo_bits, n, table, sums, cdf, lut, with_lut, seen,
                todo) -> None:
    """The models (`build`, with_lut: the decoder's lookups) of the rows the literals pos[a:b] use (as
    `_code_block_run` finds them)."""
    m = 0
    for t in range(a, b):
        row = ctx[t] if groups else first_row + (ranks[pos[t]] >> lo_bits)
        if not seen[row]:
            seen[row] = True
            todo[m] = row
            m += 1
    for i in range(m):
        seen[todo[i]] = False
        build(table, todo[i], n, sums[todo[i]], cdf, lut, ROWS_SHIFT, with_lut)


@kernel()
def _count_piece(ranks, pos, ctx, a, b, gtab, gblocks, gsums, gscale, ltab, lblocks, lsums, lscale, lshifts, lwidths,
                 lo_bits, k, increment) -> bool:
    """Add the piece's symbols to their rows (tables, block sums, sums; scale 0 until recomputed) -> False
    if a rank is outside the codebook."""
    ok = True
    groups = gtab.shape[1]
    for t in range(a, b):
        r = ranks[pos[t]]
        if r >= k:
            ok = False
            continue
        c, g = ctx[t], r >> lo_bits
        gtab[c, g] += increment
        gblocks[c, g >> BLOCK_BITS] += increment
        gsums[c] += increment
        gscale[c] = 0.0
        for j in range(lshifts.shape[0]):
            row = j * groups + g
            s = (r >> lshifts[j]) & (lwidths[j] - 1)
            ltab[row, s] += increment
            lblocks[row, s >> BLOCK_BITS] += increment
            lsums[row] += increment
            lscale[row] = 0.0
    return ok


@kernel()
def _rescale(table, blocks, sums, scale, starts, with_starts, first, last, n, limit, todo) -> None:
    """Rows first..last - 1 counted since their scale was set (scale 0): halved if they passed the limit
    (their block sums then recounted), then a new scale and (with_starts: the decoder) block starts.
    (Calls only in a loop over the rows listed.)"""
    m = 0
    for row in range(first, last):
        if scale[row] == 0.0:
            todo[m] = row
            m += 1
    for i in range(m):
        row = todo[i]
        if sums[row] > limit:
            sums[row] = _halve(table, row, n, limit)
            _block_row(table, row, n, blocks)
        scale[row] = float(ONE - n) / float(sums[row])
        if with_starts:
            _block_starts(blocks, row, scale[row], starts)


@kernel()
def _scratch(enc, gtab, ltab):
    """What `_piece` works in, allocated once a step: (seen, todo) over the rows of both tables, the models
    of a large piece's rows (edges of the groups' and of the lo parts' rows, the decoder's lookups)."""
    rows = max(gtab.shape[0], ltab.shape[0])
    lut_rows = 1 if enc else rows
    return (np.zeros(rows, dtype=np.bool_), np.empty(rows, dtype=np.int64),
            np.empty((gtab.shape[0], gtab.shape[1] + 1), dtype=np.int64),
            np.empty((ltab.shape[0], ltab.shape[1] + 1), dtype=np.int64),
            np.empty((lut_rows, ONE >> ROWS_SHIFT), dtype=np.int32),
            np.empty((lut_rows, ONE >> ROWS_SHIFT), dtype=np.int32))


@kernel()
def _piece(enc, ranks, pos, ctx, a, b, gtab, gblocks, gsums, gscale, gstarts, ltab, lblocks, lsums, lscale, lstarts,
           lshifts, lwidths, lo_bits, groups, k, increment, limit, scratch, buf, io, state, words) -> bool:
    """The literals pos[a:b] (ranks read or written) with group contexts ctx[a:b]: their groups, then
    each lo part (lo part j of group g: row j * groups + g of the lo tables); then the counts. scratch:
    `_scratch`'s. -> False when a decoded rank is outside the codebook."""
    # (coding and counting in kernels of their own: a loop over symbols in a function that also calls
    # others ran an order of magnitude slower, numba counting references to its arrays at every turn.) A large piece
    # builds the models of the rows it uses (the decoder with lookups): a symbol's edges then cost less.
    # (numba compiles a kernel once per distinct argument types, and a constant is a type of its own: the
    # constants below are typed int64 or bool, except the group/lo choice of `_code_block_run`, compiled
    # into it twice: its symbol loop is faster so.)
    big = b - a >= (BIG_PIECE_ENC if enc else BIG_PIECE)
    seen, todo, gcdf, lcdf, glut, llut = scratch
    zero, yes, no = np.int64(0), np.bool_(True), np.bool_(False)
    if big:
        _build_rows(yes, ranks, pos, ctx, a, b, zero, lo_bits, groups, gtab, gsums, gcdf, glut, not enc, seen, todo)
    _code_block_run(enc, True, ranks, pos, ctx, a, b, zero, lo_bits, zero, groups, gtab, gblocks, gscale, gstarts, big,
                    gcdf, glut, buf, io, state, words)
    for j in range(lshifts.shape[0]):
        if big:
            _build_rows(no, ranks, pos, ctx, a, b, j * groups, lo_bits, lwidths[j], ltab, lsums, lcdf, llut,
                        not enc, seen, todo)
        _code_block_run(enc, False, ranks, pos, ctx, a, b, j * groups, lo_bits, lshifts[j], lwidths[j], ltab, lblocks,
                        lscale, lstarts, big, lcdf, llut, buf, io, state, words)
    ok = _count_piece(ranks, pos, ctx, a, b, gtab, gblocks, gsums, gscale, ltab, lblocks, lsums, lscale, lshifts,
                      lwidths, lo_bits, k, increment)
    _rescale(gtab, gblocks, gsums, gscale, gstarts, not enc, zero, gtab.shape[0], groups, limit, todo)
    for j in range(lshifts.shape[0]):
        _rescale(ltab, lblocks, lsums, lscale, lstarts, not enc, j * groups, (j + 1) * groups, lwidths[j], limit, todo)
    return ok


@kernel()
def code_literals1(enc, modes, ranks, ref, has_ref, ref_is_first, h, w, gtab, gblocks, gsums, gscale, gstarts, ltab,
                   lblocks, lsums, lscale, lstarts, lshifts, lwidths, lo_bits, groups, k, increment, limit, buf, io,
                   state, words) -> bool:
    """A step's literals by group (ranks (h * w) int64 of the step: read, or written at literal positions;
    ref: the previous step's ranks when has_ref). In a segment's first step, row by row in the context of
    the group above (the decoder resolves each row before the next: `ranks` then holds the whole step);
    else in rounds of 16, 16, 32, 64, ... in the context of the previous step's group at the same place.
    Tables (rows, width) with their block sums, row sums, scales and block starts (`build_blocks`; the
    encoder leaves the starts as they were): g* the groups (contexts, G), l* the lo parts (parts * G, largest
    lo alphabet; part j of group g in row j * G + g). -> False when a decoded rank is outside the codebook."""
    pos = np.empty(h * w, dtype=np.int64)
    ctx = np.empty(h * w, dtype=np.int64)
    scratch = _scratch(enc, gtab, ltab)
    ok = True
    if not has_ref:
        n = np.int64(0)  # (not the constant 0: a constant is a type of its own to numba)
        for i in range(h):
            start = n  # (the row's piece at its offset in pos: one call site, one compiled `_piece`)
            for j in range(w):
                if modes[i * w + j] == 3:
                    pos[n] = i * w + j
                    ctx[n] = 0 if i == 0 else 1 + 2 * groups + (ranks[(i - 1) * w + j] >> lo_bits)
                    n += 1
            if n > start:
                ok &= _piece(enc, ranks, pos, ctx, start, n, gtab, gblocks, gsums, gscale, gstarts, ltab, lblocks,
                             lsums, lscale, lstarts, lshifts, lwidths, lo_bits, groups, k, increment, limit, scratch,
                             buf, io, state, words)
            if not enc:
                for j in range(w):  # the row's values: U from the row above, L from the left
                    m = modes[i * w + j]
                    if m == 1:
                        ranks[i * w + j] = ranks[(i - 1) * w + j]
                    elif m == 2:
                        ranks[i * w + j] = ranks[i * w + j - 1]
        return ok
    offset = 1 if ref_is_first else 1 + groups
    n = np.int64(0)
    for p in range(h * w):
        if modes[p] == 3:
            pos[n] = p
            ctx[n] = offset + (ref[p] >> lo_bits)
            n += 1
    a = np.int64(0)
    while a < n:
        b = min(n, max(FIRST_ROUND, 2 * a))
        ok &= _piece(enc, ranks, pos, ctx, a, b, gtab, gblocks, gsums, gscale, gstarts, ltab, lblocks, lsums, lscale,
                     lstarts, lshifts, lwidths, lo_bits, groups, k, increment, limit, scratch, buf, io, state, words)
        a = b
    return ok


@kernel()
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


# -- a chunk ------------------------------------------------------------------------------------------
CHUNK_OK, BAD_MODE, BAD_LITERAL = 0, 1, 2  # what `code_chunk` finds (the decoder)


@kernel()
def code_chunk(enc, model, modes, values, prev, has_prev, ref, has_ref, steps_done, h, w, mode_counts, mode_sums,
               mode_limit, shifts, alphabets, parts, part_sums, part_cdf, part_lut, literals, gtab, gblocks, gsums,
               gscale, gstarts, ltab, lblocks, lsums, lscale, lstarts, lshifts, lwidths, lo_bits, groups, k, increment,
               limit, buf, io, state, words) -> int:
    """A chunk of steps (modes (n, h * w) uint8, values (n, h * w) int64: read, or written from zeros): every
    step's modes (`code_modes`), then every step's literals (model 0: `code_literals0` on the step's
    literals gathered in `literals`; model 1: `code_literals1` on its ranks); the decoder resolves each step
    before the next. prev, ref: the modes and values of the step before the chunk (has_prev, has_ref);
    steps_done: the segment's steps before the chunk. The tables are those of the kernels called (a model's
    unused ones stand-ins). -> CHUNK_OK, or (decoder) BAD_MODE for a mode whose source is not there (T
    without a previous step, U in row 0, L in column 0), BAD_LITERAL for a literal outside the codebook."""
    n = modes.shape[0]
    for i in range(n):
        code_modes(enc, modes[i], modes[i - 1] if i else prev, has_prev or i > 0, h, w, mode_counts, mode_sums,
                   mode_limit, buf, io, state, words)
    if not enc:
        for i in range(n):
            for p in range(h * w):
                m = modes[i, p]
                if (m == 0 and i == 0 and not has_ref) or (m == 1 and p < w) or (m == 2 and p % w == 0):
                    return BAD_MODE
    for i in range(n):
        step_ref, step_has_ref = (values[i - 1] if i else ref), has_ref or i > 0
        if model == 0:
            count = 0
            for p in range(h * w):
                if modes[i, p] == 3:
                    if enc:
                        literals[count] = values[i, p]
                    count += 1
            code_literals0(enc, literals[:count], shifts, alphabets, parts, part_sums, increment, limit, part_cdf,
                           part_lut, buf, io, state, words)
            if not enc:
                count = 0
                for p in range(h * w):
                    if modes[i, p] == 3:
                        if literals[count] >= k:
                            return BAD_LITERAL
                        values[i, p] = literals[count]
                        count += 1
        elif not code_literals1(enc, modes[i], values[i], step_ref, step_has_ref, steps_done + i == 1, h, w, gtab,
                                gblocks, gsums, gscale, gstarts, ltab, lblocks, lsums, lscale, lstarts, lshifts, lwidths,
                                lo_bits, groups, k, increment, limit, buf, io, state, words):
            return BAD_LITERAL
        if not enc:
            resolve(modes[i], step_ref, step_has_ref, w, values[i])
    return CHUNK_OK
