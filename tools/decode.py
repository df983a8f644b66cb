"""`decode_file`: an `.otok` file into a video or image, one step at a time (a pipe works too)."""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from otok.bitstream import CorruptError, OtokError, OtokReader
from otok.bitstream.timeline import frames_in_steps
from otok.codec import Tokenizer

from .encode import Progress
from .errors import InputError, at, printable
from .files import atomic_output, check_output, check_writing, damage_reported_by_caller, open_otok
from .limits import check_memory
from .models import model_for_file, model_priors
from .options import DecodeOptions
from .video_io import MediaWarning, VideoWriter, check_video_suffix, video_to_frames

@dataclass
class DecodeResult:
    path: Path
    frames: int
    width: int
    height: int
    seconds: float
    damage: str | None = None  # where a truncated or damaged file stopped
    untrusted: str | None = None  # why the frame count was inferred (no valid trailer and index), if it was


def decode_file(
    src: str | os.PathLike, dst: str | os.PathLike, *, model: str | os.PathLike | None = None,
    device: str = "cpu", backend: str = "torch", engine_dir: str | os.PathLike | None = None,
    precision: str = "auto", compile: bool = False, tile: int | None = None, codec: str | None = None,
    crf: int | None = None,
    tokenizer: Tokenizer | None = None, progress: Progress | None = None,
) -> DecodeResult:
    """Decode an `.otok` file to a video (or, for one frame, an image) of the source's size and rate. The
    file is opened once, so a pipe or FIFO works too (the format streams).

    The options are `DecodeOptions`' (what `otok decode`'s flags set): model, the weights that made the
    file when they are not installed (default: the release it names); codec and crf, the output video's.
    """
    options = DecodeOptions(model=model, device=device, backend=backend, engine_dir=engine_dir,
                            precision=precision, compile=compile, tile=tile, codec=codec, crf=crf)
    return decode_with(src, dst, options, tokenizer, progress)


def decode_with(src: str | os.PathLike, dst: str | os.PathLike, options: DecodeOptions,
                tokenizer: Tokenizer | None = None, progress: Progress | None = None) -> DecodeResult:
    """`decode_file` with its options made (and checked) once."""
    o = options
    src, dst = Path(src), Path(dst)
    check_output(dst, [src])
    check_video_suffix(dst)
    start = time.perf_counter()
    with contextlib.closing(open_otok(src)) as reader:
        header = reader.header
        try:
            tok = model_for_file(header, o.model, o.device, o.backend, tokenizer, o.engine_dir, o.precision, o.compile)
        except CorruptError as exc:  # a forged geometry
            raise at(src, exc) from None
        check_memory(tok, header.padded_width, header.padded_height, str(src), tile=o.tile,
                     video=not (reader.seekable and reader.frames == 1))
        reader.use_priors(model_priors(tok))
        if dst.suffix.lower() in (".png", ".jpg", ".jpeg") and reader.seekable and reader.frames != 1:
            raise InputError(f"{src} holds {reader.frames} frames; an image output holds one (write .mp4, .mkv, ...)")
        written = 0
        try:
            with atomic_output(dst) as tmp:
                writer = VideoWriter(tmp, header.width, header.height, Fraction(*header.fps), o.codec, o.crf,
                                     suffix=dst.suffix, sample_aspect=_writable_aspect(reader, src))
                for frame in decoded_frames(reader, tok, tile=o.tile):
                    if written % 16 == 0:
                        check_writing(tmp)
                    writer.write(frame)
                    written += 1
                    if progress:
                        progress(1)
                if written == 0:
                    raise CorruptError(f"{src}: the file holds no intact step to decode")
                writer.close()
        except OtokError as exc:
            raise at(src, exc) from None
        damage = reader.damage
        untrusted = None if reader.frames_trusted else (
            f"{src}: no valid trailer and index, so the frame count is untrusted; wrote {written} frames, "
            + ("the intact steps less the padding the damaged trailer names"
               if written < frames_in_steps(reader.steps, header.gop, header.temporal)
               else f"all the intact steps hold (up to {header.temporal - 1} of them may be the last step's padding)"))
    return DecodeResult(dst, written, header.width, header.height, time.perf_counter() - start, damage, untrusted)


def decoded_frames(reader: OtokReader, tok: Tokenizer, timer: list[float] | None = None,
                   on_grid: Callable[[np.ndarray], None] | None = None, tile: int | None = None) -> Iterator[np.ndarray]:
    """The frames of an open `.otok` file, decoded one step at a time: (H, W, 3) uint8 each, as many as the
    file holds (a padded last group's extra frames dropped), up to its last intact step (`reader.damage`
    then says where it stopped). timer: seconds spent in the model are added to timer[0]. on_grid: called
    with each step's grid before it is decoded. tile: as `Tokenizer.stream_decoder`'s."""
    header = reader.header
    stream = tok.stream_decoder(1, header.height, header.width, header.gop, tile=tile)  # gop 0: one segment
    # A pipe gives its frame count only in the trailer at its end: each step's frames wait for the next
    # step (or the end), so that the last step's padding can be dropped.
    total, done, held = (reader.frames if reader.seekable else None), 0, []
    with torch.inference_mode(), damage_reported_by_caller():
        for step, grid in enumerate(reader):
            if total is not None and done >= total:
                return
            if header.is_latent and not np.isfinite(grid).all():  # would decode to black frames, silently
                raise CorruptError(f"step {step} holds NaN or infinite latents: the file is damaged or forged")
            if on_grid is not None:
                on_grid(grid)
            tick = time.perf_counter()
            frames = video_to_frames(stream.push(grid[None]))  # (push takes NumPy: int64 tokens, float32 latents)
            if timer is not None:
                timer[0] += time.perf_counter() - tick
            if total is None:
                yield from held
                done, held = done + len(held), list(frames)
                continue
            for frame in frames[: total - done]:
                done += 1
                yield frame
        if total is None:
            yield from held[: max(0, reader.frames - done)]


def _writable_aspect(reader: OtokReader, src: Path) -> Fraction | None:
    """The file's sample aspect ratio as a video file can hold it (terms of at most 16 bits); one that cannot
    be held (a damaged or forged `sasp` chunk: 4294967295:1) is dropped with a warning, square pixels."""
    if reader.sample_aspect is None:
        return None
    aspect = Fraction(*reader.sample_aspect).limit_denominator(65535)
    if 0 < aspect.numerator <= 65535:
        return aspect
    warnings.warn(f"{src}: its sample aspect ratio {printable(':'.join(map(str, reader.sample_aspect)))} cannot be "
                  "written; the output has square pixels", MediaWarning, stacklevel=2)
    return None

