"""The explicit streaming state: a bounded K/V cache per temporal layer.

The cache never grows: as a ring of `temporal_window - 1` slots, slot j holds the step at distance
`temporal_window - 1 - j`; each step drops the oldest slot and appends itself, and `valid` marks slots that
hold a real step of the current segment. The same layout serves PyTorch, ONNX and TensorRT (whose graphs take
the whole ring). In PyTorch the slots no step has filled yet (all zeros, the first `temporal_window - 1 -
filled` after a segment start) are not stored: `ring` gives them back as zeros, so attention sees exactly the
ring, and a photo's cache holds one slot, not four.

A tiled stream (`otok.codec.tiling`) keeps one cache per tile (`TiledCache`): temporal attention is per grid
position, so a tile's positions need only their own cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TemporalCache:
    keys: list[Tensor]  # per temporal layer: (B*h*w, heads, filled, head_dim), the filled slots of the ring
    values: list[Tensor]  # same shapes as keys
    valid: Tensor  # (temporal_window-1,) float, 1.0 where the slot holds a past step of this segment
    step: int = 0  # steps coded since the segment started; 0 means the next step is an image step

    @classmethod
    def empty(
        cls, layers: int, tokens: int, heads: int, head_dim: int, temporal_window: int,
        device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
    ) -> "TemporalCache":
        shape = (tokens, heads, 0, head_dim)  # no slot filled
        return cls(
            keys=[torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)],
            values=[torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)],
            valid=torch.zeros(temporal_window - 1, device=device, dtype=dtype),
        )

    def ring(self, layer: int) -> tuple[Tensor, Tensor]:
        """Keys and values of `layer` as the whole ring (B*h*w, heads, temporal_window-1, head_dim), zeros in the
        slots not filled (an expanded zero, no memory, while none is filled)."""
        slots = self.valid.shape[0]
        out = []
        for t in (self.keys[layer], self.values[layer]):
            missing = slots - t.shape[2]
            if missing:
                zeros = t.new_zeros(()).expand(t.shape[0], t.shape[1], missing, t.shape[3])
                t = zeros if missing == slots else torch.cat([zeros, t], dim=2)
            out.append(t)
        return out[0], out[1]

    def advanced(self, keys: list[Tensor], values: list[Tensor]) -> "TemporalCache":
        """The cache after one more step, from each layer's ring after it (oldest slot dropped, the step appended):
        its filled slots only, in tensors of their own (not views that would keep the step's larger ones)."""
        valid = torch.cat([self.valid[1:], self.valid.new_ones(1)])
        filled = min(self.step + 1, valid.shape[0])
        keep = [t[:, :, t.shape[2] - filled:].contiguous() for t in (*keys, *values)]
        return TemporalCache(keep[: len(keys)], keep[len(keys):], valid, self.step + 1)

    def nbytes(self) -> int:
        tensors = [*self.keys, *self.values, self.valid]
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class TiledCache:
    """The state of a tiled stream: one `TemporalCache` per tile, in the order of `Tiles.rects()`.

    A tiled step consumes it: it takes each tile's cache as it codes the tile (`take`), so the state before
    and after a step are never both held whole (at a full ring that is 256 B/px of otok-s per stream)."""

    tiles: list[TemporalCache | None]
    step: int = 0  # as TemporalCache.step

    def take(self, tile: int) -> TemporalCache:
        """Tile `tile`'s cache, released from this one; a step that was coded from this cache already took it."""
        cache = self.tiles[tile]
        if cache is None:
            raise ValueError("this TiledCache was consumed by the step coded from it; pass the cache that step returned")
        self.tiles[tile] = None
        return cache

    def nbytes(self) -> int:
        return sum(t.nbytes() for t in self.tiles if t is not None)
