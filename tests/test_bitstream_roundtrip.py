"""Round trips of every coder through the container: random shapes, codebooks 2..2**18, repetition 0..1."""

from __future__ import annotations

import io

import numpy as np
import pytest
from bitstream_oracle import join_ranks, literal_rounds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from otok.bitstream import (
    CtxParams,
    Header,
    OtokReader,
    OtokWriter,
    Prior,
    UsageError,
    read_tokens,
)
from otok.bitstream.coders import ctx_kernels as kn
from otok.bitstream.coders import ctx_model
from otok.bitstream.prior import code_order
from otok.bitstream.synthetic import entropy_bound, repetition_grids

SHA = bytes(range(32))


def make_header(grid=(3, 5), k=16, coder="ctx", gop=5, t=4, p=8, **kw) -> Header:
    h, w = grid
    return Header("otok-test", SHA, p, t, gop, grid, w * p, h * p, (30000, 1001), codebook_size=k, coder=coder, **kw)


def encode(header: Header, tokens: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    with OtokWriter(buf, header, **kw) as w:
        w.write(tokens)
    return buf.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    coder=st.sampled_from(["raw", "zstd", "ctx"]),
    log_k=st.integers(1, 18),
    k_offset=st.integers(0, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    steps=st.integers(0, 12),
    gop=st.sampled_from([0, 1, 2, 5]),
    repeat=st.floats(0.0, 1.0),
    per_chunk=st.sampled_from([None, 1, 3]),
    seed=st.integers(0, 2**16),
)
def test_round_trip(coder, log_k, k_offset, h, w, steps, gop, repeat, per_chunk, seed):
    k = max(2, (1 << log_k) - k_offset)
    tokens = repetition_grids(steps, (h, w), k, repeat, gop, seed)
    header = make_header((h, w), k, coder, gop)
    data = encode(header, tokens, steps_per_chunk=per_chunk)
    out = read_tokens(io.BytesIO(data))
    assert out.dtype == np.int64 and out.shape == (steps, h, w)
    np.testing.assert_array_equal(out, tokens)
    report = OtokReader(io.BytesIO(data)).verify()
    assert report.steps == steps and report.bytes == len(data)


@pytest.mark.parametrize("literal_model", [0, 1])
@pytest.mark.parametrize("k", [2, 3, 1000, 1 << 14, (1 << 14) + 1, 64000, 1 << 18, 1 << 24])
def test_extreme_codebooks_ctx(k, literal_model):
    tokens = repetition_grids(7, (6, 7), k, 0.5, 5, seed=k)
    tokens[1, 0, :] = k - 1  # the largest index must survive the sub-symbol split
    tokens[2, 0, :] = 0
    header = make_header((6, 7), k, coder_params=CtxParams(literal_model=literal_model))
    np.testing.assert_array_equal(read_tokens(io.BytesIO(encode(header, tokens))), tokens)


@pytest.mark.parametrize("k", [2, 3, 64, 65, 1000, 8192, 1 << 14, (1 << 14) + 1, 1 << 18, 1 << 24])
def test_group_layout(k):
    """Group and lo parts cover ceil(log2 K) bits; every rank splits and joins back; lo parts <= 7 bits."""
    layout = ctx_model.group_layout(k)
    bits = max(1, (k - 1).bit_length())
    assert layout.lo_bits + (layout.groups - 1).bit_length() == bits or layout.groups == 1
    assert all(a <= 1 << ctx_model.LO_PART_BITS for a in layout.lo_alphabets)
    assert sum(a.bit_length() - 1 for a in layout.lo_alphabets) == layout.lo_bits
    assert layout.groups <= 1 << ctx_model.GROUP_BITS and layout.contexts == 3 * layout.groups + 1
    ranks = np.unique(np.r_[0, k - 1, np.random.default_rng(k).integers(0, k, 500)])
    groups, parts = ctx_model.split_ranks(ranks, layout)
    assert groups.max() < layout.groups
    np.testing.assert_array_equal(join_ranks(groups, parts, layout), ranks)


def test_literal_rounds():
    assert literal_rounds(0) == [0]
    assert literal_rounds(5) == [0, 5]
    assert literal_rounds(16) == [0, 16]
    assert literal_rounds(100) == [0, 16, 32, 64, 100]


def test_code_order_groups_similar_codes():
    """code_order is a permutation whose groups (runs of consecutive ranks) are compact clusters."""
    codes = np.random.default_rng(3).normal(size=(1024, 8))
    codes /= np.linalg.norm(codes, axis=1, keepdims=True)
    ranks = code_order(codes)
    assert sorted(ranks.tolist()) == list(range(1024))
    by_rank = codes[np.argsort(ranks)].reshape(64, 16, 8)  # 64 groups of 16 consecutive ranks
    within = np.linalg.norm(by_rank - by_rank.mean(axis=1, keepdims=True), axis=2).mean()
    overall = np.linalg.norm(codes - codes.mean(axis=0), axis=1).mean()
    assert within < 0.7 * overall, (within, overall)


def _drifting_tokens(steps: int, grid: tuple[int, int], k: int, seed: int) -> np.ndarray:
    """Every step replaces half its tokens by a random token of the same group (rank >> lo_bits, identity
    order) as the previous step's token there: the group of a literal follows from its context."""
    rng = np.random.default_rng(seed)
    lo = ctx_model.group_layout(k).lo_bits
    out = rng.integers(0, k, (steps,) + grid, dtype=np.int64)
    for s in range(1, steps):
        change = rng.random(grid) < 0.5
        fresh = (out[s - 1] >> lo << lo) | rng.integers(0, 1 << lo, grid)
        out[s] = np.where(change, fresh, out[s - 1])
    return out


def test_grouped_literals_use_the_previous_steps_group():
    """Literal model 1 codes a literal's group from the previous step's group: on tokens that keep their
    group, its literals cost far fewer bits than model 0's, and both round-trip."""
    k, grid = 8192, (24, 32)
    tokens = _drifting_tokens(20, grid, k, seed=9)
    sizes = {}
    for model in (0, 1):
        header = make_header(grid, k, gop=0, coder_params=CtxParams(literal_model=model))
        data = encode(header, tokens)
        np.testing.assert_array_equal(read_tokens(io.BytesIO(data)), tokens)
        sizes[model] = len(data)
    # model 0: ~13 bits per literal; model 1: ~7 bits (the lo part) plus a learned group after step 0
    assert sizes[1] < 0.75 * sizes[0], sizes


def test_part_layout_bounds_alphabets():
    for k in [2, 5, 1 << 14, (1 << 14) + 1, 1 << 18, (1 << 18) - 3]:
        layout = ctx_model.part_layout(k)
        assert max(layout.alphabets) <= 1 << ctx_model.MAX_PART_BITS
        assert ((k - 1) >> layout.shifts[0]) + 1 == layout.alphabets[0]
    assert ctx_model.part_layout(1 << 18).alphabets == (512, 512)
    assert ctx_model.part_layout(1000).alphabets == (1000,)


def test_round_pieces():
    sums = np.array([4.0, 100.0, 1028.0])
    first, later = ctx_model.round_pieces(np.array([32, 800, 0]), sums)
    assert first.tolist() == [32, 800, 0] and later == []  # n_c <= 8 * s_c everywhere: one round
    first, later = ctx_model.round_pieces(np.array([1800, 900, 5]), sums)
    assert first.tolist() == [32, 800, 5]  # budgets 4, 100, 1028
    assert later == [[(0, 288), (1, 100)], [(0, 1480)]]  # context 0: budgets 36, then 324


def test_step_by_step_equals_bulk():
    tokens = repetition_grids(13, (4, 6), 300, 0.7, 5, seed=3)
    header = make_header((4, 6), 300)
    bulk = encode(header, tokens)
    buf = io.BytesIO()
    with OtokWriter(buf, header) as w:
        for grid in tokens:
            w.write(grid)
    assert buf.getvalue() == bulk
    assert encode(header, tokens[None]) == bulk  # (1, S, h, w): a batch of one video


@pytest.mark.parametrize("coder", ["raw", "zstd", "ctx"])
def test_pipe_in_and_out(coder, tmp_path):
    """The writer never seeks and the reader can read a non-seekable stream in one pass."""
    tokens = repetition_grids(9, (5, 5), 77, 0.6, 4, seed=1)

    class Pipe(io.RawIOBase):
        def __init__(self, data=b""):
            self.buf, self.data = [], io.BytesIO(data)

        def writable(self):
            return True

        def readable(self):
            return True

        def seekable(self):
            return False

        def write(self, b):
            self.buf.append(bytes(b))
            return len(b)

        def readinto(self, b):
            chunk = self.data.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    out = Pipe()
    with OtokWriter(out, make_header((5, 5), 77, coder, gop=4)) as w:
        w.write(tokens)
    data = b"".join(out.buf)
    reader = OtokReader(Pipe(data))
    np.testing.assert_array_equal(np.stack(list(reader)), tokens)
    assert reader.damage is None
    with pytest.raises(UsageError):
        reader.seek(1)


def test_latents_round_trip():
    rng = np.random.default_rng(0)
    lat = rng.normal(size=(6, 4, 3, 5)).astype(np.float32)
    header = Header("otok-kl", SHA, 8, 4, 5, (3, 5), 40, 24, (25, 1), latent_channels=4, coder="f16z")
    out = read_tokens(io.BytesIO(encode(header, lat)))
    assert out.dtype == np.float16 and out.shape == lat.shape
    np.testing.assert_array_equal(out, lat.astype(np.float16))
    special = np.array([np.inf, -np.inf, 0.0, -0.0, 65504, 6e-8], dtype=np.float16)
    lat16 = np.resize(special, (1, 4, 3, 5)).astype(np.float16)
    back = read_tokens(io.BytesIO(encode(header, lat16)))
    assert back.tobytes() == lat16.tobytes()  # bit-exact, signed zeros included


def test_seek_and_frames():
    tokens = repetition_grids(12, (3, 4), 50, 0.5, 5, seed=2)  # segments of 5 steps = 17 frames
    data = encode(make_header((3, 4), 50, gop=5), tokens, steps_per_chunk=2)
    reader = OtokReader(io.BytesIO(data))
    assert reader.steps == 12 and reader.frames == 17 + 17 + 1 + 4
    for frame, step in [(0, 0), (1, 1), (4, 1), (5, 2), (16, 4), (17, 5), (18, 6), (34, 10), (38, 11)]:
        assert reader.seek(frame) == step
        np.testing.assert_array_equal(next(iter(reader)), tokens[step])
    reader.seek(20)
    np.testing.assert_array_equal(np.stack(list(reader)), tokens[6:])
    with pytest.raises(UsageError):
        reader.seek(39)


def test_coded_bytes_leave_out_the_container():
    """coded_bytes = the coder data of every STEP chunk (raw: ceil(bits * tokens / 8) per chunk); the rest
    of the file does not depend on the tokens, and a file cut inside its last chunk counts the chunks
    before it."""
    tokens = repetition_grids(12, (3, 4), 50, 0.5, 5, seed=2)
    data = encode(make_header((3, 4), 50, coder="raw"), tokens, steps_per_chunk=5)
    chunk_steps = [5, 5, 2]
    assert OtokReader(io.BytesIO(data)).coded_bytes == sum(-(-6 * 12 * n // 8) for n in chunk_steps)
    other = encode(make_header((3, 4), 50), np.zeros_like(tokens), steps_per_chunk=5)  # ctx, all repeats
    ctx_data = encode(make_header((3, 4), 50), tokens, steps_per_chunk=5)
    overheads = {len(d) - OtokReader(io.BytesIO(d)).coded_bytes for d in (other, ctx_data)}
    assert len(overheads) == 1
    tail = (12 + 4 + 16 * 3) + (12 + 24)  # the index (3 entries) and the trailer
    cut = OtokReader(io.BytesIO(data[:-tail - 5]))  # and the last 5 bytes of the last STEP chunk
    assert not cut.complete and cut.coded_bytes == 2 * -(-6 * 12 * 5 // 8)


def test_true_frame_count_in_trailer():
    tokens = repetition_grids(3, (2, 2), 10, 0.5, 5)
    buf = io.BytesIO()
    w = OtokWriter(buf, make_header((2, 2), 10))
    w.write(tokens)
    w.close(frames=7)  # 3 steps cover 9 frames; the last group is padded
    assert OtokReader(io.BytesIO(buf.getvalue())).frames == 7
    w = OtokWriter(io.BytesIO(), make_header((2, 2), 10))
    w.write(tokens)
    with pytest.raises(UsageError):
        w.close(frames=5)  # 5 frames would need only 2 steps


def test_writer_rejects_bad_input():
    w = OtokWriter(io.BytesIO(), make_header((2, 3), 10))
    for bad in [np.zeros((3, 2), np.int64), np.full((2, 3), 10), np.full((2, 3), -1), np.zeros((2, 3))]:
        with pytest.raises(UsageError):
            w.write(bad)
    w.close()
    with pytest.raises(UsageError):
        w.write(np.zeros((2, 3), np.int64))


def test_prior_serialization_and_use():
    tokens = repetition_grids(10, (6, 8), 5000, 0.8, 5, seed=4)
    prior = Prior.from_tokens([tokens[:5], tokens[5:]], 5000)
    assert Prior.from_bytes(prior.to_bytes()) == prior
    assert prior.mode_counts.shape == (ctx_model.NUM_MODE_CTX, ctx_model.NUM_MODES) == (250, 4)
    header = make_header((6, 8), 5000)
    with_prior = encode(header, tokens, prior=prior)
    reader = OtokReader(io.BytesIO(with_prior))
    assert reader.header.coder_params.prior_sha256 == prior.sha256
    np.testing.assert_array_equal(np.stack(list(reader)), tokens)
    referenced = encode(header, tokens, prior=prior, embed_prior=False)
    without = OtokReader(io.BytesIO(referenced))  # header, index and trailer read without the prior
    assert without.steps == len(tokens)
    with pytest.raises(UsageError, match="prior"):
        list(without)
    np.testing.assert_array_equal(read_tokens(io.BytesIO(referenced), prior=prior), tokens)


def test_prior_file(tmp_path):
    prior = Prior.from_tokens([repetition_grids(5, (4, 4), 70000, 0.5, 5)], 70000)
    prior.save(tmp_path / "p.otkprior")
    assert Prior.load(tmp_path / "p.otkprior").sha256 == prior.sha256
    assert [len(t) for t in prior.part_counts] == list(ctx_model.part_layout(70000).alphabets)


def test_ctx_near_entropy_bound():
    """On a long repetition stream, ctx (with a prior of the source) costs little above the entropy (literal
    model 0 with increment 1, the parameters that suit i.i.d. literals)."""
    k, gop, steps = 1024, 5, 40
    tokens = repetition_grids(steps, (24, 32), k, 0.8, gop, seed=5)
    prior = Prior.from_tokens([repetition_grids(10, (24, 32), k, 0.8, gop, seed=6)[i:i + gop]
                               for i in range(0, 10, gop)], k)
    header = make_header((24, 32), k, gop=gop, coder_params=CtxParams(literal_increment=1, literal_model=0))
    data = encode(header, tokens, prior=prior, embed_prior=False)
    bits = 8 * len(data) / tokens.size
    assert bits < entropy_bound(steps, k, 0.8, gop) + 0.2


def test_ctx_near_entropy_bound_without_prior():
    """Without a prior, fresh mode contexts learn inside a pass (rounds): on a 360p grid still within 0.2
    bit/token of the entropy (small grids pay more for learning 250 contexts every segment)."""
    k, gop, steps = 1024, 5, 40
    tokens = repetition_grids(steps, (45, 80), k, 0.8, gop, seed=5)
    header = make_header((45, 80), k, gop=gop, coder_params=CtxParams(literal_increment=1, literal_model=0))
    bits = 8 * len(encode(header, tokens)) / tokens.size
    assert bits < entropy_bound(steps, k, 0.8, gop) + 0.2


def mixed_mode_grids(steps: int, grid: tuple[int, int], k: int, weights, gop: int, seed: int) -> np.ndarray:
    """Tokens whose every position copies the previous step (T), the token above (U) or to the left (L),
    or is a fresh random token, drawn with `weights` (where the source exists): all four modes occur."""
    rng = np.random.default_rng(seed)
    h, w = grid
    out = rng.integers(0, k, (steps, h, w), dtype=np.int64)
    p = np.asarray(weights, dtype=float) / sum(weights)
    for s in range(steps):
        has_ref = s > 0 and (gop == 0 or s % gop)
        pick = rng.choice(4, size=(h, w), p=p)
        for i in range(h):
            for j in range(w):
                m = pick[i, j]
                if m == 0 and has_ref:
                    out[s, i, j] = out[s - 1, i, j]
                elif m == 1 and i:
                    out[s, i, j] = out[s, i - 1, j]
                elif m == 2 and j:
                    out[s, i, j] = out[s, i, j - 1]
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    log_k=st.integers(1, 18),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    steps=st.integers(1, 9),
    gop=st.sampled_from([0, 1, 3, 5]),
    weights=st.tuples(*[st.integers(0, 4)] * 3, st.integers(1, 4)),
    per_chunk=st.sampled_from([None, 1, 2]),
    with_prior=st.booleans(),
    mode_limit=st.sampled_from([4, 40, 1 << 16]),
    increment=st.sampled_from([1, 8, 1 << 16]),
    literal_model=st.sampled_from([0, 1]),
    seed=st.integers(0, 2**16),
)
def test_round_trip_mixed_modes(log_k, h, w, steps, gop, weights, per_chunk, with_prior, mode_limit, increment,
                                literal_model, seed):
    """Every mode, context, round and literal-model pattern round-trips, with and without a prior (with a
    random code order), across chunkings, and with count rows that halve (small mode_limit, large literal
    increments) or not."""
    k = max(2, 1 << log_k)
    tokens = mixed_mode_grids(steps, (h, w), k, weights, gop, seed)
    prior = None
    if with_prior:
        sample = mixed_mode_grids(4, (h, w), k, weights, 0, seed + 1)
        prior = Prior.from_tokens([sample], k, order=np.random.default_rng(seed).permutation(k))
    params = CtxParams(bytes(32), mode_limit, 1 << 20, increment, literal_model)
    header = make_header((h, w), k, "ctx", gop, coder_params=params)
    data = encode(header, tokens, steps_per_chunk=per_chunk, prior=prior)
    np.testing.assert_array_equal(read_tokens(io.BytesIO(data)), tokens)


def _structured(kind: str, rng: np.random.Generator, k: int = 4096, steps: int = 10, grid=(24, 32)) -> np.ndarray:
    h, w = grid
    tokens = rng.integers(0, k, (steps, h, w), dtype=np.int64)
    if kind == "rows_equal":  # every row equals the one above: U everywhere below row 0
        tokens[:] = tokens[:, :1, :]
    elif kind == "constant_rows":  # every row is one token: L everywhere right of column 0
        tokens[:] = tokens[:, :, :1]
    elif kind == "repeat":  # every step after the first repeats it: T
        tokens[1:] = tokens[0]
    elif kind == "checkerboard":  # pass-A positions fresh literals, pass-B positions copy their left/upper neighbour
        odd = ctx_model.parity_a(h, w) == 0
        for s in range(steps):
            for i, j in zip(*np.nonzero(odd)):
                tokens[s, i, j] = tokens[s, i, j - 1] if j else tokens[s, i - 1, j]
    return tokens


def test_modes_of_structured_grids():
    rng = np.random.default_rng(21)
    h, w = 24, 32
    modes = kn.step_modes(_structured("rows_equal", rng), None)
    assert (modes[:, 1:, :] == ctx_model.MODE_U).all()
    modes = kn.step_modes(_structured("constant_rows", rng), None)
    assert (modes[:, :, 1:] == ctx_model.MODE_L).all()
    modes = kn.step_modes(_structured("repeat", rng), None)
    assert (modes[1:] == ctx_model.MODE_T).all()
    modes = kn.step_modes(_structured("checkerboard", rng), None)
    a = ctx_model.parity_a(h, w)
    assert (modes[:, a] == ctx_model.MODE_LIT).mean() > 0.99  # (a random token rarely equals a neighbour)
    assert (modes[:, ~a] != ctx_model.MODE_LIT).all()  # copies: U or L (or, by chance, T)
    assert np.isin(modes[:, ~a], [ctx_model.MODE_U, ctx_model.MODE_L]).mean() > 0.99


@pytest.mark.parametrize("kind", ["rows_equal", "constant_rows", "repeat", "checkerboard"])
def test_structured_grids_round_trip_and_shrink(kind):
    """U, L and T repeats round-trip exactly and cost far less than random tokens of the same shape."""
    rng = np.random.default_rng(22)
    tokens = _structured(kind, rng)
    random = rng.integers(0, 4096, tokens.shape, dtype=np.int64)
    header = make_header(tokens.shape[1:], 4096, "ctx", gop=10)
    data, base = encode(header, tokens), encode(header, random)
    np.testing.assert_array_equal(read_tokens(io.BytesIO(data)), tokens)
    np.testing.assert_array_equal(read_tokens(io.BytesIO(base)), random)
    # A literal costs about 12 bits; rows_equal / constant_rows / repeat leave 1/24, 1/32, 1/10 of the
    # tokens literal, the checkerboard 1/2 (file overhead: about 150 bytes of 11.7 KB for random tokens).
    limit = {"rows_equal": 0.1, "constant_rows": 0.1, "repeat": 0.2, "checkerboard": 0.6}[kind]
    assert len(data) < limit * len(base), (len(data), len(base))


def test_each_file_has_the_lowest_format_version_that_fits():
    """ctx with literal model 1 writes format 1.2, ctx with model 0 1.1 (44-byte parameters, as 1.1
    readers expect), raw and zstd 1.0."""
    tokens = repetition_grids(3, (2, 3), 10, 0.5, 5)
    for coder, model, minor in [("ctx", 1, 2), ("ctx", 0, 1), ("raw", None, 0), ("zstd", None, 0)]:
        params = {} if model is None else {"coder_params": CtxParams(literal_model=model)}
        header = make_header((2, 3), 10, coder, **params)
        data = encode(header, tokens)
        assert data[8:12] == bytes([1, 0, minor, 0]), coder
        if model is not None:
            assert len(header.coder_params.pack()) == (48 if model else 44)
            np.testing.assert_array_equal(read_tokens(io.BytesIO(data)), tokens)


def test_prior_versions():
    """A table with a code order is version 3; one without is version 2, byte for byte as before (so files
    that reference a version-2 table by hash still find it); both parse back to the same hash."""
    tokens = repetition_grids(10, (6, 8), 300, 0.8, 5, seed=4)
    order = np.random.default_rng(1).permutation(300)
    v3 = Prior.from_tokens([tokens[:5], tokens[5:]], 300, order=order)
    assert v3.version == 3 and Prior.from_bytes(v3.to_bytes()) == v3
    np.testing.assert_array_equal(Prior.from_bytes(v3.to_bytes()).order, order)
    np.testing.assert_array_equal(v3.tokens_by_rank[order], np.arange(300))
    assert v3.group_counts.shape == (ctx_model.group_layout(300).contexts, ctx_model.group_layout(300).groups)
    assert v3.group_counts.sum() > 0
    v2 = Prior(300, v3.mode_counts, v3.part_counts)
    assert v2.version == 2 and v2.to_bytes()[8:10] == b"\x02\x00"
    assert Prior.from_bytes(v2.to_bytes()) == v2 and Prior.from_bytes(v2.to_bytes()).version == 2
    assert v2.sha256 != v3.sha256
    # A version-2 table serves literal model 1 too (identity order, no group counts).
    header = make_header((6, 8), 300, coder_params=CtxParams(literal_model=1))
    np.testing.assert_array_equal(read_tokens(io.BytesIO(encode(header, tokens, prior=v2))), tokens)


def test_prior_order_must_be_a_permutation():
    tokens = repetition_grids(5, (4, 4), 50, 0.5, 5)
    with pytest.raises(UsageError, match="permutation"):
        Prior.from_tokens([tokens], 50, order=np.zeros(50, dtype=np.int64))
    with pytest.raises(UsageError, match="permutation"):
        Prior.from_tokens([tokens], 50, order=np.arange(49))


def test_path_io(tmp_path):
    tokens = repetition_grids(4, (3, 3), 9, 0.5, 5)
    path = tmp_path / "a.otok"
    with OtokWriter(path, make_header((3, 3), 9)) as w:
        w.write(tokens)
    np.testing.assert_array_equal(read_tokens(path), tokens)
    with OtokReader(str(path)) as r:
        assert r.header.model == "otok-test" and r.verify().steps == 4
