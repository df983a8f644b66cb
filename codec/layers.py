"""Transformer building blocks: spatial window attention and causal temporal attention.

Tokens of one step are laid out as (B, h, w, D). Spatial blocks attend inside window x window tiles of
one step (Swin-style: odd blocks shift the tiles by half a window so neighbouring tiles exchange
information). Temporal blocks attend, at each grid position, from the current step to at most
`temporal_window - 1` past steps held in an explicit K/V cache (see `state.TemporalCache`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Added to attention logits of positions that must not be seen. Finite so that fp16 engines stay NaN-free;
# exp(-1e4) is exactly 0 in fp32, so a masked slot contributes nothing.
MASKED = -1e4
# CUDA's attention kernels refuse more than 65535 batch rows with a broadcast mask (seen with torch 2.11 on an
# H200: a 128 x 32 x 32 grid of temporal queries): larger batches are attended in chunks of this many rows.
CUDA_ATTENTION_ROWS = 32768


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, h, w, D) -> (B * h/window * w/window, window*window, D)."""
    b, h, w, d = x.shape
    x = x.reshape(b, h // window, window, w // window, window, d)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, d)


def window_merge(x: Tensor, window: int, b: int, h: int, w: int) -> Tensor:
    """Inverse of `window_partition`: (B * nW, window*window, D) -> (B, h, w, D)."""
    d = x.shape[-1]
    x = x.reshape(b, h // window, w // window, window, window, d)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, d)


def shifted_window_mask(h, w, window: int, shift_h, shift_w, device: torch.device) -> Tensor:
    """Additive mask (nW, window*window, window*window) for cyclically shifted windows.

    After rolling the grid by (-shift_h, -shift_w), a window at the bottom/right edge holds tokens from
    opposite sides of the frame; they are labelled by region and may attend only within their own region.
    """
    return window_region_mask(torch.arange(h, device=device), torch.arange(w, device=device), h, w, window,
                              shift_h, shift_w)


def window_region_mask(rows: Tensor, cols: Tensor, h, w, window: int, shift_h, shift_w) -> Tensor:
    """`shifted_window_mask` of the windows that rows x cols of the rolled grid hold (whole windows, in the
    rolled grid's coordinates): (nW of them, window*window, window*window), the same values."""
    region_r = (rows >= h - window).long() + (rows >= h - shift_h).long()
    region_c = (cols >= w - window).long() + (cols >= w - shift_w).long()
    region = (region_r[:, None] * 3 + region_c[None, :]).to(torch.float32)  # (h, w)
    region = window_partition(region[None, :, :, None], window)[..., 0]  # (nW, window*window)
    differs = region[:, :, None] != region[:, None, :]
    return differs.to(torch.float32) * MASKED


class WindowAttention(nn.Module):
    """Multi-head attention inside window x window tiles with a learned relative position bias."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads = heads
        self.window = window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_bias = nn.Parameter(torch.zeros(heads, (2 * window - 1) ** 2))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
        coords = coords.flatten(1)  # (2, window*window)
        rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # (2, n, n), each in [0, 2w-2]
        self.register_buffer("rel_index", rel[0] * (2 * window - 1) + rel[1], persistent=False)

    def position_bias(self) -> Tensor:
        """(heads, n, n) with n = window*window."""
        return self.rel_bias[:, self.rel_index]

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B*nW, n, D); mask: (nW, n, n) additive or None."""
        bw, n, d = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.position_bias()[None]  # (1, heads, n, n)
        if mask is not None:
            nw = mask.shape[0]
            bias = (bias + mask[:, None]).repeat(bw // nw, 1, 1, 1)  # (B*nW, heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B*nW, heads, n, hd)
        return self.proj(out.transpose(1, 2).reshape(bw, n, d))


class SpatialBlock(nn.Module):
    """Pre-norm transformer block with (optionally shifted) window attention over one step's grid."""

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: float, shifted: bool) -> None:
        super().__init__()
        self.window = window
        self.shift = window // 2 if shifted and window > 1 else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, h, w, D) with h, w multiples of the window."""
        b, h, w, _ = x.shape
        y = self.norm1(x)
        # Along an axis with a single window, shifting would only wrap the frame onto itself.
        shift_h = self.shift if h > self.window else 0
        shift_w = self.shift if w > self.window else 0
        mask = None
        if shift_h or shift_w:
            y = torch.roll(y, shifts=(-shift_h, -shift_w), dims=(1, 2))
            mask = shifted_window_mask(h, w, self.window, shift_h, shift_w, x.device).to(x.dtype)
        y = self.attn(window_partition(y, self.window), mask)
        y = window_merge(y, self.window, b, h, w)
        if shift_h or shift_w:
            y = torch.roll(y, shifts=(shift_h, shift_w), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class TemporalBlock(nn.Module):
    """Pre-norm block with causal attention over a sliding window of past steps.

    Per grid position, the query of the current step attends to the K/V cache of the last
    `temporal_window - 1` steps plus itself. Cache slot j holds the step at distance
    (temporal_window - 1 - j); the learned bias is indexed by that slot, i.e. by relative distance.
    """

    def __init__(self, dim: int, heads: int, temporal_window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.distance_bias = nn.Parameter(torch.zeros(heads, temporal_window))
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, keys: Tensor, values: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One step.

        x: (B, h, w, D); keys, values: (B*h*w, heads, temporal_window-1, hd) cache of past steps;
        valid: (temporal_window-1,) 1.0 where a cache slot holds a real past step.
        Returns the new x and the shifted caches (oldest slot dropped, this step appended).
        """
        b, h, w, d = x.shape
        n = b * h * w
        q, k, v = self.qkv(self.norm1(x)).reshape(n, 1, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        all_k = torch.cat([keys, k], dim=2)  # (n, heads, W, hd)
        all_v = torch.cat([values, v], dim=2)
        seen = torch.cat([valid, valid.new_ones(1)])  # (W,)
        bias = self.distance_bias + (1.0 - seen) * MASKED  # (heads, W)
        out = attend(q, all_k, all_v, bias[None, :, None, :].to(q.dtype))
        x = x + self.proj(out.reshape(b, h, w, d))
        x = x + self.mlp(self.norm2(x))
        return x, all_k[:, :, 1:], all_v[:, :, 1:]

    def forward_clip(self, x: Tensor, distance: Tensor) -> Tensor:
        """Every step of a clip at once (the training pass): the same attention as `forward` step after step.

        x: (S, N, D), S steps of N grid positions; distance: (S, S) int64, how many steps step i lies after
        step j where i may attend to j (0 <= distance < temporal_window, same segment), -1 where it may not
        (`causal_distances`).
        """
        steps, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(steps, n, 3, self.heads, d // self.heads).permute(2, 1, 3, 0, 4)
        slot = (self.distance_bias.shape[1] - 1 - distance).clamp(max=self.distance_bias.shape[1] - 1)
        bias = torch.where(distance >= 0, self.distance_bias[:, slot], MASKED)  # (heads, S, S)
        out = attend(q, k, v, bias[None].to(q.dtype))  # (N, heads, S, hd)
        x = x + self.proj(out.permute(2, 0, 1, 3).reshape(steps, n, d))
        return x + self.mlp(self.norm2(x))


def causal_distances(steps: Tensor, segments: Tensor, temporal_window: int) -> Tensor:
    """(S, S) int64: for steps[i] and steps[j] (step indices, in any order), steps[i] - steps[j] where step i
    sees step j through the cache (same segment, 0 <= distance < temporal_window), else -1. segments: (S,) the
    segment of each."""
    distance = steps[:, None] - steps[None, :]
    seen = (segments[:, None] == segments[None, :]) & (distance >= 0) & (distance < temporal_window)
    return torch.where(seen, distance, -1)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """Scaled dot-product attention of rows (N, heads, L, hd) under an additive mask broadcast over N."""
    if q.is_cuda and q.shape[0] > CUDA_ATTENTION_ROWS:  # rows are independent: chunks give the same result
        return torch.cat([F.scaled_dot_product_attention(*parts, attn_mask=mask) for parts in
                          zip(q.split(CUDA_ATTENTION_ROWS), k.split(CUDA_ATTENTION_ROWS), v.split(CUDA_ATTENTION_ROWS))])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def init_weights(module: nn.Module) -> None:
    """Truncated-normal(0.02) linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)

