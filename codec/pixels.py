"""8-bit pixels <-> the model's value range: the one conversion every caller uses (CLI, tools, training)."""

from __future__ import annotations

import torch
from torch import Tensor


def from_uint8(pixels: Tensor) -> Tensor:
    """uint8 pixels (any shape) -> float32 in [-1, 1]: 0 -> -1, 255 -> 1."""
    return pixels.float().div_(127.5).sub_(1.0)


def to_uint8(video: Tensor) -> Tensor:
    """float in [-1, 1] (any shape) -> uint8, clamped and rounded: the inverse of `from_uint8`."""
    return video.float().clamp(-1, 1).add(1).mul_(127.5).round_().to(torch.uint8)
