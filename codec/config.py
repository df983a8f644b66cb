"""Model configurations and the registry of named models.

A config is a frozen dataclass: it is stored (as JSON) inside every weights file and rebuilds the model
from nothing else. Register a new family member with `register(TokenizerConfig(name=..., ...))`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

QUANTIZERS = ("vq", "fsq", "lfq", "kl")


# The rate-distortion tolerance token models are encoded with by default (`otok.codec.rdo`; `otok encode
# --rdo`); its measured trade-off is in docs/BENCHMARKS.md. KL models use 0.
DEFAULT_RDO = 0.01


@dataclass(frozen=True)
class TokenizerConfig:
    """Everything that defines a tokenizer's architecture and its time layout.

    Geometry: frame 0 of a segment is cut into `patch`x`patch` patches (an image step); every following
    group of `tubelet` frames into `tubelet`x`patch`x`patch` tubes (a video step). Each step gives one
    (H/patch)x(W/patch) token grid. Every `gop` steps the temporal state resets (a segment).
    """

    name: str
    patch: int = 8
    tubelet: int = 4
    dim: int = 512
    heads: int = 8
    mlp_ratio: float = 4.0
    spatial_layers: int = 4  # window-attention blocks in the encoder (the decoder mirrors them)
    temporal_layers: int = 4  # causal temporal-attention blocks in the encoder (mirrored too)
    window: int = 8  # spatial attention window, in tokens (window x window)
    temporal_window: int = 5  # steps a temporal query sees: itself and up to temporal_window-1 past steps
    gop: int = 5  # steps per segment; the default covers a 17-frame training clip
    refine: int = 0  # channels of the decoder's per-frame pixel refinement after unpatchify; 0: none
    refine_blocks: int = 0  # residual half-resolution blocks in that refinement (0: one full-resolution pair)
    upsample: int = 0  # widest channels of the decoder's convolutional upsampling branch; 0: none
    tube_refine: int = 0  # channels of the decoder's refinement of each tube's frames together; 0: none
    quantizer: str = "vq"
    latent_dim: int = 8  # VQ code dimension / KL channels
    codebook_size: int = 8192  # VQ entries; for FSQ it is prod(fsq_levels), for LFQ 2**bits
    fsq_levels: tuple[int, ...] = field(default=())
    # Loss weights that belong to the quantizer (the paper's VQ uses lambda1 = lambda2 = 1).
    vq_codebook_weight: float = 1.0
    vq_commit_weight: float = 1.0
    lfq_entropy_weight: float = 0.1
    lfq_commit_weight: float = 0.25
    kl_weight: float = 1e-6

    def __post_init__(self) -> None:
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {self.quantizer!r}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.patch < 1 or self.tubelet < 1 or self.window < 1:
            raise ValueError("patch, tubelet and window must be positive")
        if self.temporal_window < 2:
            raise ValueError("temporal_window must be >= 2 (the current step and at least one past step)")
        if self.gop < 1:
            raise ValueError("gop must be >= 1")
        if min(self.refine, self.upsample, self.refine_blocks, self.tube_refine) < 0:
            raise ValueError("refine, refine_blocks, upsample and tube_refine must be >= 0")
        if self.refine_blocks and not self.refine:
            raise ValueError("refine_blocks needs refine channels")
        if (self.refine_blocks or self.tube_refine) and (self.patch * self.window) % 2:
            raise ValueError("refine_blocks and tube_refine need an even patch * window (frames are folded 2x2)")
        if self.upsample and self.patch & (self.patch - 1):
            raise ValueError(f"upsample needs a power-of-two patch, got {self.patch}")
        if self.quantizer == "fsq":
            if not self.fsq_levels or min(self.fsq_levels) < 2:
                raise ValueError("FSQ needs fsq_levels, each >= 2")
            object.__setattr__(self, "fsq_levels", tuple(int(v) for v in self.fsq_levels))
            object.__setattr__(self, "codebook_size", math.prod(self.fsq_levels))
        if self.quantizer == "lfq" and self.codebook_size & (self.codebook_size - 1):
            raise ValueError("LFQ codebook_size must be a power of two")

    @property
    def discrete(self) -> bool:
        """True when the model emits integer tokens (VQ, FSQ, LFQ), False for KL latents."""
        return self.quantizer != "kl"

    @property
    def pad_multiple(self) -> int:
        """Frames are padded to a multiple of this many pixels in H and W (a whole number of windows)."""
        return self.patch * self.window

    @property
    def frames_per_segment(self) -> int:
        return 1 + self.tubelet * (self.gop - 1)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TokenizerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config fields {unknown}; is this file from a newer otok?")
        data = dict(data)
        if "fsq_levels" in data:
            data["fsq_levels"] = tuple(data["fsq_levels"])
        return cls(**data)

    def replace(self, **changes) -> "TokenizerConfig":
        return dataclasses.replace(self, **changes)


_REGISTRY: dict[str, TokenizerConfig] = {}


def register(config: TokenizerConfig) -> TokenizerConfig:
    if config.name in _REGISTRY:
        raise ValueError(f"model {config.name!r} is already registered")
    _REGISTRY[config.name] = config
    return config


def get_config(name: str) -> TokenizerConfig:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def list_models() -> list[str]:
    return sorted(_REGISTRY)


# For tests: a 17-frame 64x64 clip encodes and decodes in well under a second on one core.
register(TokenizerConfig(
    name="otok-tiny", dim=32, heads=2, spatial_layers=2, temporal_layers=1, window=4,
    latent_dim=4, codebook_size=256,
))
# The default model: small enough to train in a few CPU hours.
register(TokenizerConfig(
    name="otok-s", dim=256, heads=4, spatial_layers=2, temporal_layers=2, window=8,
    latent_dim=8, codebook_size=8192, refine=32, refine_blocks=2,
))
# The paper's configuration (OmniTokenizer, Wang et al. 2024): ~53M parameters.
register(TokenizerConfig(name="otok-b"))
# Quantizer variants of the small model.
register(TokenizerConfig(
    name="otok-s-fsq", dim=256, heads=4, spatial_layers=2, temporal_layers=2, quantizer="fsq",
    fsq_levels=(8, 8, 8, 5, 5, 5),
))
register(TokenizerConfig(
    name="otok-s-lfq", dim=256, heads=4, spatial_layers=2, temporal_layers=2, quantizer="lfq",
    codebook_size=2**14,
))
register(TokenizerConfig(
    name="otok-s-kl", dim=256, heads=4, spatial_layers=2, temporal_layers=2, quantizer="kl", latent_dim=8,
    refine=32, refine_blocks=2,
))
