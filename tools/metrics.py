"""Per-frame quality metrics on 8-bit RGB frames: PSNR and SSIM (Wang et al. 2004)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB of two (H, W, 3) uint8 frames, peak 255 (inf when identical)."""
    mse = np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).float()


_GAUSSIAN = _gaussian()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter of (C, 1, H, W)."""
    return F.conv2d(F.conv2d(x, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))


def ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Mean SSIM of two (H, W, 3) uint8 frames: 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03,
    computed per RGB channel over the valid region and averaged. Frames smaller than the window use a
    window of their size. (float32 with the means removed first: exact enough, and fast.)"""
    a = torch.from_numpy(reference).permute(2, 0, 1)[:, None].float()
    b = torch.from_numpy(decoded).permute(2, 0, 1)[:, None].float()
    g = _GAUSSIAN
    side = min(a.shape[-2:])
    if side < g.numel():
        g = _gaussian(side if side % 2 else max(side - 1, 1))
    offset = 0.5 * (a.mean() + b.mean())  # SSIM is shift-invariant; centring keeps float32 variances exact
    a, b = a - offset, b - offset
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = _blur(a, g), _blur(b, g)
    var_a = _blur(a * a, g) - mu_a**2
    var_b = _blur(b * b, g) - mu_b**2
    cov = _blur(a * b, g) - mu_a * mu_b
    # mu terms use the centred means: shift them back for the luminance term.
    ma, mb = mu_a + offset, mu_b + offset
    score = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (var_a + var_b + c2))
    return float(score.mean())
