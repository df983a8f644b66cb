"""Latent bottlenecks: VQ (factorized, l2-normalized), FSQ, LFQ and KL (Gaussian posterior).

Every quantizer maps encoder features z (..., in_dim) to codes (..., code_dim) that the decoder reads, and
(for the discrete ones) to integer indices with the invariant `codes_from_indices(indices) == codes`.
The forward pass is differentiable (straight-through where rounding is involved) and returns the
quantizer's own loss terms, already weighted by the config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import TokenizerConfig


@dataclass
class QuantizerOutput:
    codes: Tensor  # (..., code_dim), what the decoder consumes
    indices: Tensor | None  # (...) int64 for discrete quantizers, None for KL
    loss: Tensor  # scalar: the quantizer's weighted loss terms
    stats: dict[str, Tensor] = field(default_factory=dict)  # detached scalars for logging


def _entropy(p: Tensor, dim: int = -1) -> Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim)


def _usage_stats(indices: Tensor, codebook_size: int) -> dict[str, Tensor]:
    """Fraction of the codebook used in this batch and the perplexity of the index histogram."""
    counts = torch.bincount(indices.flatten(), minlength=codebook_size).float()
    p = counts / counts.sum().clamp_min(1)
    return {"usage": (counts > 0).float().mean(), "perplexity": torch.exp(_entropy(p))}


class VectorQuantizer(nn.Module):
    """Factorized VQ (Yu et al., ViT-VQGAN): codes live in a low-dimensional space, l2-normalized.

    The nearest code by cosine similarity is chosen; codebook loss ||sg(z) - q||^2 and commitment loss
    ||z - sg(q)||^2 train the codebook and the encoder; straight-through gradients reach the encoder.
    Codebook usage is kept high by `restart_dead_codes`, which the trainer calls.
    """

    discrete = True

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.codebook_size = config.codebook_size
        self.in_dim = self.code_dim = config.latent_dim
        self.codebook_weight = config.vq_codebook_weight
        self.commit_weight = config.vq_commit_weight
        self.embedding = nn.Parameter(torch.randn(config.codebook_size, config.latent_dim))
        # Exponential moving average of how often each code is picked (updated in training mode).
        self.register_buffer("usage_ema", torch.ones(config.codebook_size))

    def normalized_codebook(self) -> Tensor:
        return F.normalize(self.embedding, dim=-1)

    def nearest(self, z: Tensor, chunk: int = 1 << 24) -> Tensor:
        """Indices (N,) of the nearest normalized code for normalized z (N, d); bounded memory. Always in
        float32, also under bf16 autocast: near-ties between codes must not fall to bf16 rounding."""
        with torch.autocast(z.device.type, enabled=False):
            codebook = self.normalized_codebook().float()
            rows = max(1, chunk // self.codebook_size)
            return torch.cat([(part.float() @ codebook.t()).argmax(-1) for part in z.split(rows)])

    def codes_from_indices(self, indices: Tensor) -> Tensor:
        return F.embedding(indices, self.normalized_codebook())

    def forward(self, z: Tensor) -> QuantizerOutput:
        z = F.normalize(z, dim=-1)
        indices = self.nearest(z.reshape(-1, self.in_dim).detach()).reshape(z.shape[:-1])
        q = self.codes_from_indices(indices)
        if not torch.is_grad_enabled():
            return QuantizerOutput(q, indices, z.new_zeros(()), {})
        loss = self.codebook_weight * F.mse_loss(q, z.detach()) + self.commit_weight * F.mse_loss(z, q.detach())
        if self.training:
            counts = torch.bincount(indices.flatten(), minlength=self.codebook_size).float()
            self.usage_ema.mul_(0.99).add_(counts / counts.sum() * self.codebook_size, alpha=0.01)
        stats = _usage_stats(indices.detach(), self.codebook_size)
        return QuantizerOutput(z + (q - z).detach(), indices, loss, stats)

    @torch.no_grad()
    def restart_dead_codes(self, z: Tensor, threshold: float = 0.03, generator: torch.Generator | None = None) -> int:
        """Re-seed codes whose usage EMA fell below `threshold` x uniform with random encoder outputs.

        z: (..., latent_dim) recent encoder outputs (before normalization). Returns how many codes moved.
        """
        dead = (self.usage_ema < threshold).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        z = F.normalize(z.reshape(-1, self.in_dim).detach(), dim=-1)
        pick = torch.randint(0, z.shape[0], (dead.numel(),), generator=generator, device=z.device)
        self.embedding.data[dead] = z[pick].to(self.embedding.dtype)
        self.usage_ema[dead] = 1.0
        return int(dead.numel())


class FiniteScalarQuantizer(nn.Module):
    """FSQ (Mentzer et al., 2023): each of len(levels) channels is bounded and rounded to L_i values."""

    discrete = True

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        levels = torch.tensor(config.fsq_levels, dtype=torch.long)
        self.codebook_size = math.prod(config.fsq_levels)
        self.in_dim = self.code_dim = len(config.fsq_levels)
        basis = torch.cumprod(torch.cat([levels.new_ones(1), levels[:-1]]), 0)
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("basis", basis, persistent=False)

    def _bound(self, z: Tensor) -> Tensor:
        """Squash channel i into an interval holding exactly L_i integers after rounding."""
        levels = self.levels.to(z.dtype)
        half = (levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def codes_from_indices(self, indices: Tensor) -> Tensor:
        digits = (indices[..., None] // self.basis) % self.levels
        return ((digits - self.levels // 2).to(torch.float32) / (self.levels // 2)).to(torch.float32)

    def forward(self, z: Tensor) -> QuantizerOutput:
        bounded = self._bound(z)
        rounded = bounded + (torch.round(bounded) - bounded).detach()
        half_width = (self.levels // 2).to(z.dtype)
        codes = rounded / half_width
        digits = torch.round(bounded).long() + self.levels // 2
        indices = (digits * self.basis).sum(-1)
        stats = _usage_stats(indices.detach(), self.codebook_size) if torch.is_grad_enabled() else {}
        return QuantizerOutput(codes, indices, z.new_zeros(()), stats)


class LookupFreeQuantizer(nn.Module):
    """LFQ (MAGVIT-v2, Yu et al., 2023): each of log2(K) channels is its sign; the index is the bit pattern.

    The entropy penalty (low per-token entropy, high codebook entropy) is computed per bit, treating bits
    as independent (p(bit=1) = sigmoid(4 z / tau)), which keeps it exact in memory for 2^18 codes.
    """

    discrete = True

    def __init__(self, config: TokenizerConfig, temperature: float = 1.0) -> None:
        super().__init__()
        self.codebook_size = config.codebook_size
        self.in_dim = self.code_dim = int(round(math.log2(config.codebook_size)))
        self.entropy_weight = config.lfq_entropy_weight
        self.commit_weight = config.lfq_commit_weight
        self.temperature = temperature
        self.register_buffer("bit_values", 2 ** torch.arange(self.in_dim), persistent=False)

    def codes_from_indices(self, indices: Tensor) -> Tensor:
        bits = (indices[..., None] // self.bit_values) % 2
        return bits.to(torch.float32) * 2 - 1

    def forward(self, z: Tensor) -> QuantizerOutput:
        positive = z > 0
        hard = torch.where(positive, 1.0, -1.0).to(z.dtype)
        indices = (positive.long() * self.bit_values).sum(-1)
        if not torch.is_grad_enabled():
            return QuantizerOutput(hard, indices, z.new_zeros(()), {})
        p_one = torch.sigmoid(4 * z / self.temperature).reshape(-1, self.in_dim)
        two = torch.stack([p_one, 1 - p_one], -1)
        token_entropy = _entropy(two).sum(-1).mean()
        codebook_entropy = _entropy(two.mean(0)).sum()
        loss = self.entropy_weight * (token_entropy - codebook_entropy) + self.commit_weight * F.mse_loss(z, hard)
        stats = _usage_stats(indices.detach(), self.codebook_size) if self.codebook_size <= 1 << 20 else {}
        stats["codebook_entropy_bits"] = (codebook_entropy / math.log(2)).detach()
        return QuantizerOutput(z + (hard - z).detach(), indices, loss, stats)


class GaussianPosterior(nn.Module):
    """KL bottleneck: z -> (mean, log-variance); a sample in training mode, the mean otherwise."""

    discrete = False
    codebook_size = None

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.code_dim = config.latent_dim
        self.in_dim = 2 * config.latent_dim
        self.kl_weight = config.kl_weight

    def forward(self, z: Tensor) -> QuantizerOutput:
        mean, logvar = z.chunk(2, dim=-1)
        logvar = logvar.clamp(-30.0, 20.0)
        if self.training:
            codes = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        else:
            codes = mean
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1).mean()
        return QuantizerOutput(codes, None, self.kl_weight * kl, {"kl": kl.detach()})

    def codes_from_indices(self, indices: Tensor) -> Tensor:  # noqa: ARG002 - uniform interface
        raise TypeError("a KL model has continuous latents, not indices")


def build_quantizer(config: TokenizerConfig) -> nn.Module:
    return {
        "vq": VectorQuantizer,
        "fsq": FiniteScalarQuantizer,
        "lfq": LookupFreeQuantizer,
        "kl": GaussianPosterior,
    }[config.quantizer](config)
