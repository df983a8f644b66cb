"""The explicit streaming state: a fixed-size K/V cache per temporal layer.

The cache never grows: slot j of `temporal_window - 1` slots holds the step at distance
`temporal_window - 1 - j`; each step drops the oldest slot and appends itself, and `valid` marks slots
that hold a real step of the current segment. The same layout serves PyTorch, ONNX and TensorRT.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TemporalCache:
    keys: list[Tensor]  # per temporal layer: (B*h*w, heads, temporal_window-1, head_dim)
    values: list[Tensor]  # same shapes as keys
    valid: Tensor  # (temporal_window-1,) float, 1.0 where the slot holds a past step of this segment
    step: int = 0  # steps coded since the segment started; 0 means the next step is an image step

    @classmethod
    def empty(
        cls, layers: int, tokens: int, heads: int, head_dim: int, temporal_window: int,
        device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
    ) -> "TemporalCache":
        shape = (tokens, heads, temporal_window - 1, head_dim)
        return cls(
            keys=[torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)],
            values=[torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)],
            valid=torch.zeros(temporal_window - 1, device=device, dtype=dtype),
        )

    def advanced(self, keys: list[Tensor], values: list[Tensor]) -> "TemporalCache":
        """The cache after one more step whose K/V were appended (and oldest slots dropped)."""
        valid = torch.cat([self.valid[1:], self.valid.new_ones(1)])
        return TemporalCache(keys, values, valid, self.step + 1)

    def nbytes(self) -> int:
        tensors = [*self.keys, *self.values, self.valid]
        return sum(t.numel() * t.element_size() for t in tensors)
