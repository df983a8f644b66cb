"""`zstd` (id 1): the `raw` packing compressed as one zstd frame with its content size (level 3)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import zstandard

from .. import bitpack
from ..errors import CorruptError
from .base import LevelParams
from .raw import RawCoder


def compress(data: bytes, level: int) -> bytes:
    """One zstd frame that records its content size."""
    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(data)


def _check_content_size(frame: bytes, expected: int) -> None:
    try:
        size = zstandard.frame_content_size(frame)
    except zstandard.ZstdError as e:
        raise CorruptError(f"bad zstd frame: {e}") from None
    if size != expected:
        raise CorruptError(f"zstd frame declares {size} bytes where the chunk needs {expected}")


def decompress(frame: bytes, expected: int) -> bytes:
    """Decompress one zstd frame that must hold exactly `expected` bytes (checked before allocating)."""
    _check_content_size(frame, expected)
    try:
        out = zstandard.ZstdDecompressor().decompress(frame, max_output_size=expected)
    except zstandard.ZstdError as e:
        raise CorruptError(f"bad zstd frame: {e}") from None
    if len(out) != expected:
        raise CorruptError(f"zstd frame holds {len(out)} bytes where the chunk needs {expected}")
    return out


@contextmanager
def decompressed_blocks(frame: bytes, expected: int) -> Iterator[Callable[[int], bytes]]:
    """`read(n)` over the `expected` decompressed bytes of one zstd frame, decompressed as they are read, so
    only the block asked for is held (the whole output need not be: a 3.5 KB frame may declare 128 MB).
    Reading past `expected`, a frame that ends short, holds more or is damaged raises CorruptError (on
    leaving the block, where the rest of the frame is checked)."""
    _check_content_size(frame, expected)
    left = [expected]
    with zstandard.ZstdDecompressor().stream_reader(frame, read_across_frames=False) as src:

        def read(n: int) -> bytes:
            if n > left[0]:
                raise CorruptError(f"zstd frame read past its {expected} bytes")
            parts, got = [], 0
            try:
                while got < n and (block := src.read(n - got)):
                    parts.append(block)
                    got += len(block)
            except zstandard.ZstdError as e:
                raise CorruptError(f"bad zstd frame: {e}") from None
            if got < n:
                raise CorruptError(f"zstd frame holds {expected - left[0] + got} bytes where the chunk needs {expected}")
            left[0] -= n
            return parts[0] if len(parts) == 1 else b"".join(parts)

        yield read
        try:
            more = src.read(1)
        except zstandard.ZstdError as e:
            raise CorruptError(f"bad zstd frame: {e}") from None
        if left[0] or more:
            raise CorruptError(f"zstd frame does not hold the {expected} bytes the chunk needs")


class ZstdCoder(RawCoder):
    name = "zstd"
    coder_id = 1
    Params = LevelParams

    def encode(self, steps: np.ndarray, first_step: int) -> bytes:
        return compress(super().encode(steps, first_step), self.header.coder_params.level)

    def decode(self, payload: bytes, first_step: int, n_steps: int) -> np.ndarray:
        count = n_steps * self.values_per_step
        with decompressed_blocks(payload, bitpack.packed_size(count, self.bits)) as read:
            values = bitpack.unpack_from(read, self.bits, count, dtype=np.int64)
        return self.check_range(values).reshape((n_steps,) + self.step_shape)
