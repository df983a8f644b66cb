"""What every coder provides: an id, a name, parameters, and chunk encode/decode over whole steps."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..errors import CorruptError, UsageError

if TYPE_CHECKING:
    from ..header import Header
    from ..prior import Prior


@dataclass(frozen=True)
class LevelParams:
    """Parameters of the zstd-based coders: the compression level the writer used (informative)."""

    level: int = 3

    def pack(self) -> bytes:
        return struct.pack("<B", self.level)

    @classmethod
    def unpack(cls, data: bytes) -> LevelParams:
        if len(data) != 1:
            raise UsageError(f"zstd coder parameters must be 1 byte, found {len(data)}")
        return cls(data[0])

    def validate(self, header: Header) -> None:
        if not 1 <= self.level <= 22:
            raise UsageError(f"zstd level {self.level} outside 1..22")


@dataclass(frozen=True)
class NoParams:
    """Parameters of a coder that has none (an empty byte string)."""

    def pack(self) -> bytes:
        return b""

    @classmethod
    def unpack(cls, data: bytes) -> NoParams:
        if data:
            raise UsageError(f"this coder takes no parameters, found {len(data)} bytes")
        return cls()

    def validate(self, header: Header) -> None:
        pass


class Coder:
    """Encodes / decodes the steps of one chunk.

    A coder instance serves one file. It sees the steps in order; coders with adaptive state reset it at
    segment starts (`header.gop`), so a chunk that starts a segment decodes on its own. Arrays of steps
    have shape (n, h, w) for tokens or (n, C, h, w) for latents.
    """

    name: ClassVar[str]
    coder_id: ClassVar[int]
    format_minor: ClassVar[int] = 0  # the format minor version that defines the coder (the writer's preamble)
    latent: ClassVar[bool] = False
    Params: ClassVar[type] = NoParams

    def __init__(self, header: Header, prior: Prior | None = None) -> None:
        self.header = header
        self.step_shape = header.step_shape
        self.values_per_step = int(np.prod(self.step_shape))

    def encode(self, steps: np.ndarray, first_step: int) -> bytes:
        raise NotImplementedError

    def decode(self, payload: bytes, first_step: int, n_steps: int) -> np.ndarray:
        raise NotImplementedError

    def check_range(self, values: np.ndarray) -> np.ndarray:
        """Raise CorruptError unless every decoded index is below the codebook size."""
        if values.size and int(values.max()) >= self.header.codebook_size:
            raise CorruptError(
                f"decoded token {int(values.max())} is outside the codebook of {self.header.codebook_size}"
            )
        return values
