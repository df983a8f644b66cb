"""Issue 20: inputs an attacker or a careless user gives (tiny frames, forged containers, clashing
outputs). Every test builds its own bad input."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import signal
import struct
import sys
import threading
import tracemalloc
import types
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec_helpers import tiny
from otok.codec import weights
from otok.bitstream import CorruptError, Header, OtokError, OtokReader, OtokWarning, OtokWriter, read_tokens
from otok.bitstream import container as ct
from otok.bitstream.timeline import frames_in_steps
from otok.codec import save
from otok.tools import limits
from otok.tools.cli import main
from otok.tools.video_io import VideoReader, VideoWriter


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return save(tiny(), tmp_path_factory.mktemp("model") / "tiny.safetensors")


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def write_frames(path: Path, width: int, height: int, frames: int, codec: str | None = "h264") -> Path:
    writer = VideoWriter(path, width, height, Fraction(25), codec=None if path.suffix == ".png" else codec)
    for t in range(frames):
        writer.write(np.full((height, width, 3), (20 + 30 * t) % 256, np.uint8))
    writer.close()
    return path


# ----- tiny frames: any size of at least one pixel round-trips -----------------------------------------
@pytest.mark.parametrize("width,height", [(1, 1), (2, 2), (7, 3), (16, 4), (1, 300)])
def test_tiny_frames_round_trip(tmp_path, capsys, model_path, width, height):
    for src, frames, back in ((tmp_path / "in.png", 1, tmp_path / "back.png"),
                              (tmp_path / "in.mkv", 6, tmp_path / "back.mkv")):
        write_frames(src, width, height, frames)
        coded = tmp_path / "c.otok"
        status, _, err = run(capsys, "encode", src, coded, "--model", model_path, "-q")
        assert status == 0, err
        status, _, err = run(capsys, "decode", coded, back, "--model", model_path, "-q")
        assert status == 0, err
        decoded = list(VideoReader(back))
        assert len(decoded) == frames and decoded[0].shape == (height, width, 3)


def test_max_side_of_one_pixel(tmp_path, capsys, model_path):
    src = write_frames(tmp_path / "in.mkv", 40, 24, 5)
    status, _, err = run(capsys, "encode", src, tmp_path / "c.otok", "--model", model_path, "--max-side", "1", "-q")
    assert status == 0, err
    status, _, err = run(capsys, "decode", tmp_path / "c.otok", tmp_path / "b.mkv", "--model", model_path, "-q")
    assert status == 0, err
    frames = list(VideoReader(tmp_path / "b.mkv"))
    assert len(frames) == 5 and frames[0].shape == (1, 1, 3)


# ----- a lost or forged trailer/index: the frame count is untrusted, never above what the file proves ----
def _tail_fields(data: bytes) -> tuple[int, int, int]:
    return ct.TAIL_PAYLOAD.unpack(data[-ct.TAIL_SIZE + 8:-4])


def _with_tail(data: bytes, *fields: int) -> bytes:
    return data[:-ct.TAIL_SIZE] + ct.chunk_bytes(ct.TAIL, ct.TAIL_PAYLOAD.pack(*fields))


def forged_tails(data: bytes) -> dict[str, bytes]:
    """The ways a file's end was found lost or forged: each keeps the steps intact."""
    frames, steps, index = _tail_fields(data)
    body, tail = data[:-ct.TAIL_SIZE], data[-ct.TAIL_SIZE:]
    index_chunk = data[index:-ct.TAIL_SIZE]
    return {
        "offset 0": _with_tail(data, frames, steps, 0),
        "offset at itself": _with_tail(data, frames, steps, len(data) - ct.TAIL_SIZE),
        "offset past the end": _with_tail(data, frames, steps, 1 << 40),
        "steps 2^40": _with_tail(data, frames, 1 << 40, index),
        "steps 2^32-1": _with_tail(data, frames, (1 << 32) - 1, index),
        "frames 2^40": _with_tail(data, 1 << 40, steps, index),
        "index count 2^24": body[:index] + ct.chunk_bytes(ct.INDX, struct.pack("<I", 1 << 24) + index_chunk[12:-4]) + tail,
        "index count 2^32-1": body[:index] + ct.chunk_bytes(ct.INDX, b"\xff" * 4 + index_chunk[12:-4]) + tail,
        "duplicated index": body[:index] + index_chunk + index_chunk + tail,
        "duplicated trailer": data + tail,
        "no trailer": body,
        "no index and trailer": data[:index],
    }


@pytest.fixture(scope="module")
def ten_frames(tmp_path_factory, model_path) -> Path:
    """10 frames: steps of 1 + 4 + 4 + 1 (padded to 4) frames, so the steps cover 13."""
    folder = tmp_path_factory.mktemp("ten")
    src = write_frames(folder / "ten.mkv", 24, 16, 10)
    assert main(["encode", str(src), str(folder / "ten.otok"), "--model", str(model_path), "-q"]) == 0
    return folder / "ten.otok"


@pytest.mark.parametrize("case", list(forged_tails(b"\0" * 200)))
def test_forged_trailer_never_adds_frames(tmp_path, capsys, model_path, ten_frames, case):
    data = ten_frames.read_bytes()
    forged = tmp_path / "forged.otok"
    forged.write_bytes(forged_tails(data)[case])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OtokWarning)
        reader = OtokReader(forged)
    assert not reader.frames_trusted and reader.frames == 10  # the trailer's count where it fits, else `frms`
    status, _, err = run(capsys, "decode", forged, tmp_path / "back.mkv", "--model", model_path, "-q")
    assert status == 0, err
    assert err.startswith("otok: warning: ") and len(err.strip().splitlines()) == 1
    assert sum(1 for _ in VideoReader(tmp_path / "back.mkv")) == 10, err
    assert "untrusted" in err or "without a trailer" in err


@pytest.mark.parametrize("frames", [6, 7, 8, 9])
def test_a_padded_last_step_keeps_its_count_without_the_trailer(frames):
    """The writer repeats a padded stream's frame count in a `frms` chunk after the last step (and only then):
    with the index and trailer cut off, the reader still drops the padding."""
    header = Header("otok-test", bytes(32), 8, 4, 0, (2, 3), 20, 12, (25, 1), codebook_size=7, coder="raw")
    buf = io.BytesIO()
    writer = OtokWriter(buf, header)
    writer.write(np.zeros((3, 2, 3), np.int64))  # 3 steps: 1 + 4 + 4 = 9 frames
    writer.close(frames=frames)
    data = buf.getvalue()
    assert (ct.FRMS in data) == (frames < 9)
    _, _, index = _tail_fields(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OtokWarning)
        reader = OtokReader(io.BytesIO(data[:index]))
        assert not reader.frames_trusted and (reader.steps, reader.frames) == (3, frames)


def test_forged_index_that_holds_together_does_not_count(tmp_path, capsys, model_path, ten_frames):
    """An index and trailer that agree with each other and claim a fifth step, its entry pointing inside the
    last real chunk: the reader and `otok info` count what the chunks hold."""
    data = ten_frames.read_bytes()
    real = OtokReader(io.BytesIO(data)).index
    _, _, index = _tail_fields(data)
    claimed = [*real, ct.StepInfo(real[-1].first_step + real[-1].n_steps, 1, False, real[-1].offset + 8)]
    steps = sum(e.n_steps for e in claimed)
    header = OtokReader(io.BytesIO(data)).header
    frames = frames_in_steps(steps, header.gop, header.temporal)
    forged = tmp_path / "forged.otok"
    forged.write_bytes(data[:index] + ct.chunk_bytes(ct.INDX, ct.pack_index(claimed))
                       + ct.chunk_bytes(ct.TAIL, ct.TAIL_PAYLOAD.pack(frames, steps, index)))
    reader = OtokReader(forged)
    assert not reader.complete and reader.steps == 4 and reader.frames <= 13
    status, out, err = run(capsys, "info", forged)
    assert status == 0 and "4 steps" in out.replace(",", "") and f"{steps} steps" not in out, out + err


def test_second_header_is_damage_not_a_newer_format(tmp_path):
    data = FILES_SMALL()
    head = ct.ChunkReader(io.BytesIO(data[12:]), 12, None).next()
    twice = data[:head.end] + data[12:head.end] + data[head.end:]
    with pytest.raises(CorruptError, match="second HEAD"):
        OtokReader(io.BytesIO(twice))
    first_step = OtokReader(io.BytesIO(data)).index[1].offset
    late = data[:first_step] + data[12:head.end] + data[first_step:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        steps = list(OtokReader(io.BytesIO(late)))
    assert len(steps) == 1 and "second HEAD" in str(caught[0].message)
    with pytest.raises(CorruptError, match="second HEAD"):
        OtokReader(io.BytesIO(late)).verify()


def FILES_SMALL() -> bytes:  # noqa: N802 - a constant built on demand
    tokens = np.arange(5 * 2 * 3).reshape(5, 2, 3) % 7
    header = Header("otok-test", bytes(32), 8, 4, 0, (2, 3), 20, 12, (25, 1), codebook_size=7, coder="raw")
    buf = io.BytesIO()
    with OtokWriter(buf, header, steps_per_chunk=1) as w:
        w.write(tokens)
    return buf.getvalue()


# ----- no allocation from a count that the bytes present cannot back -----------------------------------
def test_forged_consistent_step_count_does_not_allocate():
    """One real step, then 2,700 STEP chunks whose fixed fields claim 4,096 steps each but hold no coder data,
    an index of them and a trailer that agree: 11 M steps of 16x16 (21 GiB of int64) claimed by ~60 KB."""
    header = Header("otok-test", bytes(32), 8, 4, 0, (16, 16), 128, 128, (25, 1), codebook_size=7, coder="raw")
    buf = io.BytesIO()
    with OtokWriter(buf, header) as w:
        w.write(np.zeros((1, 16, 16), np.int64))
    data = buf.getvalue()
    first = OtokReader(io.BytesIO(data)).index[0].offset
    _, _, index = _tail_fields(data)
    body, entries = data[:index], [ct.StepInfo(0, 1, True, first)]
    for i in range(2700):
        entries.append(ct.StepInfo(1 + 4096 * i, 4096, False, len(body)))
        body += ct.chunk_bytes(ct.STEP, entries[-1].pack())
    steps = 1 + 4096 * 2700
    forged = (body + ct.chunk_bytes(ct.INDX, ct.pack_index(entries))
              + ct.chunk_bytes(ct.TAIL, ct.TAIL_PAYLOAD.pack(1 + 4 * (steps - 1), steps, len(body))))
    reader = OtokReader(io.BytesIO(forged))
    assert reader.complete and reader.steps == steps and len(forged) < 100_000  # it does hold together
    tracemalloc.start()
    try:
        with pytest.raises(CorruptError, match="stopped after step 0"):
            read_tokens(io.BytesIO(forged))
        with pytest.warns(OtokWarning, match="stopped after step 0"):
            assert read_tokens(io.BytesIO(forged), allow_truncated=True).shape == (1, 16, 16)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * len(forged) + (1 << 25), peak


# ----- a header naming the model's weights with other geometry: refused before decoding ------------------
def forge_header(data: bytes, **fields) -> bytes:
    head = ct.ChunkReader(io.BytesIO(data[12:]), 12, None).next()
    header = dataclasses.replace(Header.unpack(head.payload), **fields)
    return data[:12] + ct.chunk_bytes(ct.HEAD, header.pack()) + data[head.end:]


FORGED_GEOMETRY = {
    "patch 16": ({"patch": 16, "grid": (1, 2)}, "patch 16"),
    "temporal patch 1": ({"temporal": 1}, "temporal patch 1"),
    "codebook 16384": ({"codebook_size": 16384}, "codebook size 16384"),
    "KL latents": ({"coder": "f16z", "coder_params": None, "codebook_size": 0, "latent_channels": 4},
                   "codebook size 0"),
    "grid 2x4": ({"grid": (2, 4)}, "token grid (2, 4)"),
    "grid 4096x4096": ({"grid": (4096, 4096), "width": 32768, "height": 32768}, "over otok's limit"),
    "fps 2^32-1": ({"fps": ((1 << 32) - 1, 1)}, "frame rate of 4294967295"),
    "fps 1/(2^32-1)": ({"fps": (1, (1 << 32) - 1)}, "frame rate of 1/4294967295"),
}


@pytest.mark.parametrize("case", list(FORGED_GEOMETRY))
def test_forged_geometry_is_one_line(tmp_path, capsys, model_path, ten_frames, case):
    fields, message = FORGED_GEOMETRY[case]
    forged = tmp_path / "forged.otok"
    forged.write_bytes(forge_header(ten_frames.read_bytes(), **fields))
    status, _, err = run(capsys, "decode", forged, tmp_path / "out.mkv", "--model", model_path, "-q")
    assert status == 2, err
    assert err.startswith("otok: error: ") and len(err.strip().splitlines()) == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forged.otok"]


@pytest.mark.parametrize("names", ["absolute path", "relative path", "escape codes"])
def test_a_file_never_names_a_path_to_open(tmp_path, capsys, model_path, ten_frames, monkeypatch, names):
    """The header's model name selects among the models this installation ships: the weights file it names
    (the very weights that made it, so loading them would decode) is not opened, and what it holds is
    escaped in the one line."""
    monkeypatch.chdir(model_path.parent)
    model = {"absolute path": str(model_path), "relative path": model_path.name,
             "escape codes": "\x1b[2J\a\r" + model_path.name}[names]
    forged = tmp_path / "forged.otok"
    forged.write_bytes(forge_header(ten_frames.read_bytes(), model=model))
    opened = []
    real_load_file = weights.load_file
    monkeypatch.setattr(weights, "load_file", lambda path, *a, **k: opened.append(path) or real_load_file(path, *a, **k))
    status, out, err = run(capsys, "decode", forged, tmp_path / "out.mkv", "-q")
    assert status == 2 and opened == [], (err, opened)
    assert "none is installed" in err and "pass the weights file that made it" in err
    assert len(err.strip().splitlines()) == 1 and not any(c in err for c in "\x1b\a\r"), repr(err)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["forged.otok"]
    assert run(capsys, "decode", forged, tmp_path / "out.mkv", "--model", model_path, "-q")[0] == 0  # when the user names it


def test_oversized_source_frames_name_the_limit(tmp_path, capsys, model_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_FRAME_PIXELS", 24 * 16 - 1)
    src = write_frames(tmp_path / "in.mkv", 24, 16, 2)
    status, _, err = run(capsys, "encode", src, tmp_path / "out.otok", "--model", model_path)
    assert status == 2 and "over otok's limit" in err and "--max-side 4096" in err, err


# ----- several inputs: no silent overwrite, a failure says what was written before it -------------------
def test_inputs_with_one_stem_are_refused_before_any_work(tmp_path, capsys, model_path):
    a, b = write_frames(tmp_path / "a.mkv", 24, 16, 2), write_frames(tmp_path / "a.mp4", 24, 16, 3)
    out = tmp_path / "out"
    status, _, err = run(capsys, "encode", a, b, out, "--model", model_path, "-q")
    assert status == 2 and "would both write" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() or not any(out.iterdir())
    assert run(capsys, "encode", a, tmp_path / "." / "a.mkv", out, "--model", model_path, "-q")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.otok"]  # one file named twice: encoded once


def test_a_later_input_that_fails_is_the_exit_status(tmp_path, capsys, model_path):
    good = write_frames(tmp_path / "good.mkv", 24, 16, 2)
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video\n" * 20)
    out = tmp_path / "out"
    status, _, err = run(capsys, "encode", good, bad, out, "--model", model_path, "-q")
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "bad.mp4" in err and "stopped at input 2 of 2, after writing" in err and "good.otok" in err
    assert sorted(p.name for p in out.iterdir()) == ["good.otok"]  # complete; nothing half-written


# ----- pipes and FIFOs: read once (the formats stream), or one line saying the input must be seekable ---
def feed_fifo(path: Path, data: bytes) -> threading.Thread:
    """A FIFO at `path` that a thread fills with `data` once a reader opens it."""
    os.mkfifo(path)

    def write() -> None:
        with open(path, "wb") as f:
            with contextlib.suppress(BrokenPipeError):
                f.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("progress", [False, True])
def test_encode_and_decode_through_fifos(tmp_path, capsys, model_path, monkeypatch, progress):
    monkeypatch.setattr("otok.tools.cli._show_progress", lambda args: progress)
    clip = write_frames(tmp_path / "clip.mkv", 24, 16, 6)
    fifo = tmp_path / "in.fifo"
    writer = feed_fifo(fifo, clip.read_bytes())
    status, _, err = run(capsys, "encode", fifo, tmp_path / "c.otok", "--model", model_path, "-q")
    writer.join(timeout=30)
    assert status == 0 and not writer.is_alive(), err
    fifo.unlink()
    writer = feed_fifo(fifo, (tmp_path / "c.otok").read_bytes())
    status, _, err = run(capsys, "decode", fifo, tmp_path / "back.mkv", "--model", model_path, "-q")
    writer.join(timeout=30)
    assert status == 0 and "otok:" not in err, err
    assert sum(1 for _ in VideoReader(tmp_path / "back.mkv")) == 6  # the padding of the last step dropped


def test_decode_through_a_fifo_with_a_forged_trailer(tmp_path, capsys, model_path, ten_frames):
    fifo = tmp_path / "in.fifo"
    writer = feed_fifo(fifo, forged_tails(ten_frames.read_bytes())["steps 2^40"])
    status, _, err = run(capsys, "decode", fifo, tmp_path / "back.mkv", "--model", model_path, "-q")
    writer.join(timeout=30)
    assert status == 0 and "untrusted" in err, err
    assert sum(1 for _ in VideoReader(tmp_path / "back.mkv")) == 10


def test_eval_of_a_fifo_says_it_must_be_seekable(tmp_path, capsys, model_path):
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)  # nobody writes: a command that opened it would hang
    status, _, err = run(capsys, "eval", fifo, "--model", model_path)
    assert status == 2 and "must be a seekable file" in err and len(err.strip().splitlines()) == 1, err


# ----- process and CLI behaviour ------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_remove_the_partial_output(tmp_path, capsys, model_path, monkeypatch, sig):
    src = write_frames(tmp_path / "in.mkv", 24, 16, 9)

    @contextlib.contextmanager
    def killing_progress(enabled, total, label):
        yield lambda n: os.kill(os.getpid(), sig)

    monkeypatch.setattr("otok.tools.cli._progress", killing_progress)
    status, _, err = run(capsys, "encode", src, tmp_path / "out.otok", "--model", model_path)
    assert status == 128 + sig.value and "terminated" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv"]
    assert signal.getsignal(sig) is not None and "cli" not in getattr(signal.getsignal(sig), "__module__", "")


def test_stale_partials_of_a_killed_run_are_removed(tmp_path, capsys, model_path):
    src = write_frames(tmp_path / "in.mkv", 24, 16, 2)
    stale, live = tmp_path / ".out.otok.999999999.partial", tmp_path / f".out.otok.{os.getppid()}.partial"
    stale.write_bytes(b"left by kill -9")
    live.write_bytes(b"another otok, still running")
    assert run(capsys, "encode", src, tmp_path / "out.otok", "--model", model_path, "-q")[0] == 0
    assert not stale.exists() and live.exists()


def test_outputs_that_are_devices_or_odd_names(tmp_path, capsys, model_path):
    src = write_frames(tmp_path / "in.mkv", 24, 16, 2)
    status, _, err = run(capsys, "encode", src, "/dev/null", "--model", model_path)
    assert status == 2 and "not a regular file" in err, err
    long_name = tmp_path / ("n" * 245 + ".otok")  # 250 bytes: legal, though the temporary name is longer
    assert run(capsys, "encode", src, long_name, "--model", model_path, "-q")[0] == 0 and long_name.is_file()
    status, _, err = run(capsys, "encode", src, tmp_path / ("n" * 300 + ".otok"), "--model", model_path)
    assert status == 2 and err.startswith("otok: error: ") and "File name too long" in err, err
    status, _, err = run(capsys, "decode", long_name, tmp_path / "noext", "--model", model_path)
    assert status == 2 and "no extension" in err and ".partial" not in err, err


@pytest.mark.parametrize("device", ["bogus", "cpu:5", "cuda:99"])
def test_bad_devices_blame_the_flag(tmp_path, capsys, model_path, device):
    src = write_frames(tmp_path / "in.mkv", 24, 16, 2)
    status, _, err = run(capsys, "encode", src, tmp_path / "o.otok", "--device", device)
    assert status == 2 and "--device" in err and "safetensors" not in err, err


def test_huge_rdo_is_quiet(tmp_path, capsys, model_path):
    src = write_frames(tmp_path / "in.mkv", 24, 16, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        status, _, err = run(capsys, "encode", src, tmp_path / "o.otok", "--model", model_path, "--rdo", "1e300", "-q")
    assert status == 0 and err == "", err


# ----- fuzz: header, index and trailer fields, CRCs recomputed ------------------------------------------
def _fuzz_file(coder: str) -> bytes:
    tokens = np.arange(9 * 3 * 4).reshape(9, 3, 4) % 300
    header = Header("otok-test", bytes(32), 8, 4, 3, (3, 4), 32, 24, (30, 1), codebook_size=300, coder=coder)
    buf = io.BytesIO()
    with OtokWriter(buf, header, steps_per_chunk=2) as w:
        w.write(tokens)
    return buf.getvalue()


FUZZ_FILES = {c: _fuzz_file(c) for c in ("raw", "zstd", "ctx")}
FIELD_VALUES = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 255, 4096, 65535, 1 << 24, (1 << 32) - 1, 1 << 40, (1 << 64) - 1]),
                         st.integers(0, (1 << 64) - 1))


def _forge_field(data: bytes, chunk_pick: int, at: int, width: int, value: int) -> bytes:
    """Overwrite `width` bytes at `at` in the payload of one HEAD/STEP/indx/TAIL chunk; CRC recomputed."""
    chunks, reader = [], ct.ChunkReader(io.BytesIO(data[12:]), 12, None)
    while (chunk := reader.next()) is not None:
        chunks.append(chunk)
    chunk = chunks[chunk_pick % len(chunks)]
    payload = bytearray(chunk.payload)
    if not payload:
        return data
    at %= len(payload)
    width = min(width, len(payload) - at)
    payload[at:at + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
    return data[:chunk.offset] + ct.chunk_bytes(chunk.ctype, bytes(payload)) + data[chunk.end:]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(coder=st.sampled_from(sorted(FUZZ_FILES)),
       edits=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 200), st.sampled_from([1, 2, 4, 8]), FIELD_VALUES),
                      min_size=1, max_size=3))
def test_fuzz_header_index_and_trailer_fields(coder, edits):
    """No exception but OtokError, no allocation beyond a fixed multiple of the file's size, and a frame
    count never above what the file's steps hold (trusted or not)."""
    data = FUZZ_FILES[coder]
    for pick, at, width, value in edits:
        data = _forge_field(data, pick, at, width, value)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OtokWarning)
            try:
                reader = OtokReader(io.BytesIO(data))
                read = sum(1 for _ in reader)
                header = reader.header
                most = frames_in_steps(reader.steps, header.gop, header.temporal)
                assert reader.frames <= most
                if not reader.frames_trusted:
                    assert read <= reader.steps
                read_tokens(io.BytesIO(data), allow_truncated=True)
            except OtokError:
                pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * len(data) + (1 << 25), peak


def test_ctrl_c_while_the_cli_loads_is_one_line(monkeypatch, capsys):
    class Loading(types.ModuleType):
        def __getattr__(self, name):
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "otok.tools.cli", Loading("otok.tools.cli"))
    from otok.tools.entry import main as console_script

    assert console_script() == 130
    assert capsys.readouterr().err == "otok: error: interrupted\n"


def test_frames_too_large_for_the_memory_are_one_line(tmp_path, capsys, model_path, monkeypatch):
    src = write_frames(tmp_path / "in.mkv", 64, 48, 2)
    coded = tmp_path / "c.otok"
    assert run(capsys, "encode", src, coded, "--model", model_path, "-q")[0] == 0
    monkeypatch.setattr(limits, "available_memory", lambda: limits.BASE_BYTES + 100 * 64 * 48)
    status, _, err = run(capsys, "encode", src, tmp_path / "out.otok", "--model", model_path)
    assert status == 2 and "more than the" in err and "--max-side " in err, err
    status, _, err = run(capsys, "decode", coded, tmp_path / "out.mkv", "--model", model_path)
    assert status == 2 and "GB to code" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.otok", "in.mkv"]


def test_available_memory_reads_this_machine():
    have = limits.available_memory()
    assert have is None or have > 0
