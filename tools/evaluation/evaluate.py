"""`eval_file`: encode to a real `.otok` file, decode it, and measure quality and rate against the source."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from otok.codec import Tokenizer

from ..decode import decoded_frames
from ..encode import Progress, encode_with, rdo_for
from ..errors import ArgumentError
from ..files import check_input, check_seekable, open_otok, open_video
from ..info import file_info
from ..models import load_for
from ..options import DEFAULTS, EncodeOptions
from ..video_io import VideoWriter
from .metrics import VideoQuality, finite_mean, psnr, side_by_side, ssim

@dataclass
class EvalResult:
    frames: int
    width: int
    height: int
    bytes: int
    psnr: float
    ssim: float
    bpp: float
    bits_per_token: float | None  # the whole file
    coded_bits_per_token: float | None  # the coder's data only (OtokReader.coded_bytes), without the container
    encode_fps: float
    decode_fps: float
    coder: str
    model: str
    psnr_per_frame: list[float] = field(default_factory=list)
    ssim_per_frame: list[float] = field(default_factory=list)
    code_counts: np.ndarray | None = None  # how often each codebook entry was used (None for latents)
    rdo: float = 0.0  # the rate-distortion tolerance the tokens were chosen with
    quality: dict = field(default_factory=dict)  # `metrics.VideoQuality.result()`: seams, judder, colour, ...
    compare: list[Path] = field(default_factory=list)  # side-by-side PNGs written for `compare`


def eval_file(
    src: str | os.PathLike, *, model: str | os.PathLike | None = None, device: str = "cpu", backend: str = "torch",
    engine_dir: str | os.PathLike | None = None, precision: str = "auto", compile: bool = False,
    tile: int | None = None, coder: str = DEFAULTS.coder, gop: int | None = None, rdo: float | None = None, max_side: int | None = None,
    frames: int | None = None, compare: str | os.PathLike | None = None, tokenizer: Tokenizer | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Encode `src` to a real `.otok` file (in a temporary folder), decode it, and measure quality and rate.

    The options are `EncodeOptions`' (what `otok eval`'s flags set, as for `encode_file`).
    compare: a folder (made if missing) for side-by-side PNGs (source | decoded | |error| x4) of the worst
    frame (lowest PSNR) and a typical one (median PSNR); they cost a second decode up to the later of them.
    """
    options = EncodeOptions(model=model, device=device, backend=backend, engine_dir=engine_dir, precision=precision,
                            compile=compile, tile=tile, coder=coder, gop=gop, rdo=rdo, max_side=max_side,
                            frames=frames)
    return eval_with(src, options, compare, tokenizer, progress)


def eval_with(src: str | os.PathLike, options: EncodeOptions, compare: str | os.PathLike | None = None,
              tokenizer: Tokenizer | None = None, progress: Progress | None = None) -> EvalResult:
    """`eval_file` with its options made (and checked) once."""
    import tempfile

    src = Path(src)
    check_input(src)
    check_seekable(src, "eval reads it twice (to encode it, then to compare with the decoded frames)")
    compare = Path(compare) if compare is not None else None
    if compare is not None and compare.exists() and not compare.is_dir():
        raise ArgumentError("compare", f"compare={compare}: exists and is not a folder")
    o = options
    max_side, frames = o.max_side, o.frames
    tok = tokenizer or load_for(o)
    with tempfile.TemporaryDirectory(prefix="otok-eval-") as tmp:
        coded = Path(tmp) / "eval.otok"
        enc = encode_with(src, coded, o, tok, progress)
        info = file_info(coded)
        psnrs, ssims, timer = [], [], [0.0]
        with contextlib.closing(open_otok(coded, tok)) as reader, open_video(src, max_side, frames) as original:
            header = reader.header
            code_counts = None if header.is_latent else np.zeros(header.codebook_size, dtype=np.int64)

            def count(grid: np.ndarray) -> None:
                if code_counts is not None:
                    np.add(code_counts, np.bincount(grid.ravel(), minlength=len(code_counts)), out=code_counts)

            quality = VideoQuality(header.patch, header.temporal, header.gop)
            for reference, frame in zip(original, decoded_frames(reader, tok, timer, count, o.tile)):
                psnrs.append(psnr(reference, frame))
                ssims.append(ssim(reference, frame))
                quality.add(reference, frame, psnrs[-1])
        written = _write_compare(coded, src, tok, max_side, frames, psnrs, compare, o.tile) if compare is not None else []
    return EvalResult(
        frames=enc.frames, width=enc.width, height=enc.height, bytes=enc.bytes,
        psnr=finite_mean(psnrs), ssim=float(np.mean(ssims)),
        bpp=info["bpp"], bits_per_token=info["bits_per_token"],
        coded_bits_per_token=info["coded_bits_per_token"], encode_fps=enc.frames / enc.seconds,
        decode_fps=enc.frames / timer[0] if timer[0] else float("inf"), coder=info["coder"],
        model=tok.config.name, psnr_per_frame=psnrs, ssim_per_frame=ssims, code_counts=code_counts,
        rdo=rdo_for(tok, o.rdo), quality=quality.result(), compare=written,
    )


def compare_frames(psnrs: list[float]) -> dict[str, int]:
    """The frames `eval_file(compare=...)` shows: the worst (lowest PSNR, the first of equals) and a typical
    one (the median PSNR: the lower middle of the sorted frames); one picture when they are the same frame
    (a still, or two frames)."""
    order = sorted(range(len(psnrs)), key=lambda i: (psnrs[i], i))
    worst, typical = order[0], order[(len(order) - 1) // 2]
    return {"worst": worst} if worst == typical else {"worst": worst, "typical": typical}


def _write_compare(coded: Path, src: Path, tok: Tokenizer, max_side: int | None, frames: int | None,
                   psnrs: list[float], folder: Path, tile: int | None = None) -> list[Path]:
    """Decode `coded` again up to the frames `compare_frames` picks and write them side by side as
    SRC.worst.frameN.PSNRdB.png and SRC.typical.frameN.PSNRdB.png (N counts from 0; one frame may be both)."""
    wanted = compare_frames(psnrs)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with contextlib.closing(open_otok(coded, tok)) as reader, open_video(src, max_side, frames) as original:
        for index, (reference, frame) in enumerate(zip(original, decoded_frames(reader, tok, tile=tile))):
            for kind, i in wanted.items():
                if i == index:
                    path = folder / f"{src.stem}.{kind}.frame{i}.{psnrs[i]:.2f}dB.png"
                    image = side_by_side(reference, frame)
                    writer = VideoWriter(path, image.shape[1], image.shape[0], Fraction(1))
                    writer.write(image)
                    writer.close()
                    written.append(path)
            if index >= max(wanted.values()):
                break
    return sorted(written, key=lambda p: ("worst" not in p.name, p.name))
