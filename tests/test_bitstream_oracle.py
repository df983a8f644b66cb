"""The `ctx` coder's numba kernels against constriction, byte for byte: the ANS arithmetic against
constriction's `AnsCoder` and `Categorical(perfect=False)`, and whole chunks against the coder as it was
before the kernels (tests/bitstream_oracle.py, constriction driven from numpy)."""

from __future__ import annotations

import constriction
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

from bitstream_oracle import OracleCtxCoder, step_modes
from otok.bitstream import CtxParams, Header, Prior
from otok.bitstream.coders import ctx_kernels as kn
from otok.bitstream.coders import ctx_model
from otok.bitstream.coders.ctx_kernels import FIRST_ROUND
from otok.bitstream.coders.ctx import CtxCoder
from otok.bitstream.synthetic import repetition_grids
from test_bitstream_roundtrip import mixed_mode_grids

FAMILY = constriction.stream.model.Categorical(perfect=False)


def _models(tables: np.ndarray, with_lut: bool) -> tuple[np.ndarray, np.ndarray, int]:
    rows, n = tables.shape
    shift = kn.lut_shift(n)
    cdf = np.empty((rows, n + 1), dtype=np.int64)
    lut = np.empty((rows, 1 << (24 - shift) if shift else 1), dtype=np.int32)
    for r in range(rows):
        kn.build(tables, r, n, tables[r].sum(), cdf, lut, shift, with_lut)
    return cdf, lut, shift


def _run(enc: bool, values: np.ndarray, rows: np.ndarray, tables: np.ndarray, words: np.ndarray) -> tuple:
    """Code values (int64, decoded into when not enc) one symbol per kernel call, each with its row."""
    cdf, lut, shift = _models(tables, not enc)
    dec = kn.Decoder(words)
    buf, io = np.empty(len(values) + 1, dtype=np.uint64), dec.io
    hist = np.zeros(tables.shape[1], dtype=np.int64)
    for k, r in enumerate(rows.tolist()):
        kn.code_run(enc, values, None, k, 1, 0, -1, cdf, lut, r, tables.shape[1], shift, hist, 1,
                    buf, io, dec.state, dec.words)
    return buf, io, dec


def _kernel_encode(symbols: np.ndarray, rows: np.ndarray, tables: np.ndarray) -> np.ndarray:
    buf, io, _ = _run(True, symbols.astype(np.int64), rows, tables, np.zeros(0, dtype=np.uint32))
    out = np.empty(len(symbols) + 2, dtype=np.uint32)
    return out[:kn.encode_reverse(buf, io[0], out)]


def _kernel_decode(words: np.ndarray, rows: np.ndarray, tables: np.ndarray) -> tuple[list[int], bool]:
    values = np.zeros(len(rows), dtype=np.int64)
    _, _, dec = _run(False, values, rows, tables, words)
    return values.tolist(), dec.is_empty()


@settings(max_examples=150, deadline=None)
@given(
    alphabet=st.sampled_from([2, 3, 4, 5, 64, 128, 1000, 8192, 16384]),
    n_rows=st.integers(1, 4),
    scale=st.sampled_from([2, 50, 1 << 12, 1 << 24, 1 << 30]),
    skew=st.booleans(),
    length=st.integers(0, 600),
    seed=st.integers(0, 2**32 - 1),
)
def test_ans_kernels_equal_constriction(alphabet, n_rows, scale, skew, length, seed):
    """Quantization and the ANS stack: the words of constriction's encode_reverse with a model per
    symbol, both ways decodable, for alphabets 2..2**14, flat and skewed integer counts."""
    rng = np.random.default_rng(seed)
    tables = rng.integers(1, scale, (n_rows, alphabet), endpoint=True)
    if skew:
        tables[:, rng.integers(0, alphabet)] = 1 << 30
    rows = rng.integers(0, n_rows, length)
    p = tables[rows] / tables[rows].sum(axis=1, keepdims=True)
    symbols = (p.cumsum(axis=1) < rng.random((length, 1))).sum(axis=1).clip(0, alphabet - 1).astype(np.int32)
    coder = constriction.stream.stack.AnsCoder()
    if length:
        coder.encode_reverse(symbols, FAMILY, tables[rows].astype(np.float64))
    reference = coder.get_compressed()
    np.testing.assert_array_equal(_kernel_encode(symbols, rows, tables), reference)
    decoded, empty = _kernel_decode(reference.astype(np.uint32), rows, tables)
    assert decoded == symbols.tolist() and empty


def _chunks(steps: int, gop: int, per_chunk: int) -> list[tuple[int, int]]:
    """[(first, end), ...] as the writer cuts a stream: at most per_chunk steps, never across a segment."""
    out, s = [], 0
    while s < steps:
        e = min(steps, s + per_chunk, (s // gop + 1) * gop if gop else steps)
        out.append((s, e))
        s = e
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    log_k=st.integers(1, 18),
    k_offset=st.integers(0, 3),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    steps=st.integers(1, 9),
    gop=st.sampled_from([0, 1, 3, 5]),
    source=st.sampled_from(["mixed", "repeat"]),
    weights=st.tuples(*[st.integers(0, 4)] * 3, st.integers(1, 4)),
    repeat=st.floats(0.0, 1.0),
    per_chunk=st.sampled_from([1, 2, 5]),
    with_prior=st.booleans(),
    mode_limit=st.sampled_from([4, 40, 1 << 16]),
    literal_limit=st.sampled_from([1 << 14, 1 << 20, 1 << 24]),
    increment=st.sampled_from([1, 4, 1 << 16]),
    literal_model=st.sampled_from([0, 1]),
    seed=st.integers(0, 2**16),
)
def test_kernels_write_the_oracles_bytes(log_k, k_offset, h, w, steps, gop, source, weights, repeat, per_chunk,
                                         with_prior, mode_limit, literal_limit, increment, literal_model, seed):
    """Random streams (K 2..2**18, every repetition level and mode mix, with and without a prior with a
    random code order, any chunking, halving count rows): the kernels write the oracle's bytes, chunk by
    chunk, and each side decodes them."""
    k = max(2, (1 << log_k) - k_offset)
    if source == "mixed":
        tokens = mixed_mode_grids(steps, (h, w), k, weights, gop, seed)
    else:
        tokens = repetition_grids(steps, (h, w), k, repeat, gop, seed)
    prior = None
    if with_prior:
        sample = mixed_mode_grids(4, (h, w), k, weights, 0, seed + 1)
        prior = Prior.from_tokens([sample], k, order=np.random.default_rng(seed).permutation(k))
    literal_limit = max(literal_limit, 1 << 14)  # at least the largest literal alphabet
    params = CtxParams(prior.sha256 if prior else bytes(32), mode_limit, literal_limit, increment, literal_model)
    header = Header("otok-test", bytes(32), 8, 4, gop, (h, w), 8 * w, 8 * h, (30, 1), codebook_size=k,
                    coder="ctx", coder_params=params)
    ours, oracle = CtxCoder(header, prior), OracleCtxCoder(header, prior)
    our_reader, oracle_reader = CtxCoder(header, prior), OracleCtxCoder(header, prior)
    for first, end in _chunks(steps, gop, per_chunk):
        data = ours.encode(tokens[first:end], first)
        assert data == oracle.encode(tokens[first:end], first)
        np.testing.assert_array_equal(our_reader.decode(data, first, end - first), tokens[first:end])
        np.testing.assert_array_equal(oracle_reader.decode(data, first, end - first), tokens[first:end])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), st.integers(1, 4), st.booleans(), st.integers(0, 2**31))
def test_mode_kernel_equals_the_oracles_modes(n, h, w, distinct, with_ref, seed):
    """The coder's mode loop and the oracle's whole-array modes agree (few distinct tokens: every mode
    and every tie between T, U and L occurs)."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(0, distinct, (n, h, w))
    ref = rng.integers(0, distinct, (h, w)) if with_ref else None
    np.testing.assert_array_equal(kn.step_modes(steps, ref), step_modes(steps, ref))


@pytest.mark.parametrize("grid, repeat, big", [((45, 80), 0.6, False), ((64, 96), 0.2, True)])
def test_large_grid_chunks_equal_the_oracle(grid, repeat, big):
    """Grids of 3,600 and 6,144 tokens with a codebook of 8192, both literal models, segment starts and
    later steps: the same bytes (literal model 1's rounds up to thousands of literals long, pieces coded
    from counts and block sums and, from kernels.BIG_PIECE literals, from whole models; count rows far from the
    limit and at it), and they decode."""
    tokens = repetition_grids(7, grid, 8192, repeat, 5, seed=3)
    literals = int((kn.step_modes(tokens[1:2], tokens[0]) == 3).sum())  # in step 1
    assert (literals > 2 * kn.BIG_PIECE + FIRST_ROUND) == big  # rounds 16, 16, 32, ...: one of BIG_PIECE
    for model in (0, 1):
        for limit in (1 << 14, 1 << 24):
            params = CtxParams(bytes(32), 1 << 16, limit, 4, model)
            header = Header("otok-test", bytes(32), 8, 4, 5, grid, 8 * grid[1], 8 * grid[0], (30, 1),
                            codebook_size=8192, coder="ctx", coder_params=params)
            ours, oracle, reader = CtxCoder(header), OracleCtxCoder(header), CtxCoder(header)
            for first, end in [(0, 5), (5, 7)]:
                data = ours.encode(tokens[first:end], first)
                assert data == oracle.encode(tokens[first:end], first)
                np.testing.assert_array_equal(reader.decode(data, first, end - first), tokens[first:end])


@pytest.mark.parametrize("k", [100, 2**16 + 5])
def test_long_key_step_rows_and_uneven_layouts_equal_the_oracle(k):
    """A grid of 3 rows of 1,100: a segment's first step codes each row as one piece, longer than both whole-model
    thresholds (kernels.BIG_PIECE_ENC, kernels.BIG_PIECE); codebooks whose group count is no multiple of 8 (K = 100:
    50 groups, lo parts of 2; K = 2**16 + 5: 33 groups, lo parts of 32 and 64): the same bytes, and they decode."""
    grid = (3, 1100)
    assert grid[1] > max(kn.BIG_PIECE, kn.BIG_PIECE_ENC)
    tokens = repetition_grids(4, grid, k, 0.3, 3, seed=5)
    for limit in (1 << 14, 1 << 24):
        params = CtxParams(bytes(32), 1 << 16, max(limit, max(ctx_model.part_layout(k).alphabets)), 4, 1)
        header = Header("otok-test", bytes(32), 8, 4, 3, grid, 8 * grid[1], 8 * grid[0], (30, 1),
                        codebook_size=k, coder="ctx", coder_params=params)
        ours, oracle, reader = CtxCoder(header), OracleCtxCoder(header), CtxCoder(header)
        for first, end in [(0, 2), (2, 3), (3, 4)]:
            data = ours.encode(tokens[first:end], first)
            assert data == oracle.encode(tokens[first:end], first)
            np.testing.assert_array_equal(reader.decode(data, first, end - first), tokens[first:end])


@pytest.mark.parametrize("k, increment", [(13, 1 << 16), (1000, 4), (2**16 + 5, 1 << 16)])
def test_block_sums_follow_the_counts(k, increment):
    """After every step, in the encoder and in the decoder: each row's block sums are the sums of its counts
    8 by 8 (a lo part only up to its own width), also where rows are halved (an increment far above the
    limit halves at every piece); in the decoder, each row's scale and block starts (the counts below each
    block's first symbol and that symbol's left edge) are those of its counts."""
    grid, gop = (20, 30), 3
    tokens = repetition_grids(5, grid, k, 0.1, gop, seed=1)
    params = CtxParams(bytes(32), 1 << 16, max(1 << 14, max(ctx_model.part_layout(k).alphabets)), increment, 1)
    header = Header("otok-test", bytes(32), 8, 4, gop, grid, 8 * grid[1], 8 * grid[0], (30, 1),
                    codebook_size=k, coder="ctx", coder_params=params)
    enc, dec = CtxCoder(header), CtxCoder(header)

    def blocks_of(table, width, n_blocks):
        return np.stack([table[:, kn.BLOCK * b:min(width, kn.BLOCK * (b + 1))].sum(axis=1)
                         for b in range(n_blocks)], axis=1)

    def starts_of(table, width, scale):  # each block's first symbol: counts below it, its left edge
        cdf, _, _ = _models(table[:, :width], False)
        firsts = np.arange(0, width, kn.BLOCK)
        below = np.concatenate([np.zeros((len(table), 1), dtype=np.int64), table[:, :width].cumsum(axis=1)], axis=1)
        np.testing.assert_array_equal(scale, (kn.ONE - width) / table[:, :width].sum(axis=1))
        return below[:, firsts], cdf[:, firsts]

    for s in range(len(tokens)):
        dec.decode(enc.encode(tokens[s:s + 1], s), s, 1)
        for coder in (enc, dec):
            st, g = coder.state, coder.groups.groups
            np.testing.assert_array_equal(st.group_blocks, blocks_of(st.groups, g, st.group_blocks.shape[1]))
            parts = [(st.groups, g, st.group_scale, st.group_starts)]
            for j, width in enumerate(coder._lo_widths.tolist()):
                rows = slice(j * g, (j + 1) * g)
                np.testing.assert_array_equal(st.lo_blocks[rows],
                                              blocks_of(st.lo[rows], width, st.lo_blocks.shape[1]))
                parts.append((st.lo[rows], width, st.lo_scale[rows], st.lo_starts[rows]))
            for table, width, scale, starts in parts if coder is dec else ():  # (the encoder needs no starts)
                below, edges = starts_of(table, width, scale)
                np.testing.assert_array_equal(starts[:, 0, :below.shape[1]], below)
                np.testing.assert_array_equal(starts[:, 1, :edges.shape[1]], edges)


def test_a_read_only_package_caches_kernels_in_the_users_cache(monkeypatch, tmp_path):
    """Where the package folder is read-only and NUMBA_CACHE_DIR is unset, the kernels' cache goes to the
    user's cache folder (XDG_CACHE_HOME); a NUMBA_CACHE_DIR that can be written is left alone, one that
    cannot is replaced (issue 29 D.16: numba raised at import)."""
    package = kn.os.path.dirname(kn.__file__)
    writable = kn.os.access
    monkeypatch.setattr(kn.os, "access", lambda path, mode: path != package and writable(path, mode))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert kn._choose_cache_dir()
    assert kn.os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "otok" / "numba")
    assert (tmp_path / "otok" / "numba").is_dir()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert kn._choose_cache_dir()
    assert kn.os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "elsewhere")
    (tmp_path / "a-file").write_bytes(b"")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "a-file" / "numba"))  # cannot be made
    assert kn._choose_cache_dir()
    assert kn.os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "otok" / "numba")


@njit
def _push_errors(states_per_p: int, seed: int) -> int:
    """For every probability p of the 24-bit models: the bound on `kn.reciprocal` that makes the step
    exact (2**64 - 2**24 <= m * p <= 2**64), and the encoder's step `kn.push` on the largest state it meets
    (p * 2**40 - 1), the smallest ones and random ones, against the step by integer division."""
    np.random.seed(seed)
    errors = 0
    for pi in range(1, (1 << 24) + 1):
        p = np.uint64(pi)
        m = kn.reciprocal(p)
        high, low = kn._mulhi(m, p), m * p
        if not ((high == 0 and low >= np.uint64(-(1 << 24))) or (high == 1 and low == 0)):
            errors += 1
        top = p * np.uint64(1 << 40) - np.uint64(1)
        left = np.uint64(pi ^ 0x5A5A5A) % (np.uint64(1 << 24) - p + np.uint64(1))
        for j in range(states_per_p + 4):
            if j < 4:
                x = (top, np.uint64(0), p - np.uint64(1), p)[j]
            else:
                x = np.uint64(np.random.randint(0, 1 << 62)) % top
            if kn.push(x, p, left) != ((x // p) << np.uint64(24)) | (x % p + left):
                errors += 1
    return errors


def test_the_encoders_step_divides_exactly_for_every_probability():
    """The ANS encoder divides by a reciprocal (`kn.reciprocal`, the bound it needs proved in its
    docstring): checked for all 2**24 probabilities on the states it can meet."""
    assert _push_errors(4, 7) == 0
