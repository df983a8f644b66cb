"""`f16z` (id 3): KL latents as IEEE float16, byte planes split (all low bytes, then all high bytes), one
zstd frame per chunk. Lossless for float16 values; float32 input is rounded to nearest float16."""

from __future__ import annotations

import numpy as np

from .base import Coder, LevelParams
from .zstd import compress, decompress


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
        planes = np.frombuffer(decompress(payload, 2 * count), dtype=np.uint8).reshape(2, count)
        values = np.ascontiguousarray(planes.T).view("<f2").reshape((n_steps,) + self.step_shape)
        return values.astype(np.float16)
