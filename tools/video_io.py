"""Streaming video and image I/O with PyAV: frames in and out one at a time, constant memory.

What is done to inputs (also in docs/BENCHMARKS.md, "What happens to inputs"):
- any pixel format, 10-bit included, is converted to 8-bit RGB (`rgb24`);
- `max_side` scales the frame down (area filter) so its longer side fits, keeping the aspect ratio;
- variable frame rate is treated at its average rate: frames are taken in order, none dropped or repeated;
- an image (png, jpg, ...) is a 1-frame video;
- the video stream is the one FFmpeg finds best, never an attached picture (an mp4's cover art, or a
  one-frame picture track, may come first);
- frames are turned as they are meant to be shown: a display matrix (phone video) or an EXIF orientation
  (JPEG) by quarter turns; a mirroring one is not applied (the stored picture is kept);
- interlaced frames (flagged so by the decoder) are converted field by field (libavfilter's scale with
  interl=1): a progressive conversion mixes the two fields' chroma (mean error 10 against 0.6, 8-bit RGB,
  measured by tests/test_media_inputs.py);
- the sample aspect ratio is read (`VideoInfo.sample_aspect`) and `VideoWriter` writes it back; the pixels
  are not resampled to square ones (an anamorphic source keeps its stored size, so no detail is invented
  or lost; a player stretches it as it did the source);
- a TIFF of several pages gives its first page, with a MediaWarning saying how many it has (an image is one
  frame, and FFmpeg's TIFF decoder reads one page); an animated WebP is refused, saying so (FFmpeg does not
  decode animated WebP).
Outputs: h264/h265 in yuv420p when width and height are even, yuv444p when either is odd (so the size
stays exactly that of the source); ffv1 stores RGB losslessly; vp9 for .webm; png/jpg for one frame.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .errors import MediaError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".gif"}
VIDEO_CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm"}
VIDEO_CODECS = {"h264": "libx264", "h265": "libx265", "ffv1": "ffv1", "vp9": "libvpx-vp9"}
DEFAULT_CRF = {"h264": 18, "h265": 20, "vp9": 24}
DEFAULT_FPS = Fraction(25)


@dataclass(frozen=True)
class VideoInfo:
    width: int  # after max_side scaling
    height: int
    source_width: int
    source_height: int
    fps: Fraction
    frames: int | None  # the container's count, when it states one (an estimate)
    is_image: bool
    sample_aspect: Fraction = Fraction(1)  # a pixel's width over its height, as shown (1: square pixels)
    rotation: int = 0  # degrees clockwise the stored frames are turned to be shown (0, 90, 180, 270)
    has_audio: bool = False  # the file also holds sound (which otok does not code)


class MediaWarning(UserWarning):
    """An input read other than in full: a TIFF's pages after the first, a video's sound."""


class VideoReader:
    """Frames of a video or image file as (H, W, 3) uint8 RGB arrays, decoded lazily."""

    def __init__(self, path: str | os.PathLike, max_side: int | None = None, max_frames: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise MediaError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise MediaError(f"{self.path}: is a folder, not a video")
        try:
            self._container = av.open(str(self.path))
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            hint = "" if self.path.is_file() else "; a pipe must carry a streamable format (mkv, ts), or give the file"
            raise MediaError(f"{self.path}: not a video or image that PyAV can read ({_reason(exc)}){hint}") from None
        self._stream = _video_stream(self._container, self.path)
        self._stream.thread_type = "AUTO"
        ctx = self._stream.codec_context
        if not ctx.width or not ctx.height:
            self._container.close()
            if _is_animated_webp(self.path):
                raise MediaError(f"{self.path}: is an animated WebP, which FFmpeg cannot decode; convert it to a "
                                 "video (.mp4, .gif) or to still images first")
            raise MediaError(f"{self.path}: video stream has no frame size")
        self._decoded = self._container.decode(self._stream)
        self._first = self._peek()  # the first frame says how it is to be shown (rotation)
        self.rotation = _clockwise_turn(self._first.rotation if self._first is not None else 0)
        turned = self.rotation in (90, 270)
        shown_w, shown_h = (ctx.height, ctx.width) if turned else (ctx.width, ctx.height)
        width, height = scaled_size(shown_w, shown_h, max_side)
        self._size = (height, width) if turned else (width, height)  # scaled, before the turn
        is_image = self.path.suffix.lower() in IMAGE_SUFFIXES or self._container.format.name.endswith("_pipe")
        seekable = self.path.is_file()  # a pipe is read once: no second look at a GIF's timestamps
        rate = (_gif_rate(self.path) if self._container.format.name == "gif" and seekable else None) \
            or self._stream.average_rate or self._stream.guessed_rate or DEFAULT_FPS
        aspect = Fraction(self._stream.sample_aspect_ratio or ctx.sample_aspect_ratio or 1)
        aspect = 1 / aspect if turned and aspect else aspect or Fraction(1)
        self.info = VideoInfo(width, height, shown_w, shown_h, Fraction(rate), self._stream.frames or None, is_image,
                              aspect, self.rotation, bool(self._container.streams.audio))
        self.max_frames = max_frames
        self._graphs: dict[tuple, av.filter.Graph] = {}
        if self._container.format.name == "tiff_pipe" and seekable and (pages := _tiff_pages(self.path)) > 1:
            warnings.warn(f"{self.path}: a TIFF of {pages} pages; otok reads the first (an image is one frame)",
                          MediaWarning, stacklevel=2)

    def _peek(self) -> av.VideoFrame | None:
        try:
            return next(self._decoded, None)
        except av.FFmpegError as exc:
            self._container.close()
            raise MediaError(f"{self.path}: cannot decode its video ({_reason(exc)})") from None

    def __iter__(self) -> Iterator[np.ndarray]:
        count = 0
        if self.max_frames is not None and self.max_frames <= 0 or self._first is None:
            return
        frame, self._first = self._first, None
        try:
            while frame is not None:
                yield self._rgb(frame)
                count += 1
                if self.max_frames is not None and count >= self.max_frames:
                    return
                frame = next(self._decoded, None)
        except av.FFmpegError:
            pass  # A damaged tail: keep what decoded, as players do.

    def _rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """A decoded frame -> (H, W, 3) uint8 RGB, scaled, converted field by field if interlaced, turned."""
        width, height = self._size
        if frame.interlaced_frame and frame.format.name != "rgb24":
            rgb = self._filtered(frame, f"scale={width}:{height}:interl=1:flags=area,format=rgb24")
        else:
            rgb = frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()
        return np.ascontiguousarray(np.rot90(rgb, -self.rotation // 90)) if self.rotation else rgb

    def _filtered(self, frame: av.VideoFrame, chain: str) -> np.ndarray:
        """`frame` through a libavfilter chain (one graph per input format and size) -> its RGB array."""
        key = (frame.format.name, frame.width, frame.height, chain)
        if key not in self._graphs:
            graph = av.filter.Graph()
            source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                      time_base=self._stream.time_base or Fraction(1, 25))
            nodes = [source] + [graph.add(*f.split("=", 1)) for f in chain.split(",")] + [graph.add("buffersink")]
            graph.link_nodes(*nodes).configure()
            self._graphs[key] = graph
        graph = self._graphs[key]
        graph.push(frame)
        return graph.pull().to_ndarray()

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _video_stream(container, path: Path):
    """The video stream FFmpeg finds best (av_find_best_stream: it prefers a stream of many frames to a
    one-frame picture track), never an attached picture (cover art, a thumbnail), whatever their order."""
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        container.close()
        pictures = " (only an attached picture, such as cover art)" if container.streams.video else ""
        raise MediaError(f"{path}: has no video stream{pictures}")
    best = container.streams.best("video")
    return best if best in streams else streams[0]


def _clockwise_turn(rotation: float) -> int:
    """FFmpeg's display rotation (degrees counter-clockwise, as av_display_rotation_get gives it: -90 for a
    phone's portrait video and for EXIF orientation 6) -> the clockwise quarter turn that shows the frame."""
    return round(-rotation / 90) % 4 * 90


def _is_animated_webp(path: Path) -> bool:
    """A WebP file whose extended header (VP8X) sets the animation flag."""
    try:
        with open(path, "rb") as f:
            head = f.read(21)
    except OSError:
        return False
    return len(head) == 21 and head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and bool(head[20] & 0x02)


def _tiff_pages(path: Path, most: int = 100_000) -> int:
    """How many images (IFDs) a TIFF holds, following its chain of offsets (0 where it does not parse)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            order = {b"II": "<", b"MM": ">"}.get(head[:2])
            if order is None or len(head) < 8 or struct.unpack(order + "H", head[2:4])[0] != 42:
                return 0
            offset, pages, seen = struct.unpack(order + "I", head[4:8])[0], 0, set()
            while offset and offset not in seen and pages < most:
                seen.add(offset)
                f.seek(offset)
                raw = f.read(2)
                if len(raw) < 2:
                    break
                f.seek(offset + 2 + 12 * struct.unpack(order + "H", raw)[0])
                nxt = f.read(4)
                pages += 1
                offset = struct.unpack(order + "I", nxt)[0] if len(nxt) == 4 else 0
            return pages
    except OSError:
        return 0


def _gif_rate(path: Path) -> Fraction | None:
    """A GIF's average frame rate from its frames' timestamps. FFmpeg's average for a GIF is not one
    (a 43.9 fps GIF read as 50): each frame carries its own delay in hundredths of a second."""
    with av.open(str(path)) as probe:
        stream = probe.streams.video[0]
        stamps = [p.pts for p in probe.demux(stream) if p.size and p.pts is not None]
        time_base = stream.time_base  # PyAV 18.1.1 refuses to read it once the container is closed
    if len(stamps) < 2 or stamps[-1] <= stamps[0] or time_base is None:
        return None
    return Fraction(len(stamps) - 1) / (Fraction(stamps[-1] - stamps[0]) * time_base)


def media_files(folders: Iterable[str | os.PathLike]) -> list[Path]:
    """Every video and image under the folders (by suffix), sorted."""
    return sorted(p for d in folders for p in Path(d).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES)


def frames_to_video(frames: list[np.ndarray], device: str | object = "cpu"):
    """n frames (H, W, 3) uint8 -> a torch tensor (1, 3, n, H, W) float in [-1, 1] on `device`."""
    import torch

    from otok.codec.pixels import from_uint8

    return from_uint8(torch.from_numpy(np.stack(frames)).to(device)).permute(3, 0, 1, 2)[None]


def video_to_frames(video) -> np.ndarray:
    """A torch tensor (1, 3, n, H, W) float in [-1, 1] -> (n, H, W, 3) uint8."""
    from otok.codec.pixels import to_uint8

    return to_uint8(video[0]).permute(1, 2, 3, 0).cpu().numpy()


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def max_side_for(path: str | os.PathLike, short_side: int) -> int | None:
    """The `max_side` that scales `path` down so its shorter side is `short_side` (None: it already fits)."""
    with VideoReader(path, max_frames=1) as reader:
        width, height = reader.info.width, reader.info.height
    if min(width, height) <= short_side:
        return None
    return round(max(width, height) * short_side / min(width, height))


# Errors of writing a file (a full disk, a quota, a read-only or failing device): reported as such, not as
# the codec's
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


class VideoWriter:
    """Writes (H, W, 3) uint8 RGB frames to a video (mp4/mkv/mov/webm) or to one image (png/jpg).

    `path` may carry any name (a temporary one, say); `suffix` picks the format, default path's suffix.
    `sample_aspect`: a pixel's width over its height (`VideoInfo.sample_aspect` of the source), recorded in
    the video so that players show it as the source was shown.
    """

    def __init__(
        self, path: str | os.PathLike, width: int, height: int, fps: Fraction, codec: str | None = None,
        crf: int | None = None, suffix: str | None = None, sample_aspect: Fraction | None = None,
    ) -> None:
        suffix = (Path(path).suffix if suffix is None else suffix).lower()
        self.width, self.height, self.frames = width, height, 0
        self.is_image = suffix in IMAGE_SUFFIXES
        if self.is_image:
            # update=1: one file, not a numbered sequence.
            self._container = av.open(str(path), "w", format="image2", options={"update": "1"})
            codec_name, pix_fmt = ("png", "rgb24") if suffix == ".png" else ("mjpeg", "yuvj444p")
            self._stream = self._container.add_stream(codec_name, rate=1)
        elif suffix in VIDEO_CONTAINERS:
            codec = codec or ("vp9" if suffix == ".webm" else "h264")
            if codec not in VIDEO_CODECS:
                raise MediaError(f"unknown codec {codec!r}; choose one of {', '.join(VIDEO_CODECS)}")
            if (suffix == ".webm") != (codec == "vp9"):
                raise MediaError(f"codec {codec} does not go in a {suffix} file (webm holds vp9 only)")
            if codec == "ffv1" and suffix == ".mp4":
                raise MediaError("ffv1 does not go in .mp4; use .mkv or .mov")
            self._container = av.open(str(path), "w", format=VIDEO_CONTAINERS[suffix])
            self._stream = self._container.add_stream(VIDEO_CODECS[codec], rate=_writable_rate(fps))
            even = width % 2 == 0 and height % 2 == 0
            pix_fmt = "bgr0" if codec == "ffv1" else ("yuv420p" if even else "yuv444p")
            if codec != "ffv1":
                options = {"crf": str(DEFAULT_CRF[codec] if crf is None else crf)}
                if codec == "vp9":
                    options["b"] = "0"
                if codec == "h265":
                    options["x265-params"] = "log-level=error"
                self._stream.options = options
        else:
            check_video_suffix(Path(path).with_suffix(suffix))
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, pix_fmt
        if sample_aspect and sample_aspect != 1 and not self.is_image:  # (an image is written with square pixels)
            self._stream.codec_context.sample_aspect_ratio = Fraction(sample_aspect).limit_denominator(65535)

    def write(self, frame: np.ndarray) -> None:
        """frame: (H, W, 3) uint8 RGB."""
        if self.is_image and self.frames:
            raise MediaError("an image output holds one frame; write a video (.mp4, .mkv, ...) instead")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self.frames
        with self._encoder_errors():
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        with self._encoder_errors():
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()

    @contextlib.contextmanager
    def _encoder_errors(self) -> Iterator[None]:
        """An encoder that refuses the frame size (ffv1 at 1 pixel wide, say) is a MediaError, one line."""
        try:
            yield
        except av.FFmpegError as exc:
            if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:  # the disk, not the codec: as any write error
                raise OSError(exc.errno, os.strerror(exc.errno)) from None
            codec = self._stream.codec_context.name
            raise MediaError(f"the {codec} encoder cannot write {self.width}x{self.height} frames ({_reason(exc)}); "
                             "choose another codec or format") from None


def check_video_suffix(path: Path) -> None:
    """The output's format comes from its extension: one VideoWriter writes, or a MediaError naming `path`."""
    suffix = path.suffix.lower()
    if suffix not in VIDEO_CONTAINERS and suffix not in IMAGE_SUFFIXES:
        raise MediaError(
            f"cannot write {path}: {f'{suffix} is not a format otok writes' if suffix else 'it has no extension'}; "
            f"use {', '.join(VIDEO_CONTAINERS)} for video or .png/.jpg for one frame")


def _writable_rate(fps: Fraction) -> Fraction:
    """`fps` as FFmpeg takes it (each term a 32-bit signed integer): nearest such rate, or a MediaError."""
    limit = (1 << 31) - 1
    rate = Fraction(fps).limit_denominator(limit)
    if not 0 < rate.numerator <= limit:
        raise MediaError(f"a frame rate of {fps} fps cannot be written to a video (FFmpeg takes rates of "
                         f"1/{limit} to {limit} fps); the file's rate is damaged or forged")
    return rate


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
