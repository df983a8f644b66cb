"""`ctx` (id 4): context-adaptive ANS coding of token grids (SPEC.md §6.5), its loops in numba kernels.

Per position of every step a mode: 0 T (same token as the previous step here), 1 U (same as the token
above), 2 L (same as the token to the left), 3 literal. Modes are coded in two checkerboard passes whose
contexts are known to the decoder before each pass; then the literals: as sub-symbols of the index
(literal model 0, format 1.1), or (literal model 1, format 1.2) through their rank in the prior's code
order as a group, in the context of the previous step's group at the same place (in a segment's first
step, of the group above), and the bits below it, in the context of the group. In a chunk, all modes come
first (step by step), then all literals (step by step). Counts adapt after each round of a pass, each
step's literals (model 0) or each round or row of them (model 1), and reset at segment starts.

This module keeps the state and calls one kernel per chunk (`ctx_kernels.code_chunk`): the encoder
collects every symbol of the chunk with its model in decoding order, then pushes them in reverse in one
more call; the decoder reads them in order. Literal model 1 works on ranks (the code order maps tokens
to ranks one to one), so its states and values are ranks until a step is output.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .. import timeline
from ..errors import CorruptError, UnsupportedError, UsageError

from . import ctx_kernels as kn
from . import ctx_model as cm
from .base import Coder

NO_PRIOR = bytes(32)
LITERAL_MODELS = (0, 1)  # 0: sub-symbols of the index (format 1.1); 1: grouped by code order (format 1.2)
# stand-ins for the arguments a direction does not use
_NO_MODES = np.zeros(1, dtype=np.uint8)
_NO_VALUES = np.zeros(1, dtype=np.int64)
_NO_BUF = np.zeros(1, dtype=np.uint64)
_NO_STATE = np.zeros(1, dtype=np.uint64)
_NO_WORDS = np.zeros(1, dtype=np.uint32)
_NO_TABLE = np.zeros((1, 1), dtype=np.int64)
_NO_SCALE = np.zeros(1)
_NO_LUT = np.zeros((1, 1), dtype=np.int32)
_NO_STARTS = np.zeros((1, 1, 1), dtype=np.int64)
_MAP_BLOCK = 1 << 16  # values mapped from ranks to tokens at a time


@dataclass(frozen=True)
class CtxParams:
    """The `ctx` coder's parameters. The defaults are what `otok encode` writes for model tokens, and what
    `OtokWriter` writes when the header names no parameters: one set of defaults.

    prior_sha256: the prior table's SHA-256, zeros for none (uniform start). The limits bound the count
    sums of a mode context and of a literal table (halving when exceeded): smaller adapts faster.
    literal_increment: what each coded literal adds to its count. Above 1, a token seen earlier in the
    segment becomes likely quickly against the 2**13 or so starting counts: on real tokens 4 codes the
    literals ~4 % smaller than 1 (on i.i.d. literals it costs up to 0.3 bit/token at 360p).
    literal_model: 1 codes literals by group of the prior's code order with the previous step's group (in
    a segment's first step, the group above) as context, counts adapting inside a step (format 1.2; ~9 %
    smaller files than 0 on real tokens); 0 codes them as sub-symbols of the index (format 1.1, faster).
    Parameters with literal_model 0 pack to the 44 bytes of format 1.1, with 1 to 48."""

    prior_sha256: bytes = NO_PRIOR
    mode_limit: int = 1 << 16
    literal_limit: int = 1 << 24
    literal_increment: int = 4
    literal_model: int = 1

    def pack(self) -> bytes:
        head = struct.pack("<32sIII", self.prior_sha256, self.mode_limit, self.literal_limit, self.literal_increment)
        return head + struct.pack("<I", self.literal_model) if self.literal_model else head

    @classmethod
    def unpack(cls, data: bytes) -> CtxParams:
        if len(data) not in (44, 48):
            raise UsageError(f"ctx coder parameters must be 44 or 48 bytes, found {len(data)}")
        fields = struct.unpack("<32sIII" + "I" * (len(data) == 48), data)
        return cls(*fields) if len(data) == 48 else cls(*fields, literal_model=0)  # 44 bytes: format 1.1

    def validate(self, header: object) -> None:
        if not isinstance(self.prior_sha256, bytes) or len(self.prior_sha256) != 32:
            raise UsageError("ctx prior_sha256 must be 32 bytes")
        if not (cm.NUM_MODES <= self.mode_limit <= 1 << 30 and 2 <= self.literal_limit <= 1 << 30):
            raise UsageError(f"ctx count limits must lie in {cm.NUM_MODES}..2**30 (modes) and 2..2**30 (literals)")
        # Halving stops at all-ones tables: a limit below a table's size could never be met (a hang).
        alphabet = max(cm.part_layout(header.codebook_size).alphabets)
        if self.literal_limit < alphabet:
            raise UsageError(f"ctx literal_limit {self.literal_limit} is below the literal alphabet size {alphabet}")
        if not 1 <= self.literal_increment <= 1 << 16:
            raise UsageError(f"ctx literal_increment must lie in 1..2**16, found {self.literal_increment}")
        if self.literal_model not in LITERAL_MODELS:
            raise UnsupportedError(f"ctx literal_model {self.literal_model} is not one of {LITERAL_MODELS}: "
                                   "a newer otok may read it")



class _State:
    """Adaptive state inside a segment: the previous step's values and modes, and the count tables (int64
    (rows, width), with their row sums; model 0 scratch for its models, model 1 block sums and block
    starts of its rows)."""

    def __init__(self, coder: CtxCoder) -> None:
        self.ref: np.ndarray | None = None  # (h * w,) int64, the previous step's values (model 1: ranks)
        self.prev: np.ndarray | None = None  # (h * w,) uint8, the previous step's modes
        self.steps_done = 0  # steps of the segment coded before the current chunk
        self.modes = coder._mode_init.copy()  # (NUM_MODE_CTX, NUM_MODES)
        self.mode_sums = self.modes.sum(axis=1)
        if coder.literal_model == 0:
            self.parts = coder._part_init.copy()  # (parts, largest alphabet), each row padded with ones
            self.part_sums = np.array([row[:a].sum() for row, a in zip(self.parts, coder._alphabets)])
            self.cdf, self.lut = _models(self.parts)
            self.literals = np.empty(coder.values_per_step, dtype=np.int64)  # a step's literals (scratch)
        else:
            self.groups = coder._group_init.copy()  # (contexts, G)
            self.group_sums = self.groups.sum(axis=1)
            self.lo = coder._lo_init.copy()  # (lo parts x G, largest lo alphabet): part j of group g at j * G + g
            self.lo_sums = np.repeat(coder._lo_widths, coder.groups.groups) if len(coder._lo_widths) else \
                np.zeros(1, dtype=np.int64)
            self.group_blocks, self.lo_blocks = (np.zeros((len(t), -(-t.shape[1] // kn.BLOCK)), dtype=np.int64)
                                                 for t in (self.groups, self.lo))
            self.group_scale, self.lo_scale = np.zeros(len(self.groups)), np.zeros(len(self.lo))
            self.group_starts, self.lo_starts = (np.zeros((len(b), 2, b.shape[1]), dtype=np.int64)
                                                 for b in (self.group_blocks, self.lo_blocks))
            kn.build_blocks(self.groups, self.groups.shape[1], self.group_blocks, self.group_sums, self.group_scale,
                            self.group_starts)
            for j, width in enumerate(coder._lo_widths.tolist()):  # each lo part's rows have its width
                rows = slice(j * coder.groups.groups, (j + 1) * coder.groups.groups)
                kn.build_blocks(self.lo[rows], width, self.lo_blocks[rows], self.lo_sums[rows], self.lo_scale[rows],
                                self.lo_starts[rows])

    def copy(self) -> _State:
        """A state of its own: every array copied (the attributes are arrays, None or numbers)."""
        new = object.__new__(_State)
        new.__dict__ = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in self.__dict__.items()}
        return new


def _models(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scratch for the models of a table's rows: edges (rows, width + 1) and decoder lookups."""
    rows, width = table.shape
    shift = kn.lut_shift(width)
    return (np.empty((rows, width + 1), dtype=np.int64),
            np.empty((rows, 1 << (kn.PRECISION - shift) if shift else 1), dtype=np.int32))


class CtxCoder(Coder):
    name = "ctx"
    coder_id = 4
    format_minor = 1  # defined by format version 1.1; literal model 1 by 1.2 (set per instance)
    Params = CtxParams

    def __init__(self, header, prior=None) -> None:
        super().__init__(header, prior)
        params: CtxParams = header.coder_params
        self.mode_limit, self.literal_limit = params.mode_limit, params.literal_limit
        self.literal_increment = params.literal_increment
        self.literal_model = params.literal_model
        self.format_minor = 2 if self.literal_model else 1
        k = header.codebook_size
        if params.prior_sha256 == NO_PRIOR:
            prior = None
        elif prior is None or prior.sha256 != params.prior_sha256:
            raise UsageError(f"this stream needs the prior table {params.prior_sha256.hex()}, which was not given")
        elif prior.codebook_size != k:
            raise UsageError(f"the prior table is for a codebook of {prior.codebook_size}, the stream has {k}")
        self._mode_init = np.ones((cm.NUM_MODE_CTX, cm.NUM_MODES), dtype=np.int64)
        if prior is not None:
            self._mode_init += prior.mode_counts
        # Rows of a prior above the limit are halved before use, so every row starts within it.
        cm.add_counts(self._mode_init, 0, self.mode_limit)
        if self.literal_model == 0:
            layout = cm.part_layout(k)
            self._shifts = np.array(layout.shifts, dtype=np.int64)
            self._alphabets = np.array(layout.alphabets, dtype=np.int64)
            self._part_init = np.ones((layout.count, max(layout.alphabets)), dtype=np.int64)
            if prior is not None:
                for row, counts in zip(self._part_init, prior.part_counts):
                    row[:len(counts)] += counts
            self._symbols_per_literal = layout.count
            self._rank = self._token = None
        else:
            g = self.groups = cm.group_layout(k)
            ordered = prior is not None and prior.has_order  # else the identity order: ranks are tokens
            self._rank = prior.order.astype(np.int64) if ordered else None
            self._token = prior.tokens_by_rank.astype(np.int64) if ordered else None
            self._group_init = np.ones((g.contexts, g.groups), dtype=np.int64)
            if prior is not None:
                self._group_init += prior.group_counts
            cm.add_counts(self._group_init, 0, self.literal_limit)  # rows above the limit start halved
            self._lo_widths = np.array(g.lo_alphabets, dtype=np.int64)
            self._lo_shifts = np.array(g.lo_shifts, dtype=np.int64)
            self._lo_init = np.ones((max(1, len(g.lo_alphabets)) * g.groups, max(g.lo_alphabets, default=2)),
                                    dtype=np.int64)
            self._symbols_per_literal = 1 + len(g.lo_alphabets)
        self._buf = np.zeros(0, dtype=np.uint64)
        self.state: _State | None = None
        self._start: _State | None = None  # the state at a segment start (copied: cheaper than built)
        self.next_step = 0

    def _begin(self, first_step: int, n_steps: int) -> _State:
        """The state for a chunk of steps [first_step, first_step + n_steps) inside one segment."""
        if timeline.is_segment_start(first_step, self.header.gop):
            if self._start is None:
                self._start = _State(self)
            self.state = self._start.copy()
        elif self.state is None or first_step != self.next_step:
            raise CorruptError(f"step {first_step} continues a segment whose earlier steps were not decoded")
        self.next_step = first_step + n_steps
        return self.state

    def _code_chunk(self, enc: bool, st: _State, modes: np.ndarray, values: np.ndarray, buf, io, state,
                    words) -> int:
        """Every step of a chunk through `kn.code_chunk` (modes, values (n, h * w); literal model 1: ranks),
        then the state follows its last step. -> the kernel's finding (kn.CHUNK_OK, BAD_MODE, BAD_LITERAL)."""
        h, w = self.header.grid
        if self.literal_model == 0:
            lit0 = (self._shifts, self._alphabets, st.parts, st.part_sums, st.cdf, st.lut, st.literals)
            lit1 = (_NO_TABLE, _NO_TABLE, _NO_VALUES, _NO_SCALE, _NO_STARTS) * 2 + (_NO_VALUES, _NO_VALUES, 0, 0)
        else:
            g = self.groups
            lit0 = (_NO_VALUES, _NO_VALUES, _NO_TABLE, _NO_VALUES, _NO_TABLE, _NO_LUT, _NO_VALUES)
            lit1 = (st.groups, st.group_blocks, st.group_sums, st.group_scale, st.group_starts, st.lo, st.lo_blocks,
                    st.lo_sums, st.lo_scale, st.lo_starts, self._lo_shifts, self._lo_widths, g.lo_bits, g.groups)
        found = kn.code_chunk(enc, self.literal_model, modes, values, _NO_MODES if st.prev is None else st.prev,
                              st.prev is not None, _NO_VALUES if st.ref is None else st.ref, st.ref is not None,
                              st.steps_done, h, w, st.modes, st.mode_sums, self.mode_limit, *lit0, *lit1,
                              self.header.codebook_size, self.literal_increment, self.literal_limit,
                              buf, io, state, words)
        if found == kn.CHUNK_OK and len(modes):
            st.prev, st.ref = modes[-1], values[-1].copy()  # (a copy: the caller owns what decode returns)
            st.steps_done += len(modes)
        return found

    # -- encoding: every symbol with its model in decoding order, then all pushed in reverse ----------
    def encode(self, steps: np.ndarray, first_step: int) -> bytes:
        n, hw = len(steps), self.values_per_step
        values = steps.reshape(n, hw).astype(np.int64, copy=False)
        if self._rank is not None:
            values = self._rank[values]
        st = self._begin(first_step, n)
        ref = None if st.ref is None else st.ref.reshape(self.header.grid)
        modes = kn.step_modes(values.reshape(n, *self.header.grid), ref).reshape(n, hw)
        need = n * hw * (1 + self._symbols_per_literal)
        if len(self._buf) < need:
            self._buf = np.empty(need, dtype=np.uint64)
        io = np.zeros(2, dtype=np.int64)
        self._code_chunk(True, st, modes, values, self._buf, io, _NO_STATE, _NO_WORDS)
        words = np.empty(int(io[0]) + 2, dtype=np.uint32)
        return words[:kn.encode_reverse(self._buf, io[0], words)].astype("<u4", copy=False).tobytes()

    # -- decoding -------------------------------------------------------------------------------------
    def decode(self, payload: bytes, first_step: int, n_steps: int) -> np.ndarray:
        if len(payload) % 4:
            raise CorruptError(f"ctx chunk data is {len(payload)} bytes, not a whole number of 32-bit words")
        try:
            dec = kn.Decoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
        except ValueError as e:
            raise CorruptError(f"ctx chunk data is invalid: {e}") from None
        st = self._begin(first_step, n_steps)
        hw = self.values_per_step
        modes = np.zeros((n_steps, hw), dtype=np.uint8)  # (the kernels OR decoded symbols in)
        out = np.zeros((n_steps, hw), dtype=np.int64)
        found = self._code_chunk(False, st, modes, out, _NO_BUF, dec.io, dec.state, dec.words)
        if found == kn.BAD_MODE:
            raise CorruptError("ctx chunk has a mode that refers to a token outside the segment or grid")
        if found == kn.BAD_LITERAL:
            raise CorruptError(f"a decoded token is outside the codebook of {self.header.codebook_size}")
        if not dec.is_empty():
            raise CorruptError("ctx chunk has data left over after its last step")
        if self._token is not None:  # ranks -> tokens in place, a block at a time (no second chunk-sized array)
            flat = out.reshape(-1)
            for i in range(0, len(flat), _MAP_BLOCK):
                flat[i:i + _MAP_BLOCK] = self._token[flat[i:i + _MAP_BLOCK]]
        return out.reshape(n_steps, *self.header.grid)
