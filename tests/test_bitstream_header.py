"""Header fields, chunk layout constants and the step/frame timeline."""

from __future__ import annotations

import dataclasses

import pytest

from otok.bitstream import CorruptError, CtxParams, Header, LevelParams, UnsupportedError, UsageError
from otok.bitstream import container as ct
from otok.bitstream.timeline import frames_in_steps, is_segment_start, step_of_frame, step_start_frame

BASE = dict(model="otok-s", weights_sha256=bytes(range(32)), patch=8, temporal=4, gop=5, grid=(45, 80),
            width=640, height=360, fps=(30000, 1001), codebook_size=8192, coder="ctx")


def test_header_round_trip_every_field():
    h = Header(**BASE, coder_params=CtxParams(bytes([7]) * 32, 1000, 20000))
    back = Header.unpack(h.pack())
    assert back == h
    for field in dataclasses.fields(Header):
        assert getattr(back, field.name) == getattr(h, field.name), field.name
    assert (back.padded_width, back.padded_height, back.step_shape) == (640, 360, (45, 80))
    latent = Header(**{**BASE, "codebook_size": 0, "coder": "f16z"}, latent_channels=16)
    assert Header.unpack(latent.pack()) == latent and latent.step_shape == (16, 45, 80)
    assert latent.coder_params == LevelParams(3)


def test_header_byte_layout():
    payload = Header(**BASE).pack()
    assert payload[:32] == bytes(range(32))
    assert payload[32:36] == (8).to_bytes(2, "little") + (4).to_bytes(2, "little")
    assert payload[74] == 4 and payload[75] == len("otok-s") and payload[78:84] == b"otok-s"
    assert len(payload) == 78 + 6 + 48  # ctx parameters of the defaults (literal model 1): 48 bytes
    v11 = Header(**BASE, coder_params=CtxParams(literal_model=0)).pack()
    assert len(v11) == 78 + 6 + 44  # literal model 0: the 44 bytes of format 1.1


@pytest.mark.parametrize("change", [
    {"grid": (0, 80)}, {"grid": (4097, 80)}, {"width": 641}, {"fps": (30, 0)}, {"codebook_size": 1},
    {"codebook_size": (1 << 24) + 1}, {"weights_sha256": b"short"}, {"coder": "lzma"}, {"model": "x" * 256},
    {"coder": "f16z"}, {"patch": 0},
])
def test_header_rejects(change):
    with pytest.raises(UsageError):
        Header(**{**BASE, **change})


def test_literal_limit_below_the_alphabet_is_refused():
    """Count halving stops at all-ones tables; a smaller limit could never be met (the coder would hang)."""
    with pytest.raises(UsageError, match="below the literal alphabet size 8192"):
        Header(**BASE, coder_params=CtxParams(bytes(32), 1 << 16, 300))
    good = Header(**BASE, coder_params=CtxParams(bytes(32), 1 << 16, 8192, literal_model=0)).pack()
    forged = good[:-8] + (300).to_bytes(4, "little") + good[-4:]  # literal_limit precedes literal_increment
    with pytest.raises(CorruptError, match="literal_limit"):
        Header.unpack(forged)


@pytest.mark.parametrize("increment", [0, (1 << 16) + 1])
def test_literal_increment_out_of_range_is_refused(increment):
    with pytest.raises(UsageError, match="literal_increment"):
        Header(**BASE, coder_params=CtxParams(bytes(32), 1 << 16, 1 << 24, increment))
    good = Header(**BASE, coder_params=CtxParams(bytes(32), 1 << 16, 1 << 24, 8, 0)).pack()
    with pytest.raises(CorruptError, match="literal_increment"):
        Header.unpack(good[:-4] + increment.to_bytes(4, "little"))


def test_literal_model_parameter():
    """literal_model 1 packs to 48 bytes and reads back; an unknown model is refused, written or read."""
    header = Header(**BASE, coder_params=CtxParams(bytes(32), 1 << 16, 1 << 24, 4, 1))
    assert len(header.coder_params.pack()) == 48 and Header.unpack(header.pack()) == header
    v11 = Header(**BASE, coder_params=CtxParams(literal_model=0))
    assert len(v11.coder_params.pack()) == 44 and Header.unpack(v11.pack()) == v11
    with pytest.raises(UnsupportedError, match="literal_model 2.*newer otok"):
        Header(**BASE, coder_params=CtxParams(bytes(32), 1 << 16, 1 << 24, 4, 2))
    with pytest.raises(UnsupportedError, match="literal_model 2"):
        Header.unpack(header.pack()[:-4] + (2).to_bytes(4, "little"))


def test_mode_limit_below_a_row_is_refused():
    """A mode row of 4 counts cannot halve below 4: a smaller mode_limit is refused."""
    with pytest.raises(UsageError, match="count limits"):
        Header(**BASE, coder_params=CtxParams(bytes(32), 3, 1 << 24))
    Header(**BASE, coder_params=CtxParams(bytes(32), 4, 1 << 24))


def test_header_unpack_rejects_lengths():
    payload = Header(**BASE).pack()
    for bad in (payload[:50], payload + b"x", payload[:-1]):
        with pytest.raises(CorruptError):
            Header.unpack(bad)


def test_chunk_type_classes():
    assert all(ct.is_critical(t) for t in (ct.HEAD, ct.PRIO, ct.STEP, ct.TAIL))
    assert not ct.is_critical(ct.INDX) and not ct.is_critical(b"meta")
    assert len(ct.PREAMBLE) == 12 and ct.TAIL_SIZE == 36


def test_timeline():
    # gop 5: a segment covers 1 + 4 * 4 = 17 frames
    assert [step_start_frame(s, 5, 4) for s in range(7)] == [0, 1, 5, 9, 13, 17, 18]
    assert [frames_in_steps(s, 5, 4) for s in range(7)] == [0, 1, 5, 9, 13, 17, 18]
    assert [is_segment_start(s, 5) for s in range(6)] == [True, False, False, False, False, True]
    for gop in (0, 1, 2, 5):
        for frame in range(60):
            s = step_of_frame(frame, gop, 4)
            assert step_start_frame(s, gop, 4) <= frame < step_start_frame(s + 1, gop, 4)
    assert frames_in_steps(3, 0, 4) == 9 and step_of_frame(9, 0, 4) == 3
