"""`f16z` (id 3): KL latents as IEEE float16, byte planes split (all low bytes, then all high bytes), one
zstd frame per chunk. Lossless for float16 values; float32 input is rounded to nearest float16."""

from __future__ import annotations

import numpy as np

from .base import Coder, LevelParams
from .zstd import compress, decompressed_blocks

PLANE_BLOCK = 1 << 20  # bytes of a plane decompressed at a time


class Float16ZstdCoder(Coder):
    name = "f16z"
    coder_id = 3
    latent = True
    Params = LevelParams

    def encode(self, steps: np.ndarray, first_step: int) -> bytes:
        planes = np.ascontiguousarray(steps, dtype="<f2").view(np.uint8).reshape(-1, 2).T  # (2, N)
        return compress(np.ascontiguousarray(planes).tobytes(), self.header.coder_params.level)

    def decode(self, payload: bytes, first_step: int, n_steps: int) -> np.ndarray:
        count = n_steps * self.values_per_step
        values = np.empty(count, dtype="<f2")
        planes = values.view(np.uint8).reshape(count, 2)  # (N, 2): column 0 the low bytes, 1 the high
        with decompressed_blocks(payload, 2 * count) as read:  # the planes a block at a time, into place
            for plane in (0, 1):
                for i in range(0, count, PLANE_BLOCK):
                    n = min(PLANE_BLOCK, count - i)
                    planes[i:i + n, plane] = np.frombuffer(read(n), dtype=np.uint8)
        return values.view(np.float16).reshape((n_steps,) + self.step_shape)
