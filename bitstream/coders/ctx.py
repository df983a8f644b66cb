"""`ctx` (id 2): context-adaptive ANS coding of token grids with constriction (SPEC.md, "ctx coder").

Per step after a segment's first: a flag per position, "same token as the previous step", coded in two
checkerboard passes whose contexts are known to the decoder before each pass (so each pass is a handful
of vectorized calls, one per context); then the literals (tokens whose flag is 0) as sub-symbols. The
first step of a segment is all literals. In a chunk, all flags come first (step by step), then all
literals (step by step). Counts adapt after each pass / step and reset at segment starts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import constriction

from .. import timeline
from ..errors import CorruptError, UsageError
from . import ctx_model as cm
from .base import Coder

Categorical = constriction.stream.model.Categorical
AnsCoder = constriction.stream.stack.AnsCoder
NO_PRIOR = bytes(32)


@dataclass(frozen=True)
class CtxParams:
    """prior_sha256: the prior table's SHA-256, zeros for none (uniform start). The limits bound the count
    sums of a flag context and of a literal table (halving when exceeded): smaller adapts faster."""

    prior_sha256: bytes = NO_PRIOR
    flag_limit: int = 1 << 16
    literal_limit: int = 1 << 24

    def pack(self) -> bytes:
        return struct.pack("<32sII", self.prior_sha256, self.flag_limit, self.literal_limit)

    @classmethod
    def unpack(cls, data: bytes) -> CtxParams:
        if len(data) != 40:
            raise UsageError(f"ctx coder parameters must be 40 bytes, found {len(data)}")
        return cls(*struct.unpack("<32sII", data))

    def validate(self, header: object) -> None:
        if not isinstance(self.prior_sha256, bytes) or len(self.prior_sha256) != 32:
            raise UsageError("ctx prior_sha256 must be 32 bytes")
        if not (2 <= self.flag_limit <= 1 << 30 and 2 <= self.literal_limit <= 1 << 30):
            raise UsageError("ctx count limits must lie in 2..2**30")


def _model(counts: np.ndarray) -> Categorical:
    """A fixed categorical model from integer counts (exact float64 inputs, so quantization is identical
    on every machine)."""
    return Categorical(counts.astype(np.float64), perfect=False)


class _State:
    """Adaptive state inside a segment: reference grid, previous flags, flag and literal counts."""

    def __init__(self, flags: np.ndarray, parts: list[np.ndarray]) -> None:
        self.ref: np.ndarray | None = None  # (h, w) int64, the previous step
        self.prev: np.ndarray | None = None  # (h, w) uint8, the previous step's flags (None: none yet)
        self.flags = flags.copy()  # (NUM_FLAG_CTX, 2) int64
        self.parts = [t.copy() for t in parts]  # per sub-symbol (alphabet,) int64


class CtxCoder(Coder):
    name = "ctx"
    coder_id = 2
    Params = CtxParams

    def __init__(self, header, prior=None) -> None:
        super().__init__(header, prior)
        params: CtxParams = header.coder_params
        self.flag_limit, self.literal_limit = params.flag_limit, params.literal_limit
        self.layout = cm.part_layout(header.codebook_size)
        if params.prior_sha256 == NO_PRIOR:
            self._flag_init = np.ones((cm.NUM_FLAG_CTX, 2), np.int64)
            self._part_init = [np.ones(a, np.int64) for a in self.layout.alphabets]
        elif prior is not None and prior.sha256 == params.prior_sha256:
            self._flag_init = 1 + prior.flag_counts.astype(np.int64)
            self._part_init = [1 + t.astype(np.int64) for t in prior.part_counts]
        else:
            raise UsageError(f"this stream needs the prior table {params.prior_sha256.hex()}, which was not given")
        self.pos_a, self.pos_b = cm.parity_positions(*header.grid)
        self.parity_a = np.zeros(self.values_per_step, dtype=bool)
        self.parity_a[self.pos_a] = True
        self.parity_a = self.parity_a.reshape(header.grid)
        self.state: _State | None = None
        self.next_step = 0

    def _begin(self, first_step: int, n_steps: int) -> _State:
        """The state for a chunk of steps [first_step, first_step + n_steps) inside one segment."""
        if timeline.is_segment_start(first_step, self.header.gop):
            self.state = _State(self._flag_init, self._part_init)
        elif self.state is None or first_step != self.next_step:
            raise CorruptError(f"step {first_step} continues a segment whose earlier steps were not decoded")
        self.next_step = first_step + n_steps
        return self.state

    def _after_a(self, st: _State, obs: np.ndarray, no_prev: bool) -> None:
        """Count pass A; without previous flags, its context-0 counts also seed the no-previous B contexts."""
        if no_prev:
            obs = obs.copy()
            obs[cm.NO_PREV_B] += obs[0]
        cm.add_counts(st.flags, obs, self.flag_limit)

    def _count_literals(self, st: _State, part: int, values: np.ndarray) -> None:
        table = st.parts[part]
        cm.add_counts(table, np.bincount(values, minlength=len(table)), self.literal_limit)

    # -- encoding: collect (symbols, model) in decoding order, then push them in reverse ----------------
    def encode(self, steps: np.ndarray, first_step: int) -> bytes:
        steps = steps.astype(np.int64, copy=False)
        n, shape = len(steps), self.header.grid
        st = self._begin(first_step, n)
        skip = 0 if st.ref is not None else 1  # a segment's first step has no flags
        flags = np.empty((n - skip,) + shape, dtype=np.uint8)
        if skip == 0:
            np.equal(steps[0], st.ref, out=flags[0].view(bool))
        np.equal(steps[1:], steps[:-1], out=flags[1 - skip:].view(bool))
        ops = self._flag_ops(flags, st) if len(flags) else []
        is_literal = np.ones((n, self.values_per_step), dtype=bool)
        np.equal(flags.reshape(len(flags), self.values_per_step), 0, out=is_literal[skip:])
        ends = np.cumsum(np.count_nonzero(is_literal, axis=1))
        parts = cm.split_parts(steps.reshape(n, -1)[is_literal], self.layout)
        for i in range(n):
            for part, values in enumerate(parts):
                chunk = values[ends[i - 1] if i else 0:ends[i]]
                ops.append((chunk, _model(st.parts[part])))
                self._count_literals(st, part, chunk)
        st.ref = steps[-1]
        coder = AnsCoder()
        for symbols, model in reversed(ops):
            coder.encode_reverse(symbols, model)
        return coder.get_compressed().astype("<u4").tobytes()

    def _flag_ops(self, flags: np.ndarray, st: _State) -> list[tuple[np.ndarray, Categorical]]:
        """All flags of a chunk, grouped by (step, context) in decoding order, with their models.

        Contexts are computed on whole raster grids: pass A at parity-0 positions, pass B at parity-1
        positions (whose 4 neighbours are all parity 0). Sorting by (step, context) with a stable sort
        gives the decoder's order: per step, A contexts (0..10) before B contexts (11..25), raster order
        inside a context.
        """
        m = len(flags)
        prev = np.concatenate([np.zeros_like(flags[:1]) if st.prev is None else st.prev[None], flags[:-1]])
        ctx_a = 1 + 5 * prev + cm.neighbour_sum(prev)  # (m, h, w) uint8
        ctx_b = cm.CTX_A + 3 * cm.neighbour_sum(flags) + prev
        if st.prev is None:
            ctx_a[0] = 0
            ctx_b[0] += 2
        ctx = np.where(self.parity_a, ctx_a, ctx_b).reshape(m, -1)
        key_type = np.uint16 if m * 2 * cm.NUM_FLAG_CTX < 1 << 16 else np.int64
        key = (ctx.astype(key_type) + (cm.NUM_FLAG_CTX * np.arange(m, dtype=key_type))[:, None]).ravel()
        bits = flags.reshape(-1)
        obs = np.bincount(2 * key + bits, minlength=2 * cm.NUM_FLAG_CTX * m).reshape(m, -1, 2)
        tables = []
        for i in range(m):
            before = st.flags.copy()
            self._after_a(st, np.where(_A_ROWS, obs[i], 0), no_prev=(i == 0 and st.prev is None))
            tables.append(np.where(_A_ROWS, before, st.flags))  # pass A models see `before`, pass B the update
            cm.add_counts(st.flags, np.where(_A_ROWS, 0, obs[i]), self.flag_limit)
        st.prev = flags[-1]
        sorted_bits = bits[np.argsort(key, kind="stable")].astype(np.int32)
        ends = np.cumsum(np.bincount(key, minlength=cm.NUM_FLAG_CTX * m))
        ops = []
        for g in np.flatnonzero(np.diff(ends, prepend=0)):
            i, c = divmod(int(g), cm.NUM_FLAG_CTX)
            ops.append((sorted_bits[ends[g - 1] if g else 0:ends[g]], _model(tables[i][c])))
        return ops

    # -- decoding -------------------------------------------------------------------------------------
    def decode(self, payload: bytes, first_step: int, n_steps: int) -> np.ndarray:
        if len(payload) % 4:
            raise CorruptError(f"ctx chunk data is {len(payload)} bytes, not a whole number of 32-bit words")
        try:
            coder = AnsCoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
        except ValueError as e:
            raise CorruptError(f"ctx chunk data is invalid: {e}") from None
        st = self._begin(first_step, n_steps)
        flags = [None if i == 0 and st.ref is None else self._decode_flags(coder, st) for i in range(n_steps)]
        out = np.empty((n_steps,) + self.header.grid, dtype=np.int64)
        for i, f in enumerate(flags):
            if f is None:
                out[i] = self._decode_literals(coder, st, out[i].size).reshape(self.header.grid)
            else:
                grid = (out[i - 1] if i else st.ref).ravel().copy()
                miss = f == 0
                grid[miss] = self._decode_literals(coder, st, int(np.count_nonzero(miss)))
                out[i] = grid.reshape(self.header.grid)
        st.ref = out[-1]
        if not coder.is_empty():
            raise CorruptError("ctx chunk has data left over after its last step")
        return out

    def _decode_flags(self, coder: AnsCoder, st: _State) -> np.ndarray:
        """One step's flags (h * w,) uint8: pass A, count, pass B, count."""
        f = np.zeros(self.values_per_step, dtype=np.uint8)
        f[self.pos_a], obs = _decode_groups(coder, cm.contexts_a(st.prev, self.pos_a), st.flags)
        self._after_a(st, obs, no_prev=st.prev is None)
        grid_flags = f.reshape(self.header.grid)
        f[self.pos_b], obs = _decode_groups(coder, cm.contexts_b(grid_flags, st.prev, self.pos_b), st.flags)
        cm.add_counts(st.flags, obs, self.flag_limit)
        st.prev = grid_flags
        return f

    def _decode_literals(self, coder: AnsCoder, st: _State, n: int) -> np.ndarray:
        parts = []
        for part in range(self.layout.count):
            values = coder.decode(_model(st.parts[part]), n)
            self._count_literals(st, part, values)
            parts.append(values)
        return self.check_range(cm.join_parts(parts, self.layout))


_A_ROWS = (np.arange(cm.NUM_FLAG_CTX) < cm.CTX_A)[:, None]  # (NUM_FLAG_CTX, 1): rows of pass-A contexts


def _decode_groups(coder: AnsCoder, ctx: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pass: the flags of each context in turn (ascending), back to position order.

    -> (flags uint8 (len(ctx),), observed counts (NUM_FLAG_CTX, 2) int64)."""
    obs = np.zeros((cm.NUM_FLAG_CTX, 2), dtype=np.int64)
    if not len(ctx):
        return np.zeros(0, dtype=np.uint8), obs
    counts = np.bincount(ctx, minlength=cm.NUM_FLAG_CTX)
    pieces = []
    for c in np.flatnonzero(counts):
        piece = coder.decode(_model(table[c]), int(counts[c]))
        ones = int(np.count_nonzero(piece))
        obs[c] = (counts[c] - ones, ones)
        pieces.append(piece)
    bits = np.empty(len(ctx), dtype=np.uint8)
    bits[np.argsort(ctx, kind="stable")] = np.concatenate(pieces)
    return bits, obs
