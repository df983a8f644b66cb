"""Everyday media that used to decode wrongly with exit 0 (issue 29 C.8-10): cover art, phone rotation, EXIF
orientation, interlaced chroma, sample aspect ratio, multi-page TIFF, animated WebP. Every input is written
here with PyAV or Pillow."""

from __future__ import annotations

import struct
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from otok.tools.video_io import MediaError, MediaWarning, VideoReader, VideoWriter

Image = pytest.importorskip("PIL.Image")


def _pattern(h: int, w: int, shift: int = 0) -> np.ndarray:
    """(h, w, 3) uint8 that tells every turn and flip apart: red left half, a green top row, a blue corner."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2, 0] = 200
    a[:4, :, 1] = 200
    a[-8:, -8 - shift:w - shift, 2] = 220
    return a


def _write(path: Path, frames: list[np.ndarray], fmt: str | None = None, rotation: float | None = None,
           cover: bool = False, options: dict | None = None, sample_aspect: Fraction | None = None) -> Path:
    first = frames[0]
    h, w = (first.height, first.width) if isinstance(first, av.VideoFrame) else first.shape[:2]
    with av.open(str(path), "w", format=fmt) as c:
        if cover:
            art = c.add_stream("mjpeg", rate=1)
            art.width, art.height, art.pix_fmt = 16, 16, "yuvj420p"
            art.disposition = av.stream.Disposition.attached_pic
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = options or {"qp": "0"}
        if sample_aspect is not None:
            s.codec_context.sample_aspect_ratio = sample_aspect
        if rotation is not None:
            s.set_display_rotation(rotation)
        if cover:
            picture = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 250, np.uint8), format="rgb24")
            picture.pts = 0
            for p in [*art.encode(picture), *art.encode()]:
                c.mux(p)
        for i, a in enumerate(frames):
            f = a if isinstance(a, av.VideoFrame) else av.VideoFrame.from_ndarray(a, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _boxes(data: bytes, start: int, end: int) -> list[bytes]:
    out, at = [], start
    while at + 8 <= end:
        size = struct.unpack(">I", data[at:at + 4])[0]
        out.append(data[at:at + size])
        at += size
    return out


def _cover_first(path: Path) -> Path:
    """Move the moov box's udta (where the mp4 muxer put the cover) before its tracks, as taggers write it:
    FFmpeg then lists the cover as stream 0 (the boxes' sizes, and so every offset into mdat, are unchanged)."""
    data = path.read_bytes()
    out = b""
    for box in _boxes(data, 0, len(data)):
        if box[4:8] == b"moov":
            kids = _boxes(box, 8, len(box))
            first = [k for k in kids if k[4:8] in (b"mvhd", b"udta")]
            box = box[:8] + b"".join(first + [k for k in kids if k not in first])
        out += box
    path.write_bytes(out)
    return path


def test_cover_art_stream_first_is_not_the_video(tmp_path):
    path = _cover_first(_write(tmp_path / "song.mp4", [_pattern(16, 32)] * 30, cover=True))
    with av.open(str(path)) as c:  # the input is what the issue describes: the cover comes first
        assert c.streams.video[0].disposition & av.stream.Disposition.attached_pic
    with VideoReader(path) as r:
        frames = list(r)
    assert len(frames) == 30 and frames[0].shape == (16, 32, 3)


def test_a_one_frame_picture_track_first_is_not_the_video(tmp_path):
    """matroska writes the picture as a plain one-frame track: the 30-frame track is the video."""
    path = _write(tmp_path / "clip.mkv", [_pattern(16, 32)] * 30, cover=True)
    with VideoReader(path) as r:
        assert len(list(r)) == 30


def test_only_cover_art_is_no_video(tmp_path):
    path = tmp_path / "art.mp4"
    with av.open(str(path), "w") as c:
        art = c.add_stream("mjpeg", rate=1)
        art.width, art.height, art.pix_fmt = 16, 16, "yuvj420p"
        art.disposition = av.stream.Disposition.attached_pic
        audio = c.add_stream("aac", rate=8000)
        picture = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 250, np.uint8), format="rgb24")
        picture.pts = 0
        for p in [*art.encode(picture), *art.encode()]:
            c.mux(p)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        samples.sample_rate, samples.pts = 8000, 0
        for p in [*audio.encode(samples), *audio.encode()]:
            c.mux(p)
    with pytest.raises(MediaError, match="no video stream"):  # (with the cover listed or not)
        VideoReader(path)


@pytest.mark.parametrize("rotation, turns", [(-90, -1), (90, 1), (180, 2)])
def test_phone_video_display_matrix_is_applied(tmp_path, rotation, turns):
    """A phone's portrait video is stored landscape with a -90 degree display matrix."""
    stored = _pattern(32, 48)
    path = _write(tmp_path / "phone.mp4", [stored] * 3, rotation=rotation)
    with VideoReader(path) as r:
        frames = list(r)
        info = r.info
    shown = np.rot90(stored, turns)
    assert (info.width, info.height) == (shown.shape[1], shown.shape[0])
    assert info.rotation == (-90 * turns) % 360
    assert frames[0].shape == shown.shape
    assert np.abs(frames[0].astype(int) - shown).mean() < 3


def test_phone_video_rotation_with_max_side(tmp_path):
    path = _write(tmp_path / "phone.mp4", [_pattern(32, 64)] * 2, rotation=-90)
    with VideoReader(path, max_side=32) as r:
        assert (r.info.width, r.info.height) == (16, 32)
        assert next(iter(r)).shape == (32, 16, 3)


def test_jpeg_exif_orientation_6_is_applied(tmp_path):
    stored = _pattern(32, 64)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to show"
    path = tmp_path / "photo.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    with VideoReader(path) as r:
        (frame,) = list(r)
    shown = np.rot90(stored, -1)
    assert frame.shape == shown.shape and (r.info.width, r.info.height) == (32, 64)
    assert np.abs(frame.astype(int) - shown).mean() < 4


# ----- interlaced chroma ----------------------------------------------------------------------------------
H, W = 64, 96


def _yuv(rgb: np.ndarray) -> tuple[np.ndarray, ...]:
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))  # BT.601, limited range
    return (16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255, 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255,
            128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255)


def _scene(shift: int) -> np.ndarray:
    a = np.full((H, W, 3), 128, np.uint8)
    for k, colour in enumerate([(220, 30, 30), (30, 200, 40), (40, 60, 230)]):
        a[8 + 8 * k:40 + 8 * k, 8 + 28 * k + shift:28 + 28 * k + shift] = colour
    return a


def _interlaced_frame(top: np.ndarray, bottom: np.ndarray) -> tuple[np.ndarray, av.VideoFrame]:
    """Two fields of a moving scene woven into one frame, its 4:2:0 chroma subsampled field by field (as an
    interlaced camera writes it) -> (the woven RGB frame, its yuv420p frame)."""
    woven = top.copy()
    woven[1::2] = bottom[1::2]
    y, u, v = _yuv(woven)

    def chroma(c: np.ndarray) -> np.ndarray:
        out = np.empty((H // 2, W // 2))
        for field in (0, 1):  # chroma rows alternate between the fields
            out[field::2] = c[field::2].reshape(H // 4, 2, W // 2, 2).mean(axis=(1, 3))
        return out

    planes = [np.clip(np.round(p), 0, 255).astype(np.uint8).reshape(-1) for p in (y, chroma(u), chroma(v))]
    return woven, av.VideoFrame.from_ndarray(np.concatenate(planes).reshape(H * 3 // 2, W), format="yuv420p")


def test_interlaced_chroma_is_converted_field_by_field(tmp_path):
    """H.264 coded interlaced (lossless, so the planes are what was written): the frames decode flagged
    interlaced, and their RGB matches the woven frames within rounding (mean error 0.3 of 255). Converting the
    same planes as progressive gives 12.0 (the issue measured 10.0): every other line takes the other field's
    colour where anything moves."""
    woven, frames = zip(*(_interlaced_frame(_scene(4 * i), _scene(4 * i + 10)) for i in range(4)))
    path = _write(tmp_path / "interlaced.mkv", list(frames), options={"qp": "0", "x264-params": "interlaced=1:tff=1"})
    with av.open(str(path)) as c:
        assert all(f.interlaced_frame for f in c.decode(video=0))
    with VideoReader(path) as r:
        read = list(r)
    error = np.mean([np.abs(a.astype(int) - t).mean() for a, t in zip(read, woven)])
    progressive = np.mean([np.abs(f.reformat(format="rgb24").to_ndarray().astype(int) - t).mean()
                           for f, t in zip(frames, woven)])  # (frames made here carry no interlaced flag)
    assert error < 1.0 and progressive > 8, (error, progressive)


# ----- sample aspect ratio, TIFF pages, animated WebP -------------------------------------------------------
def test_sample_aspect_ratio_is_read_and_written_back(tmp_path):
    """An anamorphic source keeps its stored pixels; its pixel shape goes through VideoInfo to VideoWriter."""
    src = _write(tmp_path / "anamorphic.mp4", [_pattern(32, 48)] * 2, sample_aspect=Fraction(16, 11))
    with VideoReader(src) as r:
        assert r.info.sample_aspect == Fraction(16, 11) and (r.info.width, r.info.height) == (48, 32)
        writer = VideoWriter(tmp_path / "back.mp4", r.info.width, r.info.height, r.info.fps,
                             sample_aspect=r.info.sample_aspect)
        for frame in r:
            writer.write(frame)
        writer.close()
    with VideoReader(tmp_path / "back.mp4") as r:
        assert r.info.sample_aspect == Fraction(16, 11)
    with VideoReader(_write(tmp_path / "square.mp4", [_pattern(32, 48)])) as r:
        assert r.info.sample_aspect == 1
    with VideoReader(_write(tmp_path / "turned.mp4", [_pattern(32, 48)], rotation=-90,
                            sample_aspect=Fraction(4, 3))) as r:
        assert r.info.sample_aspect == Fraction(3, 4)  # a pixel turned on its side


def test_multi_page_tiff_reads_page_one_and_says_so(tmp_path):
    pages = [Image.fromarray(_pattern(16, 24, shift=4 * i)) for i in range(3)]
    path = tmp_path / "scan.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    with pytest.warns(MediaWarning, match="TIFF of 3 pages"):
        reader = VideoReader(path)
    with reader:
        (frame,) = list(reader)
    np.testing.assert_array_equal(frame, _pattern(16, 24))
    single = tmp_path / "one.tif"
    pages[0].save(single)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MediaWarning)
        VideoReader(single).close()


def test_animated_webp_is_refused_saying_why(tmp_path):
    frames = [Image.fromarray(_pattern(16, 24, shift=4 * i)) for i in range(3)]
    path = tmp_path / "loop.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with pytest.raises(MediaError, match="animated WebP"):
        VideoReader(path)
    still = tmp_path / "still.webp"
    frames[0].save(still, lossless=True)
    with VideoReader(still) as r:
        np.testing.assert_array_equal(next(iter(r)), _pattern(16, 24))
