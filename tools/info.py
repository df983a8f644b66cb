"""`file_info`: what `otok info` shows of an `.otok` file (header, counts, rate, encoder settings)."""

from __future__ import annotations

import contextlib
import json
import os
from fractions import Fraction
from pathlib import Path

from otok.bitstream import OtokError, OtokReader
from otok.bitstream.container import ENCD

from .errors import at
from .files import open_otok

def file_info(src: str | os.PathLike) -> dict:
    """The `otok info --json` record of an `.otok` file."""
    src = Path(src)
    with contextlib.closing(open_otok(src)) as reader:
        h = reader.header
        try:
            index = reader.index
        except OtokError as exc:
            raise at(src, exc) from None
        steps, frames = reader.steps, reader.frames
        size = src.stat().st_size
        fps = Fraction(*h.fps)
        tokens = steps * h.grid[0] * h.grid[1]
        try:
            coded = reader.coded_bytes
        except OtokError:  # a damaged chunk: the rest of the record still holds
            coded = None
        return {
            "file": str(src),
            "model": h.model,
            "weights_sha256": h.weights_sha256.hex(),
            "codebook_size": h.codebook_size or None,
            "latent_channels": h.latent_channels or None,
            "patch": h.patch,
            "temporal_patch": h.temporal,
            "gop": h.gop,
            "grid": list(h.grid),
            "width": h.width,
            "height": h.height,
            "padded_width": h.padded_width,
            "padded_height": h.padded_height,
            "frames": frames,
            "fps": f"{fps.numerator}/{fps.denominator}",
            "fps_float": float(fps),
            "steps": steps,
            "segments": sum(1 for e in index if e.keyframe),
            "coder": h.coder,
            "format_version": reader.format_version,
            "literal_model": h.coder_params.literal_model if h.coder == "ctx" else None,
            "bytes": size,
            "bits_per_token": 8 * size / tokens if tokens else None,
            "coded_bytes": coded,
            "coded_bits_per_token": 8 * coded / tokens if tokens and coded is not None else None,
            "bpp": 8 * size / (frames * h.width * h.height) if frames else None,
            "duration_s": frames / float(fps),
            "complete": reader.complete,
            "encoder_settings": encoder_settings(reader),
            "sample_aspect": "{}:{}".format(*reader.sample_aspect) if reader.sample_aspect else None,
        }


def coded_suffix(coded_bits_per_token: float | None, width: int = 0) -> str:
    """" (X coded)" after a whole file's bits/token, or "" when the coded steps could not be measured."""
    return "" if coded_bits_per_token is None else f" ({coded_bits_per_token:{width}.3f} coded)"


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


def encoder_settings(reader: OtokReader) -> dict | None:
    """The `encd` chunk's settings (SPEC §2.3), or None: not there (written by another tool or before it
    existed) or not a JSON object (NaN and Infinity are not JSON)."""
    payload = reader.ancillary.get(ENCD)
    try:
        settings = json.loads(payload.decode("utf-8"), parse_constant=_not_json) if payload is not None else None
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        return None
    return settings if isinstance(settings, dict) else None


