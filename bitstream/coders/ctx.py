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
from .ctx_flags import FlagPlanes

Categorical = constriction.stream.model.Categorical
AnsCoder = constriction.stream.stack.AnsCoder
NO_PRIOR = bytes(32)
# Flag models as a family: probabilities given per symbol when coding. With perfect=False a family
# quantizes each row exactly as a fixed Categorical(row, perfect=False) would (constriction documents
# that laziness does not change the semantics), so the bytes are those of per-context models.
FLAG_FAMILY = Categorical(perfect=False)


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
        # Halving stops at all-ones tables: a limit below a table's size could never be met (a hang).
        alphabet = max(cm.part_layout(header.codebook_size).alphabets)
        if self.literal_limit < alphabet:
            raise UsageError(f"ctx literal_limit {self.literal_limit} is below the literal alphabet size {alphabet}")


def _model(counts: np.ndarray) -> Categorical:
    """A fixed categorical model from integer counts held as float64 (exact inputs, so quantization is
    identical on every machine). constriction copies them into its own table, so `counts` may change after."""
    return Categorical(counts, perfect=False)


class _State:
    """Adaptive state inside a segment: reference grid, previous flags, flag and literal counts.

    Counts are float64 holding integers (exact), the dtype constriction takes, so no table is converted per
    step; each literal table's sum is tracked so that the halving check does not re-sum it per step."""

    def __init__(self, flags: np.ndarray, parts: list[np.ndarray], part_sums: list[int]) -> None:
        self.ref: np.ndarray | None = None  # (h, w) int64, the previous step
        self.prev: np.ndarray | None = None  # (h, w) uint8, the previous step's flags (None: none yet)
        self.flags = flags.copy()  # (NUM_FLAG_CTX, 2) float64
        self.parts = [t.copy() for t in parts]  # per sub-symbol (alphabet,) float64
        self.part_sums = list(part_sums)  # per sub-symbol, sum of its table
        self.flag_sum = int(self.flags.sum())


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
            self._flag_init = np.ones((cm.NUM_FLAG_CTX, 2))
            self._part_init = [np.ones(a) for a in self.layout.alphabets]
        elif prior is not None and prior.sha256 == params.prior_sha256:
            self._flag_init = 1 + prior.flag_counts.astype(np.float64)
            self._part_init = [1 + t.astype(np.float64) for t in prior.part_counts]
        else:
            raise UsageError(f"this stream needs the prior table {params.prior_sha256.hex()}, which was not given")
        self._part_init_sums = [int(t.sum()) for t in self._part_init]
        self.pos_a, self.pos_b = cm.parity_positions(*header.grid)
        self.parity_a = np.zeros(self.values_per_step, dtype=bool)
        self.parity_a[self.pos_a] = True
        self.parity_a = self.parity_a.reshape(header.grid)
        self.planes = FlagPlanes(*header.grid)  # decoder-side flag contexts
        self._key_bases: dict[tuple[int, bool], np.ndarray] = {}  # see _key_base
        self.state: _State | None = None
        self.next_step = 0

    def _begin(self, first_step: int, n_steps: int) -> _State:
        """The state for a chunk of steps [first_step, first_step + n_steps) inside one segment."""
        if timeline.is_segment_start(first_step, self.header.gop):
            self.state = _State(self._flag_init, self._part_init, self._part_init_sums)
            self.planes.reset()
        elif self.state is None or first_step != self.next_step:
            raise CorruptError(f"step {first_step} continues a segment whose earlier steps were not decoded")
        self.next_step = first_step + n_steps
        return self.state

    def _after_a(self, st: _State, obs: np.ndarray, no_prev: bool) -> None:
        """Count pass A; without previous flags, its context-0 counts also seed the no-previous B contexts."""
        if no_prev:
            obs = obs.copy()
            obs[cm.NO_PREV_B] += obs[0]
        self._count_flags(st, obs)

    def _count_flags(self, st: _State, obs: np.ndarray) -> None:
        """cm.add_counts(st.flags, obs, flag_limit). A row can only pass the limit once the whole table
        has, so while the tracked table sum has not, the per-row check is skipped."""
        st.flags += obs
        st.flag_sum += int(obs.sum())
        if st.flag_sum > self.flag_limit:
            cm.add_counts(st.flags, 0, self.flag_limit)
            st.flag_sum = int(st.flags.sum())

    def _count_literals(self, st: _State, part: int, values: np.ndarray) -> None:
        """cm.add_counts(table, bincount(values), literal_limit), without a full-table add and sum per step."""
        table = st.parts[part]
        np.add.at(table, values, 1.0)  # (a float increment: an int one takes a slow path in numpy)
        st.part_sums[part] += len(values)
        if st.part_sums[part] > self.literal_limit:  # halve, as add_counts would
            cm.add_counts(table, 0, self.literal_limit)
            st.part_sums[part] = int(table.sum())

    # -- encoding: work out every symbol and its model in decoding order, then push them in reverse ----
    def encode(self, steps: np.ndarray, first_step: int) -> bytes:
        steps = steps.astype(np.int64, copy=False)
        n, shape = len(steps), self.header.grid
        st = self._begin(first_step, n)
        skip = 0 if st.ref is not None else 1  # a segment's first step has no flags
        flags = np.empty((n - skip,) + shape, dtype=np.uint8)
        if skip == 0:
            np.equal(steps[0], st.ref, out=flags[0].view(bool))
        np.equal(steps[1:], steps[:-1], out=flags[1 - skip:].view(bool))
        flag_symbols = self._flag_symbols(flags, st) if len(flags) else None
        is_literal = np.ones((n, self.values_per_step), dtype=bool)
        np.equal(flags.reshape(len(flags), self.values_per_step), 0, out=is_literal[skip:])
        ends = np.cumsum(np.count_nonzero(is_literal, axis=1))
        parts = cm.split_parts(steps.reshape(n, -1)[is_literal], self.layout)
        literal_ops = []
        for i in range(n):
            for part, values in enumerate(parts):
                chunk = values[ends[i - 1] if i else 0:ends[i]]
                literal_ops.append((chunk, _model(st.parts[part])))
                self._count_literals(st, part, chunk)
        st.ref = steps[-1]
        coder = AnsCoder()
        for symbols, model in reversed(literal_ops):  # literals come after all flags of the chunk
            coder.encode_reverse(symbols, model)
        if flag_symbols is not None:
            _encode_flags_reverse(coder, *flag_symbols)
        return coder.get_compressed().astype("<u4").tobytes()

    def _flag_symbols(self, flags: np.ndarray, st: _State) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All flags of a chunk in decoding order, grouped by (step, context):
        -> (bits int32 (N,), group sizes (m * NUM_FLAG_CTX,), count rows of the groups (m * NUM_FLAG_CTX, 2)).

        Contexts are computed on whole raster grids: pass A at parity-0 positions, pass B at parity-1
        positions (whose 4 neighbours are all parity 0). Sorting by key = NUM_FLAG_CTX * step + context
        with a stable sort gives the decoder's order: per step, A contexts (0..10) before B contexts
        (11..25), raster order inside a context.
        """
        m = len(flags)
        prev = np.concatenate([np.zeros_like(flags[:1]) if st.prev is None else st.prev[None], flags[:-1]])
        # pass A: 1 + 5 * prev + n(prev); pass B: 11 + 3 * n(flags) + prev (the constants are in the key base)
        key = np.where(self.parity_a, 5 * prev + cm.neighbour_sum(prev), 3 * cm.neighbour_sum(flags) + prev)
        base = self._key_base(m, st.prev is None)
        key = key.astype(base.dtype, copy=False)
        key += base
        key = key.reshape(-1)
        bits = flags.reshape(-1)
        obs = np.bincount(2 * key.astype(np.intp) + bits, minlength=2 * cm.NUM_FLAG_CTX * m).reshape(m, -1, 2)
        tables = np.empty((m, cm.NUM_FLAG_CTX, 2))  # the counts each (step, context) is coded with
        for i in range(m):
            tables[i, :cm.CTX_A] = st.flags[:cm.CTX_A]  # pass A models see the counts before the step
            self._after_a(st, np.where(_A_ROWS, obs[i], 0), no_prev=(i == 0 and st.prev is None))
            tables[i, cm.CTX_A:] = st.flags[cm.CTX_A:]  # pass B models see pass A's update
            self._count_flags(st, np.where(_A_ROWS, 0, obs[i]))
        st.prev = flags[-1]
        sorted_bits = bits[np.argsort(key, kind="stable")].astype(np.int32)
        return sorted_bits, obs.reshape(-1, 2).sum(axis=1), tables.reshape(-1, 2)

    def _key_base(self, m: int, no_prev: bool) -> np.ndarray:
        """(m, h, w) sort keys less the flag terms: NUM_FLAG_CTX * step + 1 (pass A) or CTX_A (pass B), with
        step 0 at 0 and CTX_A + 2 when there are no previous flags; uint8 when it fits (a one-pass radix sort)."""
        cached = self._key_bases.get((m, no_prev))
        if cached is None:
            base = np.where(self.parity_a, 1, cm.CTX_A) + cm.NUM_FLAG_CTX * np.arange(m)[:, None, None]
            if no_prev:
                base[0] = np.where(self.parity_a, 0, cm.CTX_A + 2)
            groups = m * cm.NUM_FLAG_CTX
            key_type = np.uint8 if groups <= 256 else np.uint16 if groups <= 1 << 16 else np.int64
            cached = self._key_bases[(m, no_prev)] = base.astype(key_type)
        return cached

    # -- decoding -------------------------------------------------------------------------------------
    def decode(self, payload: bytes, first_step: int, n_steps: int) -> np.ndarray:
        if len(payload) % 4:
            raise CorruptError(f"ctx chunk data is {len(payload)} bytes, not a whole number of 32-bit words")
        try:
            coder = AnsCoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
        except ValueError as e:
            raise CorruptError(f"ctx chunk data is invalid: {e}") from None
        st = self._begin(first_step, n_steps)
        misses = [None if i == 0 and st.ref is None else self._decode_flags(coder, st) for i in range(n_steps)]
        out = np.empty((n_steps, self.values_per_step), dtype=np.int64)
        for i, miss in enumerate(misses):
            if miss is None:
                out[i] = self._decode_literals(coder, st, self.values_per_step)
            else:
                out[i] = out[i - 1] if i else st.ref.reshape(-1)
                out[i, miss] = self._decode_literals(coder, st, len(miss))
        out = out.reshape((n_steps,) + self.header.grid)
        st.ref = out[-1]
        if not coder.is_empty():
            raise CorruptError("ctx chunk has data left over after its last step")
        return out

    def _decode_flags(self, coder: AnsCoder, st: _State) -> np.ndarray:
        """One step's flags (pass A, count, pass B, count) -> flat indices of its literals (zero flags)."""
        planes = self.planes
        had_prev = planes.begin_step()
        obs, bits = _decode_pass(coder, planes.contexts_a(), st.flags)
        planes.write_a(bits)
        self._after_a(st, obs, no_prev=not had_prev)
        obs, bits = _decode_pass(coder, planes.contexts_b(), st.flags)
        planes.write_b(bits)
        self._count_flags(st, obs)
        return planes.end_step()

    def _decode_literals(self, coder: AnsCoder, st: _State, n: int) -> np.ndarray:
        parts = []
        for part in range(self.layout.count):
            values = coder.decode(_model(st.parts[part]), n)
            self._count_literals(st, part, values)
            parts.append(values)
        if self.layout.count == 1:  # a single part's alphabet is the codebook: always in range
            return parts[0]
        return self.check_range(cm.join_parts(parts, self.layout))


_A_ROWS = (np.arange(cm.NUM_FLAG_CTX) < cm.CTX_A)[:, None]  # (NUM_FLAG_CTX, 1): rows of pass-A contexts


# Flags are coded in groups of one count row each (a context in a pass of a step), in the decoder's
# order. A large group is one call with a fixed model; runs of small groups go in one call of the model
# family with a probability row per symbol (the family quantizes each row exactly as a fixed model
# would, so the split changes no byte). Per symbol the family costs about twice a fixed model; per
# call a fixed model costs a few microseconds: the threshold balances the two.
BIG_GROUP = 256


def _call_plan(sizes: list[int]) -> list[tuple[int, int]]:
    """Group ranges [lo, hi) to code in one call each: a group of >= BIG_GROUP symbols alone, each
    maximal run of smaller ones (empty groups included) together."""
    plan, lo = [], None
    for g, size in enumerate(sizes):
        if size >= BIG_GROUP:
            if lo is not None:
                plan.append((lo, g))
                lo = None
            plan.append((g, g + 1))
        elif size and lo is None:
            lo = g
    if lo is not None:
        plan.append((lo, len(sizes)))
    return plan


def _encode_flags_reverse(coder: AnsCoder, bits: np.ndarray, sizes: np.ndarray, rows: np.ndarray) -> None:
    """Push flags `bits` (decoding order) in groups of `sizes` coded with count `rows`, last group first."""
    sizes_list = sizes.tolist()
    ends = np.cumsum(sizes).tolist()
    for lo, hi in reversed(_call_plan(sizes_list)):
        a, b = ends[lo] - sizes_list[lo], ends[hi - 1]
        if hi - lo == 1:
            coder.encode_reverse(bits[a:b], _model(rows[lo]))
        else:
            coder.encode_reverse(bits[a:b], FLAG_FAMILY, np.repeat(rows[lo:hi], sizes[lo:hi], axis=0))


def _decode_pass(coder: AnsCoder, ctx2: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pass: the flags of each context in turn (ascending), back to position order.

    ctx2: 2 * context (uint8, n) -> (observed counts (NUM_FLAG_CTX, 2) int64, flags uint8 (n,))."""
    if not len(ctx2):
        return np.zeros((cm.NUM_FLAG_CTX, 2), dtype=np.int64), np.zeros(0, dtype=np.uint8)
    sizes = np.bincount(ctx2, minlength=2 * cm.NUM_FLAG_CTX)[::2]
    sizes_list = sizes.tolist()
    if len(ctx2) in sizes_list:  # one context only (e.g. nothing repeats): no reordering or counting
        c = sizes_list.index(len(ctx2))
        bits = coder.decode(_model(table[c]), len(ctx2)).astype(np.uint8)
        obs = np.zeros((cm.NUM_FLAG_CTX, 2), dtype=np.int64)
        ones = int(np.count_nonzero(bits))
        obs[c] = (len(ctx2) - ones, ones)
        return obs, bits
    ends = np.cumsum(sizes).tolist()
    decoded = np.empty(len(ctx2), dtype=np.int32)  # in decoding order
    for lo, hi in _call_plan(sizes_list):
        a, b = ends[lo] - sizes_list[lo], ends[hi - 1]
        if hi - lo == 1:
            decoded[a:b] = coder.decode(_model(table[lo]), b - a)
        else:
            decoded[a:b] = coder.decode(FLAG_FAMILY, np.repeat(table[lo:hi], sizes[lo:hi], axis=0))
    bits = np.empty(len(ctx2), dtype=np.uint8)
    bits[np.argsort(ctx2, kind="stable")] = decoded
    return np.bincount(ctx2 + bits, minlength=2 * cm.NUM_FLAG_CTX).reshape(cm.NUM_FLAG_CTX, 2), bits
