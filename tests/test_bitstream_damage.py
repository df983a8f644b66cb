"""Damaged, truncated, forged and unknown input: an OtokError or a verified prefix, nothing else."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitstream_helpers import Pipe
from otok.bitstream import (
    CorruptError,
    CtxParams,
    Header,
    LimitError,
    NotOtokError,
    OtokError,
    OtokReader,
    OtokWarning,
    OtokWriter,
    Prior,
    TruncatedError,
    UnsupportedError,
    UsageError,
    read_tokens,
)
from otok.bitstream import container as ct
from otok.bitstream.coders.zstd import compress as zstd_compress
from otok.bitstream.coders.zstd import decompress as zstd_decompress
from otok.bitstream.synthetic import repetition_grids
from otok.bitstream.timeline import frames_in_steps

SHA = bytes(32)
TOKENS = repetition_grids(7, (3, 4), 300, 0.6, 3, seed=7)


def _file(coder: str, tokens: np.ndarray = TOKENS, ancillary: bool = False) -> bytes:
    """coder: a coder's name, or ctx1 for ctx with literal model 1 (format 1.2)."""
    params = CtxParams(literal_model=1) if coder == "ctx1" else None
    header = Header("otok-test", SHA, 8, 4, 3, tokens.shape[1:], 32, 24, (30, 1), codebook_size=300,
                    coder=coder.rstrip("1"), coder_params=params)
    buf = io.BytesIO()
    with OtokWriter(buf, header, steps_per_chunk=2) as w:
        w.write(tokens[:3])
        if ancillary:
            w.write_ancillary(b"meta", b"recorded by a test")
        w.write(tokens[3:])
    return buf.getvalue()


FILES = {c: _file(c) for c in ("raw", "zstd", "ctx", "ctx1")}


def read_prefix(data: bytes, pipe: bool = False) -> tuple[list[np.ndarray] | None, str | None]:
    """(steps, damage message), or (None, error message) when the reader raised an OtokError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OtokWarning)
            reader = OtokReader(Pipe(data) if pipe else io.BytesIO(data))
            steps = list(reader)
        if not pipe:  # the coded bytes of what the reader lists lie inside the file, or it is damage
            try:
                assert 0 <= reader.coded_bytes <= len(data)
            except OtokError:
                pass
        return steps, reader.damage
    except OtokError as e:
        return None, str(e)


def assert_prefix(steps: list[np.ndarray] | None, tokens: np.ndarray = TOKENS) -> None:
    if steps is not None:
        assert len(steps) <= len(tokens)
        for got, want in zip(steps, tokens):
            np.testing.assert_array_equal(got, want)


def _intact_steps(data: bytes, cut: int) -> int:
    """Steps in the chunks that end at or before byte `cut` (from the full file's index)."""
    reader = OtokReader(io.BytesIO(data))
    ends = [ct.ChunkReader(io.BytesIO(data[e.offset:]), 0, None).next().end + e.offset for e in reader.index]
    return sum(e.n_steps for e, end in zip(reader.index, ends) if end <= cut)


@pytest.mark.parametrize("coder", sorted(FILES))
@pytest.mark.parametrize("pipe", [False, True])
def test_truncation_at_every_byte(coder, pipe):
    data = FILES[coder]
    for cut in range(len(data)):
        steps, message = read_prefix(data[:cut], pipe)
        assert message, f"cut at {cut}: no message"
        assert_prefix(steps)
        if steps is not None:
            assert len(steps) == _intact_steps(data, cut), f"cut at {cut}: an intact chunk was lost"
            assert "truncated" in message or "without a trailer" in message
    steps, message = read_prefix(data, pipe)
    assert message is None and len(steps) == len(TOKENS)


def test_truncated_message_says_where():
    data = FILES["ctx"]
    cut = len(data) - 60
    with pytest.warns(OtokWarning, match=rf"file truncated at byte {cut}, inside chunk .* starts at byte \d+"):
        steps = list(OtokReader(io.BytesIO(data[:cut])))
    assert steps
    with pytest.raises(TruncatedError, match="stopped after step"):
        read_tokens(io.BytesIO(data[:cut]))
    with pytest.warns(OtokWarning):
        prefix = read_tokens(io.BytesIO(data[:cut]), allow_truncated=True)
    assert_prefix(list(prefix))
    reader = OtokReader(io.BytesIO(data[:cut]))
    assert not reader.complete and reader.steps == len(prefix)
    assert reader.frames == frames_in_steps(reader.steps, 3, 4)  # no trailer: the frames its steps cover
    with pytest.raises(TruncatedError):
        reader.verify()


@pytest.mark.parametrize("coder", sorted(FILES))
def test_random_bit_flips(coder):
    data = FILES[coder]
    rng = np.random.default_rng(1)
    for _ in range(300):
        damaged = bytearray(data)
        for pos in rng.integers(0, len(data) * 8, rng.integers(1, 4)):
            damaged[pos // 8] ^= 1 << (pos % 8)
        steps, message = read_prefix(bytes(damaged))
        assert_prefix(steps)
        if damaged[:10] + damaged[12:] == data[:10] + data[12:]:
            continue  # only the minor version changed: readable by design
        with pytest.raises(OtokError):
            OtokReader(io.BytesIO(bytes(damaged))).verify()


def test_crc_detects_damage_in_a_step_chunk():
    data = bytearray(FILES["zstd"])
    index = OtokReader(io.BytesIO(bytes(data))).index
    data[index[1].offset + 20] ^= 0x10
    steps, message = read_prefix(bytes(data))
    assert len(steps) == index[1].first_step and "CRC-32 mismatch" in message
    with pytest.raises(CorruptError, match="CRC-32"):
        OtokReader(io.BytesIO(bytes(data))).verify()


def _rechunk(data: bytes, offset: int, ctype: bytes | None = None, payload: bytes | None = None) -> bytes:
    """Replace the chunk at `offset` by one with a valid CRC (new type and/or payload)."""
    chunk = ct.ChunkReader(io.BytesIO(data[offset:]), 0, None).next()
    new = ct.chunk_bytes(ctype or chunk.ctype, chunk.payload if payload is None else payload)
    return data[:offset] + new + data[offset + (chunk.end - chunk.offset):]


def test_unknown_chunks():
    data = _file("ctx", ancillary=True)
    np.testing.assert_array_equal(read_tokens(io.BytesIO(data)), TOKENS)  # ancillary 'meta' skipped
    assert OtokReader(io.BytesIO(data)).verify().chunks == 5 + 1 + 2  # steps (flushed at 'meta'), meta, index, trailer
    meta = data.index(b"meta") - 4
    with pytest.raises(UnsupportedError, match="unknown critical chunk"):
        OtokReader(io.BytesIO(_rechunk(data, meta, b"META"))).verify()
    steps, message = read_prefix(_rechunk(data, meta, b"META"))
    assert len(steps) == 3 and "newer otok" in message


def test_unknown_coder_and_version():
    data = FILES["raw"]
    head = ct.ChunkReader(io.BytesIO(data[12:]), 0, None).next().payload
    forged = _rechunk(data, 12, payload=head[:74] + b"\x09" + head[75:])
    with pytest.raises(UnsupportedError, match="unknown coder id 9"):
        OtokReader(io.BytesIO(forged))
    with pytest.raises(UnsupportedError, match="version 2.0"):
        OtokReader(io.BytesIO(data[:8] + struct.pack("<HH", 2, 0) + data[12:]))
    np.testing.assert_array_equal(read_tokens(io.BytesIO(data[:8] + struct.pack("<HH", 1, 7) + data[12:])), TOKENS)
    with pytest.raises(NotOtokError):
        OtokReader(io.BytesIO(b"RIFF" + data[4:]))


def test_retired_ctx_coder_id_is_refused():
    """Coder id 2 named the pre-release ctx coder: refused with a message that says what to do."""
    data = FILES["ctx"]
    head = ct.ChunkReader(io.BytesIO(data[12:]), 0, None).next().payload
    assert head[74] == 4
    forged = _rechunk(data, 12, payload=head[:74] + b"\x02" + head[75:])
    with pytest.raises(UnsupportedError, match="coder id 2 was the pre-release ctx coder; re-encode the source"):
        OtokReader(io.BytesIO(forged))
    with pytest.raises(UnsupportedError, match="pre-release ctx coder"):
        read_tokens(io.BytesIO(forged))


def test_version_1_prior_is_refused():
    """A prior table of version 1 (the flag counts of coder id 2) is refused, as a file and embedded."""
    k = 300
    tables = np.ones(26 * 2 + k, dtype="<u4").tobytes()  # version 1: flag counts [26][2], then literals
    body = struct.pack("<8sHHII", b"OTKPRIOR", 1, 26, k, len(tables)) + zstd_compress(tables, 19)
    old = body + struct.pack("<I", zlib.crc32(body))
    with pytest.raises(UnsupportedError, match="version 1"):
        Prior.from_bytes(old)
    new = Prior.from_tokens([TOKENS], k)
    assert Prior.from_bytes(new.to_bytes()) == new
    header = Header("otok-test", SHA, 8, 4, 3, TOKENS.shape[1:], 32, 24, (30, 1), codebook_size=k, coder="ctx")
    buf = io.BytesIO()
    with OtokWriter(buf, header, prior=new) as w:
        w.write(TOKENS)
    data = buf.getvalue()
    prio = data.index(b"PRIO") - 4
    with pytest.raises(UnsupportedError, match="version 1"):
        OtokReader(io.BytesIO(_rechunk(data, prio, payload=old)))


def _forged_prior(k: int, tables: np.ndarray, version: int = 3) -> bytes:
    raw = tables.astype("<u4").tobytes()
    body = struct.pack("<8sHHII", b"OTKPRIOR", version, 250, k, len(raw)) + zstd_compress(raw, 19)
    return body + struct.pack("<I", zlib.crc32(body))


def test_version_3_prior_with_a_bad_order_or_size_is_refused():
    """A code order that is not a permutation, or tables of the wrong size, are damage, not a crash."""
    k = 300
    good = Prior.from_tokens([TOKENS], k, order=np.random.default_rng(2).permutation(k))
    raw = np.frombuffer(zstd_decompress(good.to_bytes()[20:-4], len(good.tables_bytes())), dtype="<u4").copy()
    assert Prior.from_bytes(_forged_prior(k, raw)) == good
    order_at = 1000 + sum(len(t) for t in good.part_counts)
    duplicate = raw.copy()
    duplicate[order_at] = duplicate[order_at + 1]
    with pytest.raises(CorruptError, match="permutation"):
        Prior.from_bytes(_forged_prior(k, duplicate))
    with pytest.raises(CorruptError, match="size"):
        Prior.from_bytes(_forged_prior(k, raw[:-1]))
    with pytest.raises(CorruptError, match="size"):  # version-3 tables under a version-2 head
        Prior.from_bytes(_forged_prior(k, raw, version=2))


@pytest.mark.parametrize("literal_model", [0, 1])
def test_prior_for_another_codebook_is_refused(literal_model):
    """A header that names (and embeds) a prior table of another codebook size is damage, not a crash or
    tokens outside the codebook."""
    k = 300
    tokens = TOKENS.copy()
    tokens[0, 0, 0] = k - 1
    other = Prior.from_tokens([tokens], k + 1, order=np.random.default_rng(3).permutation(k + 1))
    header = Header("otok-test", SHA, 8, 4, 3, tokens.shape[1:], 32, 24, (30, 1), codebook_size=k, coder="ctx",
                    coder_params=CtxParams(other.sha256, literal_model=literal_model))
    with pytest.raises(UsageError, match="codebook of 301"):
        OtokWriter(io.BytesIO(), header, prior=other)
    right = Prior.from_tokens([tokens], k, order=np.random.default_rng(3).permutation(k))
    buf = io.BytesIO()
    with OtokWriter(buf, header.with_params(CtxParams(right.sha256, literal_model=literal_model)), prior=right) as w:
        w.write(tokens)
    data = buf.getvalue()
    head_at, prio_at = 12, data.index(b"PRIO") - 4
    forged_head = bytearray(ct.ChunkReader(io.BytesIO(data[head_at:]), 0, None).next().payload)
    params_at = len(forged_head) - (48 if literal_model else 44)  # the coder parameters end the header
    forged_head[params_at:params_at + 32] = other.sha256
    forged = _rechunk(_rechunk(data, prio_at, payload=other.to_bytes()), head_at, payload=bytes(forged_head))
    for offered in (None, [other]):
        with pytest.raises(CorruptError, match="codebook of 301"):
            read_tokens(io.BytesIO(forged), prior=offered)


@pytest.mark.parametrize("field,offset,value", [
    ("grid_h", 46, 65535), ("codebook", 40, 1 << 30), ("patch", 32, 0), ("fps_den", 70, 0), ("width", 50, 10**6),
])
def test_forged_header_fields_refused(field, offset, value):
    data = FILES["raw"]
    head = bytearray(ct.ChunkReader(io.BytesIO(data[12:]), 0, None).next().payload)
    size = {32: 2, 46: 2}.get(offset, 4)
    head[offset:offset + size] = value.to_bytes(size, "little")
    with pytest.raises(CorruptError, match="invalid header|padded size"):
        OtokReader(io.BytesIO(_rechunk(data, 12, payload=bytes(head))))


def test_forged_lengths_do_not_allocate():
    data = FILES["raw"]
    first = OtokReader(io.BytesIO(data)).index[0].offset
    huge = bytearray(data)
    huge[first:first + 4] = struct.pack("<I", 0xFFFFFFF0)
    steps, message = read_prefix(bytes(huge))
    assert steps == [] and "over the cap" in message
    big = bytearray(data)
    big[first:first + 4] = struct.pack("<I", 1 << 29)  # under the cap, over the remaining bytes
    for pipe in (False, True):
        steps, message = read_prefix(bytes(big), pipe)
        assert steps == [] and "truncated" in message
    # a STEP chunk that claims 4096 steps of a tiny payload, with a valid CRC
    chunk = ct.ChunkReader(io.BytesIO(data[first:]), 0, None).next()
    forged = _rechunk(data, first, payload=struct.pack("<IHBB", 0, 4096, 1, 0) + chunk.payload[8:])
    steps, message = read_prefix(forged)
    assert steps == [] and message


def test_trailer_and_index_are_checked():
    data = FILES["zstd"]
    tail = data[-ct.TAIL_SIZE:]
    frames, steps, index_offset = ct.TAIL_PAYLOAD.unpack(tail[8:-4])
    for forged_tail in [(frames, steps + 1, index_offset), (10**9, steps, index_offset), (frames, steps, 3)]:
        forged = data[:-ct.TAIL_SIZE] + ct.chunk_bytes(ct.TAIL, ct.TAIL_PAYLOAD.pack(*forged_tail))
        reader = OtokReader(io.BytesIO(forged))
        assert not reader.complete  # inconsistent trailer: ignored for reading...
        np.testing.assert_array_equal(np.stack(list(reader)), TOKENS)
        with pytest.raises(CorruptError):
            reader.verify()  # ...and refused by verify()
    with pytest.raises(CorruptError, match="follows the trailer"):
        OtokReader(io.BytesIO(data + ct.chunk_bytes(b"junk", b""))).verify()


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(data):
    for candidate in (data, ct.PREAMBLE + data):
        steps, _ = read_prefix(candidate)
        try:
            OtokReader(io.BytesIO(candidate)).verify()
        except OtokError:
            pass


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(coder=st.sampled_from(sorted(FILES)), edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                             min_size=1, max_size=6), cut=st.integers(0, 10**6))
def test_fuzz_mutated_files(coder, edits, cut):
    data = bytearray(FILES[coder])
    for pos, byte in edits:
        data[pos % len(data)] = byte
    data = bytes(data[: max(cut % (len(data) + 50), 0)])
    steps, _ = read_prefix(data)
    assert_prefix(steps)
    try:
        OtokReader(io.BytesIO(data)).verify()
    except OtokError:
        pass


def test_crc_covers_type_and_payload():
    chunk = ct.chunk_bytes(b"STEP", b"abc")
    assert chunk[:8] == struct.pack("<I", 3) + b"STEP"
    assert struct.unpack("<I", chunk[-4:])[0] == zlib.crc32(b"STEPabc")
    with pytest.raises(LimitError):
        ct.ChunkReader(io.BytesIO(struct.pack("<I", 1 << 31) + b"STEP"), 0, None).next()


def test_ancillary_chunks_before_the_steps_are_kept_and_others_skipped():
    """Ancillary payloads between HEAD and the first STEP are kept (the first of each type, up to a size
    cap); one among the steps, or an oversized one, is skipped; none of them changes the tokens."""
    from otok.bitstream.reader import KEPT_ANCILLARY_BYTES

    header = Header("otok-test", SHA, 8, 4, 3, TOKENS.shape[1:], 32, 24, (30, 1), codebook_size=300, coder="ctx")
    buf = io.BytesIO()
    with OtokWriter(buf, header, steps_per_chunk=2) as w:
        w.write_ancillary(ct.ENCD, b'{"rdo":0.01}')
        w.write_ancillary(ct.ENCD, b'{"rdo":9}')  # a second of the same type: the first wins
        w.write_ancillary(b"huge", bytes(KEPT_ANCILLARY_BYTES + 1))
        w.write(TOKENS[:3])
        w.write_ancillary(b"late", b"among the steps")
        w.write(TOKENS[3:])
    reader = OtokReader(io.BytesIO(buf.getvalue()))
    assert reader.ancillary == {ct.ENCD: b'{"rdo":0.01}'}
    np.testing.assert_array_equal(np.stack(list(reader)), TOKENS)
