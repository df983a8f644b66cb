"""Small helpers shared by the codec tests."""

from __future__ import annotations

import torch

from otok.codec import Tokenizer, get_config

QUANTIZER_VARIANTS = {
    "vq": {},
    "fsq": {"quantizer": "fsq", "fsq_levels": (8, 5, 5)},
    "lfq": {"quantizer": "lfq", "codebook_size": 512},
    "kl": {"quantizer": "kl"},
}


def tiny(quantizer: str = "vq", seed: int = 0, **changes) -> Tokenizer:
    """otok-tiny with another quantizer (or other config changes), seeded random init, eval mode."""
    config = get_config("otok-tiny").replace(**{**QUANTIZER_VARIANTS[quantizer], **changes})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Tokenizer(config).eval()


def random_video(batch: int, frames: int, height: int, width: int, seed: int = 1) -> torch.Tensor:
    """A smooth-ish random clip in [-1, 1]: noise plus a moving gradient, so steps are correlated."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(batch, 3, frames, height, width, generator=g) * 2 - 1
    ramp = torch.linspace(-1, 1, width).expand(height, width)
    motion = torch.stack([torch.roll(ramp, shifts=2 * t, dims=1) for t in range(frames)])
    return (0.6 * motion[None, None] + 0.4 * noise).clamp(-1, 1)
