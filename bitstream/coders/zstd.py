"""`zstd` (id 1): the `raw` packing compressed as one zstd frame with its content size (level 3)."""

from __future__ import annotations

import numpy as np
import zstandard

from .. import bitpack
from ..errors import CorruptError
from .base import LevelParams
from .raw import RawCoder


def compress(data: bytes, level: int) -> bytes:
    """One zstd frame that records its content size."""
    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(data)


def decompress(frame: bytes, expected: int) -> bytes:
    """Decompress one zstd frame that must hold exactly `expected` bytes (checked before allocating)."""
    try:
        size = zstandard.frame_content_size(frame)
    except zstandard.ZstdError as e:
        raise CorruptError(f"bad zstd frame: {e}") from None
    if size != expected:
        raise CorruptError(f"zstd frame declares {size} bytes where the chunk needs {expected}")
    try:
        out = zstandard.ZstdDecompressor().decompress(frame, max_output_size=expected)
    except zstandard.ZstdError as e:
        raise CorruptError(f"bad zstd frame: {e}") from None
    if len(out) != expected:
        raise CorruptError(f"zstd frame holds {len(out)} bytes where the chunk needs {expected}")
    return out


class ZstdCoder(RawCoder):
    name = "zstd"
    coder_id = 1
    Params = LevelParams

    def encode(self, steps: np.ndarray, first_step: int) -> bytes:
        return compress(super().encode(steps, first_step), self.header.coder_params.level)

    def decode(self, payload: bytes, first_step: int, n_steps: int) -> np.ndarray:
        count = n_steps * self.values_per_step
        return super().decode(decompress(payload, bitpack.packed_size(count, self.bits)), first_step, n_steps)
