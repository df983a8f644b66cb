"""Per-frame quality metrics on 8-bit RGB frames: PSNR and SSIM (Wang et al. 2004)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB of two (H, W, 3) uint8 frames, peak 255 (inf when identical)."""
    mse = np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]  # (1, 1, size, size)


_WINDOW = _gaussian_window()


def ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Mean SSIM of two (H, W, 3) uint8 frames: 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03,
    computed per RGB channel over the valid region and averaged. Frames smaller than the window use a
    window of their size."""
    a = torch.from_numpy(reference).permute(2, 0, 1)[:, None].double()
    b = torch.from_numpy(decoded).permute(2, 0, 1)[:, None].double()
    window = _WINDOW
    side = min(a.shape[-2:])
    if side < window.shape[-1]:
        window = _gaussian_window(side if side % 2 else side - 1 or 1)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = F.conv2d(a, window), F.conv2d(b, window)
    var_a = F.conv2d(a * a, window) - mu_a**2
    var_b = F.conv2d(b * b, window) - mu_b**2
    cov = F.conv2d(a * b, window) - mu_a * mu_b
    score = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(score.mean())
