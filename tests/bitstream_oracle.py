"""The `ctx` coder as it was before its numba kernels (otok 1.2, commit 711d816): constriction's AnsCoder
driven from numpy. The tests' oracle: the kernels must write the same bytes and read these bytes back.
Kept verbatim but for imports, and for `step_modes`, the whole-array form of the modes that the package
now chooses in a numba loop (tested equal); not part of the package."""

from __future__ import annotations

import numpy as np
import constriction

from otok.bitstream import timeline
from otok.bitstream.errors import CorruptError, UsageError
from otok.bitstream.coders import ctx_model as cm
from otok.bitstream.coders.base import Coder
from otok.bitstream.coders.ctx import NO_PRIOR, CtxParams

Categorical = constriction.stream.model.Categorical
AnsCoder = constriction.stream.stack.AnsCoder
FAMILY = Categorical(perfect=False)

# The package keeps no inverse functions it does not use itself; the oracle has its own (SPEC.md §6).
FIRST_LITERAL_ROUND = 16  # SPEC: the first round of a step's literals


def literal_rounds(n: int) -> list[int]:
    """Boundaries of the rounds of a step's n literals: [0, 16, 32, 64, ..., n] (each round doubles what
    came before it, the first takes FIRST_LITERAL_ROUND); counts adapt after each round."""
    cuts = [0]
    while cuts[-1] < n:
        cuts.append(min(n, max(FIRST_LITERAL_ROUND, 2 * cuts[-1])))
    return cuts


def join_parts(parts: list[np.ndarray], layout: cm.PartLayout) -> np.ndarray:
    """Inverse of split_parts -> int64 (N,)."""
    out = np.zeros(parts[0].shape, dtype=np.int64)
    for part, shift in zip(parts, layout.shifts):
        out |= part.astype(np.int64) << shift
    return out


def join_ranks(groups: np.ndarray, parts: list[np.ndarray], layout: cm.GroupLayout) -> np.ndarray:
    """Inverse of split_ranks -> int64 (N,)."""
    out = groups.astype(np.int64) << layout.lo_bits
    for part, shift in zip(parts, layout.lo_shifts):
        out |= part.astype(np.int64) << shift
    return out


def parity_positions(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat raster indices of the checkerboard halves: ((i + j) even, (i + j) odd)."""
    parity = (np.add.outer(np.arange(h), np.arange(w)) & 1).ravel()
    return np.flatnonzero(parity == 0), np.flatnonzero(parity == 1)



def step_modes(steps: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
    """Modes of steps (n, h, w) -> uint8 (n, h, w), written with whole-array operations (the coder's are a
    loop, `ctx_kernels.step_modes`). `ref` (h, w) is the step before steps[0] in its segment (None when
    steps[0] starts a segment); steps[k] refers to steps[k - 1] for k > 0."""
    modes = np.full(steps.shape, cm.MODE_LIT, dtype=np.uint8)
    # lowest priority first, so that a higher one overwrites: L, then U, then T
    np.copyto(modes[..., :, 1:], cm.MODE_L, where=steps[..., :, 1:] == steps[..., :, :-1])
    np.copyto(modes[..., 1:, :], cm.MODE_U, where=steps[..., 1:, :] == steps[..., :-1, :])
    np.copyto(modes[1:], cm.MODE_T, where=steps[1:] == steps[:-1])
    if ref is not None and len(steps):
        np.copyto(modes[0], cm.MODE_T, where=steps[0] == ref)
    return modes


class ModePlanes:
    """The modes of the previous and of the current step, each in a flat (h + 1) x (w + 1) uint8 grid whose
    first row and column hold NONE (4); the two grids swap roles every step. A pass's contexts are three
    gathers at precomputed cells (faster than a multiply-add over whole grids, and than one wide gather)."""

    def __init__(self, h: int, w: int) -> None:
        stride = w + 1
        self._grids = [np.full((h + 1) * stride, cm.NONE, dtype=np.uint8) for _ in range(2)]
        self._interiors = [g.reshape(h + 1, stride)[1:, 1:] for g in self._grids]
        pos_a, pos_b = parity_positions(h, w)

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


def _model(counts: np.ndarray) -> Categorical:
    """A fixed categorical model from integer counts held as float64 (exact inputs, so quantization is
    identical on every machine). constriction copies them into its own table, so `counts` may change after."""
    return Categorical(counts, perfect=False)


class _State:
    """Adaptive state inside a segment: reference grid, previous modes, mode and literal counts.

    Counts are float64 holding integers (exact), the dtype constriction takes, so no table is converted per
    step; the sums are tracked so that the halving check does not re-sum a table per pass or step."""

    def __init__(self, modes: np.ndarray, parts: list[np.ndarray], part_sums: list[int],
                 grouped: tuple[np.ndarray, list[np.ndarray]] | None = None) -> None:
        self.ref: np.ndarray | None = None  # (h, w) int64, the previous step
        self.steps_done = 0  # steps of the segment coded before the current chunk
        self.prev: np.ndarray | None = None  # (h, w) uint8, the previous step's modes (encoder side)
        self.modes = modes.copy()  # (NUM_MODE_CTX, NUM_MODES) float64
        self.row_sums = self.modes.sum(axis=1)  # (NUM_MODE_CTX,) float64, kept equal to modes.sum(axis=1)
        self.parts = [t.copy() for t in parts]  # per sub-symbol (alphabet,) float64
        self.part_sums = list(part_sums)  # per sub-symbol, sum of its table
        self.max_bound = int(self.row_sums.max())  # at least the largest row sum (see _count_modes)
        if grouped is not None:  # literal model 1: group counts (contexts, G), lo-part counts (G, a_j) each
            self.group_table = grouped[0].copy()
            self.lo_tables = [t.copy() for t in grouped[1]]
            # at least the largest row sum of each table: checked against the limit only when it can pass it
            self.grouped_bounds = [int(t.sum(axis=1).max()) for t in (self.group_table, *self.lo_tables)]


class OracleCtxCoder(Coder):
    name = "ctx"
    coder_id = 4
    format_minor = 1  # defined by format version 1.1; literal model 1 by 1.2 (set per instance)
    Params = CtxParams

    def __init__(self, header, prior=None) -> None:
        super().__init__(header, prior)
        params: CtxParams = header.coder_params
        self.mode_limit, self.literal_limit = params.mode_limit, params.literal_limit
        self.literal_increment_int = params.literal_increment
        self.literal_increment = float(params.literal_increment)
        self.layout = cm.part_layout(header.codebook_size)
        if params.prior_sha256 == NO_PRIOR:
            prior = None
        elif prior is None or prior.sha256 != params.prior_sha256:
            raise UsageError(f"this stream needs the prior table {params.prior_sha256.hex()}, which was not given")
        elif prior.codebook_size != header.codebook_size:
            raise UsageError(f"the prior table is for a codebook of {prior.codebook_size}, the stream has "
                             f"{header.codebook_size}")
        if prior is None:
            self._mode_init = np.ones((cm.NUM_MODE_CTX, cm.NUM_MODES))
            self._part_init = [np.ones(a) for a in self.layout.alphabets]
        else:
            self._mode_init = 1 + prior.mode_counts.astype(np.float64)
            self._part_init = [1 + t.astype(np.float64) for t in prior.part_counts]
        self.literal_model = params.literal_model
        self.format_minor = 2 if self.literal_model else 1
        self._grouped_init = None
        if self.literal_model:
            self.groups = cm.group_layout(header.codebook_size)
            ordered = prior is not None and prior.has_order  # else the identity order: ranks are tokens
            self._rank = prior.order.astype(np.int64) if ordered else None
            self._token = prior.tokens_by_rank if ordered else None
            group_init = np.ones((self.groups.contexts, self.groups.groups))
            if prior is not None:
                group_init += prior.group_counts
            cm.add_counts(group_init, 0, self.literal_limit)  # rows above the limit start halved, as modes do
            self._grouped_init = (group_init, [np.ones((self.groups.groups, a)) for a in self.groups.lo_alphabets])
        # Rows of a prior above the limit are halved before use, so every row starts within it: an update
        # can then only push the rows it touches over the limit (pass A's update never halves a pass-B row).
        cm.add_counts(self._mode_init, 0, self.mode_limit)
        self._part_init_sums = [int(t.sum()) for t in self._part_init]
        self.planes = ModePlanes(*header.grid)  # decoder-side mode contexts
        self._rows = _RowBuffer()  # literal model 1's per-symbol rows
        self.state: _State | None = None
        self.next_step = 0

    def _begin(self, first_step: int, n_steps: int) -> _State:
        """The state for a chunk of steps [first_step, first_step + n_steps) inside one segment."""
        if timeline.is_segment_start(first_step, self.header.gop):
            self.state = _State(self._mode_init, self._part_init, self._part_init_sums, self._grouped_init)
            self.planes.reset()
        elif self.state is None or first_step != self.next_step:
            raise CorruptError(f"step {first_step} continues a segment whose earlier steps were not decoded")
        self.next_step = first_step + n_steps
        return self.state

    def _count_modes(self, st: _State, obs: np.ndarray, rows: slice | list[int], obs_sums: np.ndarray,
                     total: int) -> None:
        """cm.add_counts(st.modes[rows], obs, mode_limit), given obs.sum(axis=1) and its total. Only the rows
        just updated can pass the limit, and only once their sums can: st.max_bound (at least the largest
        row sum) spares the per-row check while it stays below the limit."""
        st.modes[rows] += obs
        st.row_sums[rows] += obs_sums
        st.max_bound += total
        if st.max_bound > self.mode_limit:
            if (st.row_sums[rows] > self.mode_limit).any():
                cm.add_counts(st.modes, 0, self.mode_limit)
                st.row_sums = st.modes.sum(axis=1)
            st.max_bound = int(st.row_sums.max())

    def _count_literals(self, st: _State, part: int, values: np.ndarray) -> None:
        """cm.add_counts(table, bincount(values), literal_limit), without a full-table add and sum per step."""
        table = st.parts[part]
        np.add.at(table, values, self.literal_increment)  # (a float: an int one takes a slow path in numpy)
        st.part_sums[part] += self.literal_increment_int * len(values)
        if st.part_sums[part] > self.literal_limit:  # halve, as add_counts would
            cm.add_counts(table, 0, self.literal_limit)
            st.part_sums[part] = int(table.sum())

    # -- encoding: work out every symbol and its model in decoding order, then push them in reverse ----
    def encode(self, steps: np.ndarray, first_step: int) -> bytes:
        steps = steps.astype(np.int64, copy=False)
        n = len(steps)
        st = self._begin(first_step, n)
        modes = step_modes(steps, st.ref)
        mode_symbols = self._mode_symbols(modes, st) if n else None
        is_literal = modes.reshape(n, self.values_per_step) == cm.MODE_LIT
        literal_ops = (self._grouped_literal_ops if self.literal_model else self._literal_ops)(steps, is_literal, st)
        if n:
            st.ref = steps[-1]
        st.steps_done += n
        coder = AnsCoder()
        for symbols, rows in reversed(literal_ops):  # literals come after all modes of the chunk
            if isinstance(rows, Categorical):
                coder.encode_reverse(symbols, rows)
            elif isinstance(rows, np.ndarray):
                coder.encode_reverse(symbols, FAMILY, rows)
            else:  # (table, contexts): gathered MAX_ROWS at a time, last slice first (a stack)
                table, ctx = rows
                for a in reversed(range(0, len(ctx), MAX_ROWS)):
                    coder.encode_reverse(symbols[a:a + MAX_ROWS], FAMILY, self._rows.take(table, ctx[a:a + MAX_ROWS]))
        if mode_symbols is not None:
            _encode_modes_reverse(coder, *mode_symbols)
        return coder.get_compressed().astype("<u4").tobytes()

    def _literal_ops(self, steps: np.ndarray, is_literal: np.ndarray, st: _State) -> list:
        """Literal model 0: per step, per part, (sub-symbols, fixed model), counted after each."""
        ends = np.cumsum(np.count_nonzero(is_literal, axis=1)).tolist()
        parts = cm.split_parts(steps.reshape(len(steps), -1)[is_literal], self.layout)
        ops = []
        for i in range(len(steps)):
            lo = ends[i - 1] if i else 0
            for part, values in enumerate(parts):
                chunk = values[lo:ends[i]]
                if len(chunk):
                    ops.append((chunk, _model(st.parts[part])))
                    self._count_literals(st, part, chunk)
        return ops

    def _grouped_literal_ops(self, steps: np.ndarray, is_literal: np.ndarray, st: _State) -> list:
        """Literal model 1: per step, per round, the groups then each lo part, as (symbols, fixed model),
        (symbols, per-symbol count rows) or, for a round with more rows than its table has, (symbols,
        (copy of the table, contexts)): gathered when coded, so the chunk's rows never all exist at once;
        counted after each round."""
        ops = []
        for i in range(len(steps)):
            at = is_literal[i]
            if not at.any():
                continue
            ref = steps[i - 1] if i else st.ref
            ranks = self._ranks(steps[i])
            groups, los = cm.split_ranks(ranks.reshape(-1)[at], self.groups)
            if ref is None:  # a segment's first step: row by row, in the context of the group above
                ctx, cuts = cm.key_step_contexts(ranks, at.reshape(ranks.shape), self.groups)
            else:
                ctx = cm.group_contexts(self._ranks(ref.reshape(-1)[at]), len(groups), self.groups,
                                        st.steps_done + i == 1)
                cuts = literal_rounds(len(groups))
            for a, b in zip(cuts, cuts[1:]):
                if a == b:
                    continue
                g, piece = groups[a:b], [lo[a:b] for lo in los]
                ops.append((g.astype(np.int32), _encoder_rows(st.group_table, ctx[a:b])))
                ops += [(lo, _encoder_rows(table, g)) for lo, table in zip(piece, st.lo_tables)]
                self._count_grouped(st, ctx[a:b], g, piece)
        return ops

    def _ranks(self, tokens: np.ndarray) -> np.ndarray:
        return tokens if self._rank is None else self._rank[tokens]

    def _count_grouped(self, st: _State, ctx: np.ndarray, groups: np.ndarray, los: list[np.ndarray]) -> None:
        """Add a round of literal model 1 to its counts (literal_increment each), halving a row above
        literal_limit as add_counts would."""
        tables = (st.group_table, *st.lo_tables)
        for t, (table, rows, symbols) in enumerate(zip(tables, (ctx, *[groups] * len(los)), (groups, *los))):
            if 8 * len(symbols) < table.size:
                np.add.at(table, (rows, symbols), self.literal_increment)
            else:  # a histogram of the whole table is cheaper than add.at over many symbols (same counts)
                width = table.shape[1]
                seen = np.bincount(rows * width + symbols, minlength=table.size).reshape(table.shape)
                table += self.literal_increment * seen
            st.grouped_bounds[t] += self.literal_increment_int * len(symbols)
            if st.grouped_bounds[t] > self.literal_limit:
                cm.add_counts(table, 0, self.literal_limit)
                st.grouped_bounds[t] = int(table.sum(axis=1).max())

    def _mode_symbols(self, modes: np.ndarray, st: _State) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All modes of a chunk in decoding order, in groups that each use one count row:
        -> (modes int32 (N,), group sizes (G,), count rows of the groups (G, 4)).

        Contexts are computed on whole grids (pass A at (i + j) even, pass B at odd). Per step, a stable
        sort by context lists every context's modes in raster order, pass-A contexts (0..124) before
        pass-B ones (125..249): the decoder's order when both passes take one round. Pass A's counts
        change only pass-A rows, so the counts before the step serve both passes then. Passes that
        need more rounds take their symbols round by round from the sorted step (_pass_in_rounds).
        This is the general path, for chunks in which a count row may halve; see _mode_symbols_no_halving.
        """
        m, nctx = len(modes), cm.NUM_MODE_CTX
        ctx = cm.mode_contexts(modes, st.prev).reshape(m, -1)
        flat = modes.reshape(m, -1)
        key = ctx.astype(np.intp)
        key *= cm.NUM_MODES
        key += flat
        key += (cm.NUM_MODES * nctx) * np.arange(m)[:, None]
        obs = np.bincount(key.reshape(-1), minlength=cm.NUM_MODES * nctx * m).reshape(m, nctx, cm.NUM_MODES)
        sizes = obs.sum(axis=2)  # (m, NUM_MODE_CTX) symbols per (step, context)
        totals = sizes.sum(axis=0)
        if (st.row_sums + totals <= self.mode_limit).all():
            return self._mode_symbols_no_halving(modes, st, ctx, obs, sizes, totals)
        symbols, group_sizes, group_rows = [], [], []
        for i in range(m):
            by_ctx = flat[i].take(np.argsort(ctx[i], kind="stable"))
            if (sizes[i] <= cm.PIECE_FACTOR * st.row_sums).all():  # one round per pass
                symbols.append(by_ctx)
                group_sizes.append(sizes[i])
                group_rows.append(st.modes.copy())
                self._count_modes(st, obs[i], slice(None), sizes[i], flat.shape[1])
                continue
            starts = np.cumsum(sizes[i]) - sizes[i]
            for rows in cm.PASS_ROWS:
                self._pass_in_rounds(st, by_ctx, sizes[i, rows], starts[rows], rows, None,
                                     symbols, group_sizes, group_rows)
        st.prev = modes[-1]
        return np.concatenate(symbols).astype(np.int32), np.concatenate(group_sizes), np.concatenate(group_rows)

    def _pass_in_rounds(self, st: _State, by_ctx: np.ndarray, n_c: np.ndarray, starts: np.ndarray, rows: slice,
                        base: np.ndarray | None, symbols: list, group_sizes: list, group_rows: list) -> None:
        """Append the groups of a pass in rounds (cm.round_pieces) to symbols / group_sizes / group_rows.

        by_ctx: the step's modes in context order, where context c of the pass starts at starts[c] and
        has n_c[c] modes. base: the pass's count rows at its start when no row can reach the halving
        limit (the rows of later rounds are then base plus what earlier pieces showed, and st is left
        alone), or None: take the rows from st and update st after each round, as the decoder does."""
        table = st.modes[rows].copy() if base is None else base
        first, later = cm.round_pieces(n_c, st.row_sums[rows] if base is None else base.sum(axis=1))
        starts = starts.tolist()
        done = {c: int(first[c]) for c, _ in later[0]} if later else {}
        cuts, lo = [], int(starts[0])  # round 0: each context's first piece, in context order
        for c in done:
            cuts.append(by_ctx[lo:starts[c] + done[c]])
            lo = starts[c] + int(n_c[c])
        cuts.append(by_ctx[lo:starts[-1] + int(n_c[-1])])
        piece = np.concatenate(cuts)
        symbols.append(piece)
        group_sizes.append(first)
        group_rows.append(table)
        if base is None:
            seen = np.bincount(np.repeat(_GID4, first) + piece, minlength=cm.NUM_MODES * _PASS_CONTEXTS)
            self._count_modes(st, seen.reshape(-1, cm.NUM_MODES), rows, first, len(piece))
        for rnd in later:
            contexts = [rows.start + c for c, _ in rnd]
            qs = np.array([q for _, q in rnd])
            pieces = [by_ctx[starts[c] + done[c]:starts[c] + done[c] + q] for c, q in rnd]
            if base is None:
                group_rows.append(st.modes[contexts])
            else:
                shown = [np.bincount(by_ctx[starts[c]:starts[c] + done[c]], minlength=cm.NUM_MODES) for c, _ in rnd]
                group_rows.append(base[[c for c, _ in rnd]] + np.stack(shown))
            symbols.extend(pieces)
            group_sizes.append(qs)
            if base is None:
                seen = np.stack([np.bincount(p, minlength=cm.NUM_MODES) for p in pieces])
                self._count_modes(st, seen, contexts, qs, int(qs.sum()))
            for c, q in rnd:
                done[c] += q

    def _mode_symbols_no_halving(self, modes: np.ndarray, st: _State, ctx: np.ndarray, obs: np.ndarray,
                                 sizes: np.ndarray, totals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """_mode_symbols when no count row can reach the halving limit in this chunk: the counts at each
        step's start are running sums (rounds add the same observations, only in pieces), so every table is
        known up front and a pass in rounds needs no sequential updates."""
        m = len(modes)
        flat = modes.reshape(m, -1)
        before = np.cumsum(obs, axis=0)
        before -= obs
        tables = before + st.modes  # (m, NUM_MODE_CTX, 4): the counts at each step's start
        step_sums = tables.sum(axis=2)
        one_round = (sizes <= cm.PIECE_FACTOR * step_sums).all(axis=1).tolist()
        symbols, group_sizes, group_rows = [], [], []
        for i in range(m):
            by_ctx = flat[i].take(np.argsort(ctx[i], kind="stable"))
            if one_round[i]:
                symbols.append(by_ctx)
                group_sizes.append(sizes[i])
                group_rows.append(tables[i])
                continue
            starts = np.cumsum(sizes[i]) - sizes[i]
            for rows in cm.PASS_ROWS:
                self._pass_in_rounds(st, by_ctx, sizes[i, rows], starts[rows], rows, tables[i, rows],
                                     symbols, group_sizes, group_rows)
        self._count_modes(st, obs.sum(axis=0), slice(None), totals, flat.size)
        st.prev = modes[-1]
        return (np.concatenate(symbols).astype(np.int32), np.concatenate(group_sizes),
                np.concatenate(group_rows))

    # -- decoding -------------------------------------------------------------------------------------
    def decode(self, payload: bytes, first_step: int, n_steps: int) -> np.ndarray:
        if len(payload) % 4:
            raise CorruptError(f"ctx chunk data is {len(payload)} bytes, not a whole number of 32-bit words")
        try:
            coder = AnsCoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
        except ValueError as e:
            raise CorruptError(f"ctx chunk data is invalid: {e}") from None
        st = self._begin(first_step, n_steps)
        h, w = self.header.grid
        modes = np.empty((n_steps, h, w), dtype=np.uint8)
        for i in range(n_steps):
            self._decode_modes(coder, st, modes[i])
        self._check_modes(modes, st.ref is None)
        flat = modes.reshape(n_steps, -1)
        ref = None if st.ref is None else st.ref.reshape(-1)
        if self.literal_model:
            out = np.empty((n_steps, h * w), dtype=np.int64)
            for i in range(n_steps):  # a step's literal contexts need the previous step's values
                if ref is None:
                    self._decode_key_step(coder, st, modes[i], out[i].reshape(h, w))
                else:
                    at = flat[i] == cm.MODE_LIT
                    literals = self._decode_grouped(coder, st, ref[at], int(at.sum()), st.steps_done + i == 1)
                    out[i] = resolve_values(flat[i:i + 1], literals, ref, w)[0]
                ref = out[i]
            out = out.reshape(n_steps, h, w)
        else:
            counts = np.count_nonzero(flat == cm.MODE_LIT, axis=1).tolist()
            literals = np.concatenate([self._decode_literals(coder, st, c) for c in counts]) if n_steps else None
            out = resolve_values(flat, literals, ref, w).reshape(n_steps, h, w)
        if n_steps:
            st.ref = out[-1]
        st.steps_done += n_steps
        if not coder.is_empty():
            raise CorruptError("ctx chunk has data left over after its last step")
        return out

    def _decode_modes(self, coder: AnsCoder, st: _State, out: np.ndarray) -> None:
        """One step's modes (pass A, pass B, each counted as it goes) into `out` (h, w)."""
        planes = self.planes
        planes.begin_step()
        rows_a, rows_b = cm.PASS_ROWS
        planes.write_a(self._decode_pass(coder, st, planes.contexts_a(), rows_a, planes.first))
        planes.write_b(self._decode_pass(coder, st, planes.contexts_b(), rows_b))  # local contexts
        planes.end_step(out)

    def _decode_pass(self, coder: AnsCoder, st: _State, ctx: np.ndarray, rows: slice,
                     one_context: bool = False) -> np.ndarray:
        """Decode one pass: round by round, the next piece of each context's modes (contexts ascending,
        raster order inside a context), then the counts of the round. -> modes in position order.

        ctx: the pass's contexts less rows.start (uint8, n); one_context: they are all the same (the
        context order is the position order)."""
        n = len(ctx)
        if not n:
            return ctx
        n_c = np.bincount(ctx, minlength=_PASS_CONTEXTS)
        if (n_c <= cm.PIECE_FACTOR * st.row_sums[rows]).all():  # one round: the common case
            decoded = _decode_groups(coder, n_c, st.modes[rows])
            seen = np.bincount(np.repeat(_GID4, n_c) + decoded, minlength=cm.NUM_MODES * _PASS_CONTEXTS)
            self._count_modes(st, seen.reshape(-1, cm.NUM_MODES), rows, n_c, n)
            if one_context:
                return decoded
            modes = np.empty(n, dtype=np.int32)
            modes[np.argsort(ctx, kind="stable")] = decoded
            return modes
        decoded = self._decode_rounds(coder, st, n_c, rows)
        modes = np.empty(n, dtype=np.int32)
        modes[np.argsort(ctx, kind="stable")] = decoded
        return modes

    def _decode_rounds(self, coder: AnsCoder, st: _State, n_c: np.ndarray, rows: slice) -> np.ndarray:
        """A pass in rounds (cm.round_pieces), counted after each round -> modes in context order."""
        first, later = cm.round_pieces(n_c, st.row_sums[rows])
        piece = _decode_groups(coder, first, st.modes[rows])
        seen = np.bincount(np.repeat(_GID4, first) + piece, minlength=cm.NUM_MODES * _PASS_CONTEXTS)
        self._count_modes(st, seen.reshape(-1, cm.NUM_MODES), rows, first, len(piece))
        starts = (np.cumsum(n_c) - n_c).tolist()
        decoded = np.empty(int(n_c.sum()), dtype=np.int32)
        done = {c: int(first[c]) for c, _ in later[0]}
        lo = at = 0  # round 0: each context's first piece, in context order
        for c in done:
            end = starts[c] + done[c]
            decoded[lo:end] = piece[at:at + end - lo]
            at += end - lo
            lo = starts[c] + int(n_c[c])
        decoded[lo:] = piece[at:]
        for rnd in later:
            contexts = [rows.start + c for c, _ in rnd]
            qs = np.array([q for _, q in rnd])
            table = st.modes[contexts]
            if len(rnd) == 1:
                piece = coder.decode(_model(table[0]), int(qs[0]))
            else:
                piece = coder.decode(FAMILY, np.repeat(table, qs, axis=0))
            seen = np.empty((len(rnd), cm.NUM_MODES), dtype=np.int64)
            at = 0
            for k, (c, q) in enumerate(rnd):
                decoded[starts[c] + done[c]:starts[c] + done[c] + q] = piece[at:at + q]
                seen[k] = np.bincount(piece[at:at + q], minlength=cm.NUM_MODES)
                done[c] += q
                at += q
            self._count_modes(st, seen, contexts, qs, at)
        return decoded

    @staticmethod
    def _check_modes(modes: np.ndarray, first_is_key: bool) -> None:
        """A mode whose source is not there (T without a previous step, U in row 0, L in column 0) is damage."""
        if (modes[:, 0, :] == cm.MODE_U).any() or (modes[:, :, 0] == cm.MODE_L).any() or (
                first_is_key and len(modes) and (modes[0] == cm.MODE_T).any()):
            raise CorruptError("ctx chunk has a mode that refers to a token outside the segment or grid")

    def _decode_grouped(self, coder: AnsCoder, st: _State, ref: np.ndarray, n: int, ref_is_first: bool) -> np.ndarray:
        """Literal model 1, a step with a previous step: its n literals (tokens, int64), given the previous
        step's tokens at their places and whether that step is the segment's first."""
        if not n:
            return np.zeros(0, dtype=np.int64)
        ctx = cm.group_contexts(self._ranks(ref), n, self.groups, ref_is_first)
        cuts = literal_rounds(n)
        return self._tokens(np.concatenate([self._decode_piece(coder, st, ctx[a:b]) for a, b in zip(cuts, cuts[1:])]))

    def _decode_key_step(self, coder: AnsCoder, st: _State, modes: np.ndarray, out: np.ndarray) -> None:
        """Literal model 1, a segment's first step: row by row, its literals (in the context of the group of
        the token above) and then the row's values (literals, U from the row above, L from the left)
        into out (h, w), all in rank space until the step is done. modes (h, w) are checked (no T, no U in
        row 0, no L in column 0)."""
        columns = np.arange(out.shape[1])
        offset = 1 + 2 * self.groups.groups
        ranks = out  # ranks first, tokens at the end (the order maps ranks to tokens one to one)
        for i, row in enumerate(modes):
            at = row == cm.MODE_LIT
            n = int(np.count_nonzero(at))
            if n:
                ctx = np.zeros(n, dtype=np.intp) if i == 0 else (ranks[i - 1][at] >> self.groups.lo_bits) + offset
                ranks[i][at] = self._decode_piece(coder, st, ctx)
            if i:
                up = row == cm.MODE_U
                ranks[i][up] = ranks[i - 1][up]
            left = row == cm.MODE_L
            if left.any():  # each L takes the nearest value to its left that is not an L
                source = np.where(left, 0, columns)
                np.maximum.accumulate(source, out=source)
                ranks[i] = ranks[i][source]
        out[...] = self._tokens(ranks)

    def _decode_piece(self, coder: AnsCoder, st: _State, ctx: np.ndarray) -> np.ndarray:
        """The ranks (int64) of one round's or row's literals, given their group contexts; then counted."""
        groups = self._decode_rows(coder, st.group_table, ctx).astype(np.intp)
        los = [self._decode_rows(coder, table, groups) for table in st.lo_tables]
        self._count_grouped(st, ctx, groups, los)
        return join_ranks(groups, los, self.groups)

    def _tokens(self, ranks: np.ndarray) -> np.ndarray:
        """Tokens of decoded ranks; a rank outside the codebook is damage."""
        if ranks.size and int(ranks.max()) >= self.header.codebook_size:
            raise CorruptError(f"decoded token rank {int(ranks.max())} is outside the codebook of "
                               f"{self.header.codebook_size}")
        return ranks if self._token is None else self._token[ranks]

    def _decode_rows(self, coder: AnsCoder, table: np.ndarray, ctx: np.ndarray) -> np.ndarray:
        """Decode len(ctx) symbols, each with the count row of its context (MAX_ROWS rows at a time)."""
        if (ctx == ctx[0]).all():
            return coder.decode(_model(table[ctx[0]]), len(ctx))
        if len(ctx) <= MAX_ROWS:
            return coder.decode(FAMILY, self._rows.take(table, ctx))
        return np.concatenate([coder.decode(FAMILY, self._rows.take(table, ctx[a:a + MAX_ROWS]))
                               for a in range(0, len(ctx), MAX_ROWS)])

    def _decode_literals(self, coder: AnsCoder, st: _State, n: int) -> np.ndarray:
        if not n:
            return np.zeros(0, dtype=np.int64)
        parts = []
        for part in range(self.layout.count):
            values = coder.decode(_model(st.parts[part]), n)
            self._count_literals(st, part, values)
            parts.append(values)
        if self.layout.count == 1:  # a single part's alphabet is the codebook: always in range
            return parts[0].astype(np.int64)
        return self.check_range(join_parts(parts, self.layout))


# Modes are coded in groups of one count row each (a context in a pass of a step), in the decoder's
# order. A large group is one call with a fixed model; runs of small groups go in one call of the model
# family with a probability row per symbol (the family quantizes each row exactly as a fixed model
# would, so the split changes no byte). Per symbol the family costs more than a fixed model; per call a
# fixed model costs a few microseconds: the threshold balances the two.
BIG_GROUP_ENCODE = 256
BIG_GROUP_DECODE = 64
_PASS_CONTEXTS = cm.CTX_A  # contexts per pass (both passes have 125)
_GID4 = cm.NUM_MODES * np.arange(_PASS_CONTEXTS)


# Per-symbol count rows are gathered at most this many at a time (a 128-wide lo part: 32 MiB), so a
# large step costs bounded memory; rows are fixed inside a round, so slicing changes no byte.
MAX_ROWS = 1 << 15


class _RowBuffer:
    """Per-symbol count rows gathered into buffers that are reused (one per row width, at most MAX_ROWS
    rows): a fresh array per call would cost a page fault per 4 KiB, several times the coding itself."""

    def __init__(self) -> None:
        self._buffers: dict[int, np.ndarray] = {}

    def take(self, table: np.ndarray, ctx: np.ndarray) -> np.ndarray:
        """table[ctx] (len(ctx) <= MAX_ROWS, width), valid until the next take of the same width."""
        width = table.shape[1]
        buf = self._buffers.get(width)
        if buf is None or len(buf) < len(ctx):
            grown = min(MAX_ROWS, max(len(ctx), 2 * len(buf) if buf is not None else 0))
            buf = self._buffers[width] = np.empty((grown, width))
        out = buf[:len(ctx)]
        np.take(table, ctx, axis=0, out=out, mode="clip")  # contexts are in range; "raise" would buffer
        return out


def _encoder_rows(table: np.ndarray, ctx: np.ndarray) -> Categorical | np.ndarray | tuple[np.ndarray, np.ndarray]:
    """How the encoder codes symbols whose contexts are `ctx` with count rows `table` as they are now: a
    fixed model when they share one context (cheaper per symbol; the same bytes as the family), else the
    rows, or when there are more rows than the table has, a copy of the table and the contexts."""
    if (ctx == ctx[0]).all():
        return _model(table[ctx[0]])
    if len(ctx) * table.shape[1] <= table.size:
        return table[ctx]
    return table.copy(), ctx


def _call_plan(sizes: np.ndarray, ends: np.ndarray, big_group: int) -> list[tuple[int, int]]:
    """Group ranges [lo, hi) to code in one call each: a group of >= big_group symbols alone, each
    stretch of smaller ones between them (empty groups included) together when it holds any symbol.
    ends: np.cumsum(sizes)."""
    big = np.flatnonzero(sizes >= big_group).tolist()
    plan, lo = [], 0
    for b in big + [len(sizes)]:
        if lo < b and ends[b - 1] > (ends[lo - 1] if lo else 0):
            plan.append((lo, b))
        if b < len(sizes):
            plan.append((b, b + 1))
        lo = b + 1
    return plan


def _encode_modes_reverse(coder: AnsCoder, symbols: np.ndarray, sizes: np.ndarray, rows: np.ndarray) -> None:
    """Push modes `symbols` (decoding order) in groups of `sizes` coded with count `rows`, last group first."""
    ends = np.cumsum(sizes)
    for lo, hi in reversed(_call_plan(sizes, ends, BIG_GROUP_ENCODE)):
        a, b = (int(ends[lo - 1]) if lo else 0), int(ends[hi - 1])
        if hi - lo == 1:
            coder.encode_reverse(symbols[a:b], _model(rows[lo]))
        else:
            coder.encode_reverse(symbols[a:b], FAMILY, np.repeat(rows[lo:hi], sizes[lo:hi], axis=0))


def _decode_groups(coder: AnsCoder, sizes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Decode groups of `sizes` symbols coded with count `rows`, one after another -> int32 symbols."""
    big = np.flatnonzero(sizes >= BIG_GROUP_DECODE).tolist()
    if not big:  # one call of the family
        return coder.decode(FAMILY, np.repeat(rows, sizes, axis=0))
    ends = np.cumsum(sizes).tolist()
    if len(big) == 1 and sizes[big[0]] == ends[-1]:  # one group only
        return coder.decode(_model(rows[big[0]]), ends[-1])
    out = np.empty(ends[-1], dtype=np.int32)
    lo = 0
    for b in big + [len(sizes)]:
        start = ends[lo - 1] if lo else 0
        if b > lo and ends[b - 1] > start:  # the smaller groups before b
            out[start:ends[b - 1]] = coder.decode(FAMILY, np.repeat(rows[lo:b], sizes[lo:b], axis=0))
        if b < len(sizes):
            start = ends[b - 1] if b else 0
            out[start:ends[b]] = coder.decode(_model(rows[b]), ends[b] - start)
        lo = b + 1
    return out

