"""`encode_file`: a video or image file into an `.otok` file, streaming one group of frames at a time."""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from otok.bitstream import CtxParams, Header, OtokWriter
from otok.bitstream.container import ENCD, SASP, SASP_PAYLOAD
from otok.codec import Tokenizer

from .errors import ArgumentError, MediaError, ModelError
from .files import atomic_output, check_input, check_otok_output, check_output, check_writing, open_video
from .limits import check_frame_size, check_memory
from .models import load_for, model_prior
from .options import DEFAULTS, EncodeOptions
from .video_io import MediaWarning, VideoInfo, frames_to_video

Progress = Callable[[int], None]  # called with the number of frames just finished

@dataclass
class EncodeResult:
    path: Path
    frames: int
    steps: int
    width: int
    height: int
    fps: Fraction
    bytes: int
    seconds: float


def groups(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def make_header(tok: Tokenizer, width: int, height: int, fps: Fraction, coder: str, gop: int) -> Header:
    c = tok.config
    if not c.discrete and coder != "f16z":
        coder = "f16z"  # KL latents are stored as fp16 + zstd, whatever token coder was asked for
    if c.discrete and coder == "f16z":
        raise ArgumentError("coder", "coder='f16z' stores KL latents; this model makes tokens (use ctx, zstd or raw)")
    fps = Fraction(fps).limit_denominator(1 << 20) if fps > 0 else Fraction(25)
    params = CtxParams() if coder == "ctx" else None
    return Header(
        model=c.name, weights_sha256=bytes.fromhex(tok.weights_sha256()), patch=c.patch, temporal=c.tubelet,
        gop=gop, grid=tok.grid_size(height, width), width=width, height=height,
        fps=(fps.numerator, fps.denominator), codebook_size=c.codebook_size if c.discrete else 0,
        latent_channels=0 if c.discrete else tok.quantizer.code_dim, coder=coder, coder_params=params,
    )


def _grid_to_numpy(grid: torch.Tensor) -> np.ndarray:
    return grid[0].cpu().numpy()


def rdo_for(tok: Tokenizer, rdo: float | None) -> float:
    """The rate-distortion tolerance to encode with: `rdo`, or the default for the model's kind. An engine
    folder exported before rdo existed has no code table: a one-line error that says what to do."""
    if rdo is None:
        rdo = DEFAULTS.rdo if tok.config.discrete else 0.0
    if not math.isfinite(rdo) or rdo < 0:
        raise ArgumentError("rdo", f"rdo must be a number >= 0, got {rdo}")
    if rdo and not tok.config.discrete:
        raise ArgumentError("rdo", f"rdo applies to token models; {tok.config.name} codes continuous latents")
    if rdo and getattr(tok, "engine_dir", None) is not None:  # an engine needs its exported code table
        from otok.export import EngineError

        try:
            tok.codes_from_indices(torch.zeros(1, dtype=torch.long))
        except EngineError as exc:
            raise ModelError(str(exc)) from None
    return rdo + 0.0  # -0.0 -> 0.0


def encode_file(
    src: str | os.PathLike, dst: str | os.PathLike, *, model: str | os.PathLike | None = None,
    device: str = "cpu", backend: str = "torch", engine_dir: str | os.PathLike | None = None,
    precision: str = "auto", compile: bool = False, tile: int | None = None, coder: str = DEFAULTS.coder,
    gop: int | None = None,
    rdo: float | None = None, max_side: int | None = None, frames: int | None = None, force: bool = False,
    tokenizer: Tokenizer | None = None, progress: Progress | None = None,
) -> EncodeResult:
    """Encode a video or image file into an `.otok` file, streaming.

    The options are `EncodeOptions`' (what `otok encode`'s flags set): model, a registry name or weights
    path (default `DEFAULTS.model`), or pass a loaded `tokenizer`; gop, segment length in steps (default:
    the model's); rdo, the rate-distortion tolerance (`otok.codec.rdo`; None: `DEFAULTS.rdo` for token
    models, 0 for KL); force: replace an existing `dst` that is not an `.otok` file. progress: called with
    the frames done. Errors: the OtokError family.
    """
    options = EncodeOptions(model=model, device=device, backend=backend, engine_dir=engine_dir, precision=precision,
                            compile=compile, tile=tile, coder=coder, gop=gop, rdo=rdo, max_side=max_side,
                            frames=frames)
    return encode_with(src, dst, options, tokenizer, progress, force)


def encode_with(src: str | os.PathLike, dst: str | os.PathLike, options: EncodeOptions,
                tokenizer: Tokenizer | None = None, progress: Progress | None = None, force: bool = False) -> EncodeResult:
    """`encode_file` with its options made (and checked) once, e.g. by the CLI for several files."""
    src, dst, o = Path(src), Path(dst), options
    check_input(src)
    check_output(dst, [src])
    check_otok_output(dst, force)
    tok = tokenizer or load_for(o)
    with open_video(src, o.max_side, o.frames) as reader:
        if reader.info.has_audio:
            warnings.warn(f"{src}: its sound is not coded (an .otok file holds the video)", MediaWarning, stacklevel=2)
        return encode_frames(reader, reader.info, dst, tok, coder=o.coder, gop=o.gop, rdo=o.rdo, progress=progress,
                             name=str(src), tile=o.tile)


def encode_frames(
    frames: Iterable[np.ndarray], info: VideoInfo, dst: Path, tok: Tokenizer, *, coder: str = DEFAULTS.coder,
    gop: int | None = None, rdo: float | None = None, progress: Progress | None = None, name: str = "the input",
    tile: int | None = None,
) -> EncodeResult:
    """What `encode_file` writes, from frames already read: (H, W, 3) uint8 of `info`'s size and rate (a
    VideoReader, or a clip of one). name: the input, in messages."""
    gop = tok.config.gop if gop is None else gop
    rdo = rdo_for(tok, rdo)
    start = time.perf_counter()
    with atomic_output(dst) as tmp:
        check_frame_size(info.width, info.height, name, ArgumentError)
        header = make_header(tok, info.width, info.height, info.fps, coder, gop)
        check_memory(tok, header.padded_width, header.padded_height, name, ArgumentError, tile, not info.is_image)
        stream = tok.stream_encoder(1, info.height, info.width, gop, rdo=rdo, tile=tile)
        count = 0
        # A prior that ships with the model is referenced by its hash, not embedded: the decoder has it too.
        prior = model_prior(tok) if coder == "ctx" else None
        with OtokWriter(tmp, header, prior=prior, embed_prior=False) as writer, torch.inference_mode():
            # 24 bytes with framing: what a reader of the tokens needs to know (nearest codes or not)
            writer.write_ancillary(ENCD, json.dumps({"rdo": rdo}, separators=(",", ":")).encode())
            aspect = Fraction(getattr(info, "sample_aspect", 1)).limit_denominator(65535)
            if aspect != 1:  # non-square pixels: carried, never resampled (SPEC §2.3)
                writer.write_ancillary(SASP, SASP_PAYLOAD.pack(aspect.numerator, aspect.denominator))
            for batch in groups(frames, tok.config.tubelet):
                check_writing(tmp)
                for grid in stream.push(frames_to_video(batch, tok.device)):
                    writer.write(_grid_to_numpy(grid))
                count += len(batch)
                if progress:
                    progress(len(batch))
            if count == 0:
                raise MediaError(f"{name}: has no frames")
            for grid in stream.flush():
                writer.write(_grid_to_numpy(grid))
            writer.close(frames=count)
            steps = writer.steps
        size = tmp.stat().st_size
    fps = Fraction(*header.fps)
    return EncodeResult(dst, count, steps, info.width, info.height, fps, size, time.perf_counter() - start)


