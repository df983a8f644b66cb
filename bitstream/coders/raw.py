"""`raw` (id 0): bit-packed indices, ceil(log2 K) bits each, steps in order, raster order in a step."""

from __future__ import annotations

import numpy as np

from .. import bitpack
from ..errors import CorruptError
from .base import Coder


class RawCoder(Coder):
    name = "raw"
    coder_id = 0

    @property
    def bits(self) -> int:
        return bitpack.bits_for(self.header.codebook_size)

    def encode(self, steps: np.ndarray, first_step: int) -> bytes:
        return bitpack.pack(steps, self.bits)

    def decode(self, payload: bytes, first_step: int, n_steps: int) -> np.ndarray:
        count = n_steps * self.values_per_step
        self.expect_size(len(payload), bitpack.packed_size(count, self.bits), "packed")
        values = bitpack.unpack(payload, self.bits, count, dtype=np.int64)
        return self.check_range(values).reshape((n_steps,) + self.step_shape)

    @staticmethod
    def expect_size(actual: int, expected: int, what: str) -> None:
        if actual != expected:
            raise CorruptError(f"{what} token data is {actual} bytes where the chunk needs {expected}")
