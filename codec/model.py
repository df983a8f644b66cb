"""The OmniTokenizer-style tokenizer: patch/tube embedding, spatial and causal temporal transformers,
a quantizer, and a mirrored decoder ending in linear projections to pixels (and optionally a small
convolutional refinement across patch borders).

Inference runs one step at a time through `encode_step` / `decode_step` with an explicit `TemporalCache`;
whole-clip `encode`/`decode` and the streaming classes go through those two functions, so streamed tokens
equal whole-clip tokens by construction. Training (`Tokenizer.forward`) runs every step of a clip at once, as
a transformer trains in parallel and generates step by step: the spatial blocks over all steps' grids in one
batch, the temporal blocks under a causal mask equal to the cache's sliding window and segment resets
(`layers.causal_distances`). The tests hold the two passes equal, outputs and gradients.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import TokenizerConfig
from .layers import SpatialBlock, TemporalBlock, causal_distances, init_weights
from .quantizers import QuantizerOutput, build_quantizer
from .rdo import choose_clip_tokens
from .state import TemporalCache, TiledCache
from .tiling import Tiles, pixel_crops, spatial_block
from .timeline import frames_in_steps, is_segment_start, num_steps, step_start_frame


def patchify(pixels: Tensor, patch: int) -> Tensor:
    """(B, 3, n, H, W) -> (B, H/p, W/p, 3*n*p*p): one vector per p x p patch (n = 1) or tube."""
    b, c, n, height, width = pixels.shape
    x = pixels.reshape(b, c, n, height // patch, patch, width // patch, patch)
    return x.permute(0, 3, 5, 1, 2, 4, 6).reshape(b, height // patch, width // patch, c * n * patch * patch)


def unpatchify(x: Tensor, patch: int, frames: int) -> Tensor:
    """Inverse of `patchify`: (B, h, w, 3*n*p*p) -> (B, 3, n, h*p, w*p)."""
    b, h, w, _ = x.shape
    x = x.reshape(b, h, w, 3, frames, patch, patch)
    return x.permute(0, 3, 4, 1, 5, 2, 6).reshape(b, 3, frames, h * patch, w * patch)


def patchify_steps(video: Tensor, frames: Tensor, patch: int) -> Tensor:
    """The steps whose frames `frames` (N, n) index in video (B, 3, T, H, W) -> (N*B, H/p, W/p, 3*n*p*p), step-major:
    `patchify` of each step, in one copy."""
    b, c, _, height, width = video.shape
    steps, n = frames.shape
    h, w = height // patch, width // patch
    x = video[:, :, frames.flatten()].reshape(b, c, steps, n, h, patch, w, patch)
    return x.permute(2, 0, 4, 6, 1, 3, 5, 7).reshape(steps * b, h, w, c * n * patch * patch)


@dataclass(frozen=True)
class ClipLayout:
    """Where the steps of a clip sit, for the parallel training pass. The pass holds a clip's steps grouped:
    its image steps (segment starts) first, then its tube steps, each group in time order, so that each group
    is embedded and decoded as one batch without gathering; attention does not depend on the order of its
    keys, and `distance` is laid out in the same order."""

    images: int  # how many image steps: the first `images` of the grouped steps
    image_frames: Tensor  # (images, 1): the frame of each image step
    tube_frames: Tensor  # (S - images, t): the frames of each tube step
    distance: Tensor  # (S, S) int64 over the grouped steps, `layers.causal_distances`
    grouped: Tensor  # (S,): the steps in grouped order (the first `images` are the segment starts)
    in_time: Tensor  # (S,): for step s (in time order), its place among the grouped steps
    frame_order: Tensor  # (T,): for frame f, its place in [image steps' frames..., tube steps' frames...]

    @classmethod
    @functools.lru_cache(maxsize=64)  # a training run has a few clip shapes: built once each, not every step
    def of(cls, steps: int, gop: int, tubelet: int, temporal_window: int, device: torch.device) -> "ClipLayout":
        starts = [is_segment_start(s, gop) for s in range(steps)]
        grouped = torch.tensor([s for s in range(steps) if starts[s]] + [s for s in range(steps) if not starts[s]])
        first = torch.tensor([step_start_frame(s, gop, tubelet) for s in grouped.tolist()])
        images = sum(starts)
        tube_frames = first[images:, None] + torch.arange(tubelet)
        segments = torch.tensor(starts).cumsum(0)[grouped]
        distance = causal_distances(grouped, segments, temporal_window)
        frame_order = torch.argsort(torch.cat([first[:images], tube_frames.flatten()]))
        tensors = first[:images, None], tube_frames, distance, grouped, torch.argsort(grouped), frame_order
        return cls(images, *(t.to(device=device, dtype=torch.int64) for t in tensors))


def run_temporal_clip(blocks: nn.ModuleList, x: Tensor, distance: Tensor) -> Tensor:
    """x (S, B, h, w, D) through the temporal blocks, every step at once."""
    steps, b, h, w, d = x.shape
    y = x.reshape(steps, b * h * w, d)
    for block in blocks:
        y = block.forward_clip(y, distance)
    return y.reshape(x.shape)


class Encoder(nn.Module):
    """Pixels of one step -> pre-quantization features, through spatial then temporal blocks."""

    def __init__(self, config: TokenizerConfig, out_dim: int) -> None:
        super().__init__()
        c, p, t, d = config, config.patch, config.tubelet, config.dim
        self.embed_image = nn.Linear(3 * p * p, d)
        self.embed_tube = nn.Linear(3 * t * p * p, d)
        self.spatial = nn.ModuleList(
            SpatialBlock(d, c.heads, c.window, c.mlp_ratio, shifted=i % 2 == 1) for i in range(c.spatial_layers)
        )
        self.temporal = nn.ModuleList(
            TemporalBlock(d, c.heads, c.temporal_window, c.mlp_ratio) for _ in range(c.temporal_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.to_latent = nn.Linear(d, out_dim)
        self.patch = p

    def step(self, pixels: Tensor, cache: TemporalCache | TiledCache,
             tiles: Tiles | None = None) -> tuple[Tensor, TemporalCache | TiledCache]:
        """pixels: (B, 3, 1, H, W) at a segment start, else (B, 3, t, H, W) -> ((B, h, w, out_dim), cache).
        tiles: compute tile by tile (`otok.codec.tiling`; cache is then a TiledCache): the same features."""
        embed = self.embed_image if cache.step == 0 else self.embed_tube
        if tiles is not None:
            return self.step_tiles(embed, pixels, cache, tiles)
        x = embed(patchify(pixels, self.patch))
        for block in self.spatial:
            x = block(x)
        x, cache = run_temporal(self.temporal, x, cache)
        return self.to_latent(self.norm(x)), cache

    def step_tiles(self, embed: nn.Linear, pixels: Tensor, cache: TiledCache, tiles: Tiles) -> tuple[Tensor, TiledCache]:
        """`step` tile by tile: per-token layers on each tile's tokens, window attention window by window."""
        p = self.patch
        x = pixels.new_empty(pixels.shape[0], *tiles.grid, embed.out_features)
        for r0, r1, c0, c1 in tiles.rects():
            x[:, r0:r1, c0:c1] = embed(patchify(pixels[..., r0 * p : r1 * p, c0 * p : c1 * p], p))
        for block in self.spatial:
            x = spatial_block(block, x, tiles)
        out = x.new_empty(*x.shape[:3], self.to_latent.out_features)
        caches = []
        for i, (r0, r1, c0, c1) in enumerate(tiles.rects()):
            y, tile_cache = run_temporal(self.temporal, x[:, r0:r1, c0:c1].contiguous(), cache.take(i))
            out[:, r0:r1, c0:c1] = self.to_latent(self.norm(y))
            caches.append(tile_cache)
        return out, TiledCache(caches, cache.step + 1)

    def forward_clip(self, video: Tensor, layout: ClipLayout) -> Tensor:
        """Padded pixels (B, 3, T, Hp, Wp) of whole steps -> features (S, B, h, w, out_dim) of the steps grouped
        as `layout` holds them, every step at once."""
        x = self.embed_image(patchify_steps(video, layout.image_frames, self.patch))  # (S*B, h, w, D)
        if len(layout.tube_frames):
            x = torch.cat([x, self.embed_tube(patchify_steps(video, layout.tube_frames, self.patch))])
        for block in self.spatial:
            x = block(x)
        x = run_temporal_clip(self.temporal, x.reshape(-1, video.shape[0], *x.shape[1:]), layout.distance)
        return self.to_latent(self.norm(x))


class PixelRefine(nn.Module):
    """A residual convolutional filter over each decoded frame, across patch borders: the per-patch linear heads
    decode every patch on its own, and this lets neighbouring patches agree (a learned deblocking filter). It
    sees only the current step's frames, so streaming stays exact.

    A full-resolution 3x3 -> GELU -> 3x3 pair (5 px of context), then, with blocks > 0, a wide pass: the frame
    folded 2x2 into 12 channels and filtered at half resolution by `blocks` residual 3x3 pairs, so each pixel
    sees a window of about 8 * blocks + 13 px, more than a patch on every side. Each pass ends in a convolution that starts at
    zero: a model gains the filter, or its wide pass, as the identity and learns from there."""

    def __init__(self, channels: int, blocks: int = 0) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, channels, 3, padding=1)
        self.conv_out = nn.Conv2d(channels, 3, 3, padding=1)
        self.wide_in = nn.Conv2d(12, channels, 3, padding=1) if blocks else None
        self.wide_blocks = residual_pairs(channels, blocks)
        self.wide_out = nn.Conv2d(channels, 12, 3, padding=1) if blocks else None
        for last in (self.conv_out, self.wide_out):
            if last is not None:
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)

    def forward(self, video: Tensor) -> Tensor:
        """(B, 3, n, H, W) -> same shape."""
        b, c, n, height, width = video.shape
        frames = self.filter(video.transpose(1, 2).reshape(b * n, c, height, width))
        return frames.reshape(b, n, c, height, width).transpose(1, 2)

    def filter(self, frames: Tensor) -> Tensor:
        """(N, 3, H, W) -> the filtered frames."""
        frames = self.pair(frames)
        return frames if self.wide_in is None else self.wide(frames)

    def pair(self, frames: Tensor) -> Tensor:
        """The full-resolution 3x3 pair alone: (N, 3, H, W) -> same shape."""
        frames = frames.contiguous(memory_format=torch.channels_last)  # faster convolutions on CPUs
        return frames + self.conv_out(F.gelu(self.conv_in(frames)))

    def wide(self, frames: Tensor) -> Tensor:
        """The wide pass alone, on the pair's output: (N, 3, H, W) -> same shape."""
        y = self.wide_in(F.pixel_unshuffle(frames, 2))
        for block in self.wide_blocks:
            y = y + block(y)
        return frames + F.pixel_shuffle(self.wide_out(F.gelu(y)), 2)


class TubeRefine(nn.Module):
    """A residual filter over the frames of one tube together, so that a video step's frames can differ where
    the motion inside the tube needs them to: the tube's t frames stacked as 3t channels, folded 2x2 and
    filtered at half resolution by `blocks` residual 3x3 pairs (each pixel sees about 8 * blocks + 12 px of
    every frame of its tube). Image steps do not pass through it. It sees only the current step, so
    streaming stays exact; its last convolution starts at zero, so a model gains it as the identity."""

    def __init__(self, frames: int, channels: int, blocks: int = 2) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(12 * frames, channels, 3, padding=1)
        self.blocks = residual_pairs(channels, blocks)
        self.conv_out = nn.Conv2d(channels, 12 * frames, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, tubes: Tensor) -> Tensor:
        """(B, 3, t, H, W) -> same shape."""
        b, c, t, height, width = tubes.shape
        x = tubes.reshape(b, c * t, height, width).contiguous(memory_format=torch.channels_last)
        y = self.conv_in(F.pixel_unshuffle(x, 2))
        for block in self.blocks:
            y = y + block(y)
        return tubes + F.pixel_shuffle(self.conv_out(F.gelu(y)), 2).reshape(tubes.shape)


def residual_pairs(channels: int, blocks: int) -> nn.ModuleList:
    """`blocks` residual bodies GELU -> 3x3 -> GELU -> 3x3 of `channels` channels."""
    return nn.ModuleList(
        nn.Sequential(nn.GELU(), nn.Conv2d(channels, channels, 3, padding=1), nn.GELU(),
                      nn.Conv2d(channels, channels, 3, padding=1))
        for _ in range(blocks)
    )


class UpsampleHead(nn.Module):
    """Token features -> pixels through convolutions that double the resolution log2(patch) times, so every
    pixel is computed from neighbouring tokens too, not from its own patch alone. A residual branch beside
    the linear heads: its last convolution starts at zero, so a model gains it as the identity.

    A step's features (B, h, w, D) are first expanded per frame (1 for an image step, `tubelet` for a video
    step: each frame of a tube gets its own features), then upsampled frame by frame; it sees only the
    current step, so streaming stays exact."""

    def __init__(self, dim: int, patch: int, tubelet: int, channels: int) -> None:
        super().__init__()
        doublings = patch.bit_length() - 1
        if patch != 1 << doublings:
            raise ValueError(f"upsample needs a power-of-two patch, got {patch}")
        widths = [max(8, channels >> i) for i in range(doublings + 1)]
        self.expand_image = nn.Linear(dim, widths[0])
        self.expand_tube = nn.Linear(dim, tubelet * widths[0])
        self.ups = nn.ModuleList(nn.Conv2d(a, 4 * b, 3, padding=1) for a, b in zip(widths, widths[1:]))
        self.conv_out = nn.Conv2d(widths[-1], 3, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor, frames: int) -> Tensor:
        """x (B, h, w, D) -> (B, 3, frames, h*patch, w*patch)."""
        b, h, w, _ = x.shape
        y = (self.expand_image if frames == 1 else self.expand_tube)(x)
        y = y.reshape(b, h, w, frames, -1).permute(0, 3, 4, 1, 2).reshape(b * frames, -1, h, w)
        for conv in self.ups:
            y = F.pixel_shuffle(conv(F.gelu(y)), 2)
        y = self.conv_out(F.gelu(y))
        return y.reshape(b, frames, 3, y.shape[-2], y.shape[-1]).transpose(1, 2)


class Decoder(nn.Module):
    """Codes of one step -> pixels, through temporal then spatial blocks (the encoder mirrored)."""

    def __init__(self, config: TokenizerConfig, in_dim: int) -> None:
        super().__init__()
        c, p, t, d = config, config.patch, config.tubelet, config.dim
        self.from_latent = nn.Linear(in_dim, d)
        self.temporal = nn.ModuleList(
            TemporalBlock(d, c.heads, c.temporal_window, c.mlp_ratio) for _ in range(c.temporal_layers)
        )
        self.spatial = nn.ModuleList(
            SpatialBlock(d, c.heads, c.window, c.mlp_ratio, shifted=i % 2 == 1) for i in range(c.spatial_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.head_image = nn.Linear(d, 3 * p * p)
        self.head_tube = nn.Linear(d, 3 * t * p * p)
        self.upsample = UpsampleHead(d, p, t, c.upsample) if c.upsample else None
        self.refine = PixelRefine(c.refine, c.refine_blocks) if c.refine else None
        self.tube_refine = TubeRefine(t, c.tube_refine) if c.tube_refine else None
        self.patch, self.tubelet = p, t

    def step(self, codes: Tensor, cache: TemporalCache | TiledCache,
             tiles: Tiles | None = None) -> tuple[Tensor, TemporalCache | TiledCache]:
        """codes: (B, h, w, in_dim) -> ((B, 3, 1 or t, H, W), cache).
        tiles: compute tile by tile (`otok.codec.tiling`; cache is then a TiledCache): the same pixels."""
        image = cache.step == 0
        if tiles is not None:
            return self.step_tiles(codes, cache, tiles, image)
        x, cache = run_temporal(self.temporal, self.from_latent(codes), cache)
        for block in self.spatial:
            x = block(x)
        return self.to_pixels(x, image), cache

    def step_tiles(self, codes: Tensor, cache: TiledCache, tiles: Tiles, image: bool) -> tuple[Tensor, TiledCache]:
        """`step` tile by tile: per-token layers on each tile's tokens, window attention window by window, the
        pixel stage on each tile's tokens and their halo (`tiling.pixel_halo`), keeping the tile's pixels."""
        x = codes.new_empty(*codes.shape[:3], self.from_latent.out_features)
        caches = []
        for i, (r0, r1, c0, c1) in enumerate(tiles.rects()):
            codes_tile = codes[:, r0:r1, c0:c1].contiguous()
            y, tile_cache = run_temporal(self.temporal, self.from_latent(codes_tile), cache.take(i))
            x[:, r0:r1, c0:c1] = y
            caches.append(tile_cache)
        for block in self.spatial:
            x = spatial_block(block, x, tiles)
        p, (h, w) = self.patch, tiles.grid
        out = x.new_empty(x.shape[0], 3, 1 if image else self.tubelet, h * p, w * p)
        for (r0, r1, c0, c1), (a0, a1, b0, b1) in pixel_crops(tiles):
            pixels = self.to_pixels(x[:, a0:a1, b0:b1].contiguous(), image)
            out[..., r0 * p : r1 * p, c0 * p : c1 * p] = pixels[..., (r0 - a0) * p : (r1 - a0) * p,
                                                                  (c0 - b0) * p : (c1 - b0) * p]
        return out, TiledCache(caches, cache.step + 1)

    def forward_clip(self, codes: Tensor, layout: ClipLayout) -> Tensor:
        """Codes (S, B, h, w, in_dim) of a clip's steps grouped as `layout` holds them -> padded pixels
        (B, 3, T, Hp, Wp), every step at once."""
        x = run_temporal_clip(self.temporal, self.from_latent(codes), layout.distance)
        steps, b, h, w, d = x.shape
        x = x.reshape(steps * b, h, w, d)
        for block in self.spatial:
            x = block(x)
        x = self.norm(x).reshape(steps, b, h, w, d)
        groups = ((x[: layout.images], True), (x[layout.images :], False))  # image steps, then tube steps
        parts = [self.refined(self.unrefined_pixels(group.flatten(0, 1), image), image) for group, image in groups
                 if len(group)]  # each (N*B, 3, n, Hp, Wp)
        frames = torch.cat([part.unflatten(0, (-1, b)).permute(0, 3, 1, 2, 4, 5).flatten(0, 1) for part in parts])
        return frames.index_select(0, layout.frame_order).permute(1, 2, 0, 3, 4)  # (B, 3, T, Hp, Wp) in time order

    def to_pixels(self, x: Tensor, image: bool) -> Tensor:
        """The last features of a step (B, h, w, D) -> its frames (B, 3, 1 or t, H, W): the linear head, plus
        the upsampling branch and the refinements when the model has them."""
        return self.refined(self.unrefined_pixels(self.norm(x), image), image)

    def refined(self, pixels: Tensor, image: bool) -> Tensor:
        """Decoded steps (B, 3, 1 or t, H, W) through the refinements the model has: per frame, then (tube
        steps) the tube's frames together."""
        pixels = pixels if self.refine is None else self.refine(pixels)
        return pixels if image or self.tube_refine is None else self.tube_refine(pixels)

    def unrefined_pixels(self, x: Tensor, image: bool) -> Tensor:
        """The normalized last features of a step (B, h, w, D) -> its frames (B, 3, 1 or t, H, W) before the
        refinement: the linear head, plus the upsampling branch when the model has it."""
        frames = 1 if image else self.tubelet
        pixels = unpatchify((self.head_image if image else self.head_tube)(x), self.patch, frames)
        return pixels if self.upsample is None else pixels + self.upsample(x, frames)


def run_temporal(blocks: nn.ModuleList, x: Tensor, cache: TemporalCache) -> tuple[Tensor, TemporalCache]:
    keys, values = [], []
    for i, block in enumerate(blocks):
        x, k, v = block(x, *cache.ring(i), cache.valid)
        keys.append(k)
        values.append(v)
    return x, cache.advanced(keys, values)


@dataclass
class TokenizerOutput:
    """What the training forward pass returns."""

    reconstruction: Tensor  # (B, 3, T, H, W), same shape as the input
    quantizer_loss: Tensor  # scalar, already weighted
    latents: list[Tensor]  # per step (B, h, w, in_dim): encoder features before quantization
    stats: dict[str, Tensor] = field(default_factory=dict)


class Tokenizer(nn.Module):
    """Video <-> token grids. Build with `otok.codec.load`; see the package docstring for the API."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        self.quantizer = build_quantizer(config)
        self.encoder = Encoder(config, self.quantizer.in_dim)
        self.decoder = Decoder(config, self.quantizer.code_dim)
        self.weights_path: Path | None = None  # set by `load` for a model read from a file
        self.apply(init_weights)

    # ----- geometry -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.decoder.head_image.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.head_image.weight.dtype

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """Frames are padded (edge-replicated) to these pixels before coding and cropped after."""
        m = self.config.pad_multiple
        return -(-height // m) * m, -(-width // m) * m

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of the token grid for frames of height x width."""
        ph, pw = self.padded_size(height, width)
        return ph // self.config.patch, pw // self.config.patch

    def new_cache(self, batch: int, height: int, width: int,
                  tiles: Tiles | None = None) -> TemporalCache | TiledCache:
        """An empty cache (segment start) for one encoder or decoder stream (tiles: one cache per tile)."""
        c = self.config
        h, w = self.grid_size(height, width)
        sizes = [h * w] if tiles is None else [(r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in tiles.rects()]
        caches = [TemporalCache.empty(c.temporal_layers, batch * n, c.heads, c.dim // c.heads, c.temporal_window,
                                      self.device, self.dtype) for n in sizes]
        return caches[0] if tiles is None else TiledCache(caches)  # step 0

    # ----- one step ------------------------------------------------------------------------------
    def encode_step(self, pixels: Tensor, cache: TemporalCache | TiledCache,
                    tiles: Tiles | None = None) -> tuple[QuantizerOutput, TemporalCache | TiledCache]:
        """Padded pixels of one step (B, 3, 1|t, Hp, Wp) -> quantized step (codes (B, h, w, C), indices).
        tiles: compute tile by tile (`otok.codec.tiling`), the same tokens."""
        features, cache = self.encoder.step(pixels.to(self.dtype), cache, *(() if tiles is None else (tiles,)))
        return self.quantizer(features), cache

    def decode_step(self, codes: Tensor, cache: TemporalCache | TiledCache,
                    tiles: Tiles | None = None) -> tuple[Tensor, TemporalCache | TiledCache]:
        """Codes (B, h, w, C) -> padded pixels (B, 3, 1|t, Hp, Wp). tiles: as `encode_step`."""
        return self.decoder.step(codes.to(self.dtype), cache, *(() if tiles is None else (tiles,)))

    def codes_from_tokens(self, tokens: Tensor) -> Tensor:
        """A token grid (B, h, w) int64, or KL latents (B, C, h, w) -> decoder codes (B, h, w, C)."""
        if self.config.discrete:
            return self.quantizer.codes_from_indices(tokens)
        return tokens.permute(0, 2, 3, 1)

    # ----- whole clips ---------------------------------------------------------------------------
    def stream_encoder(self, batch: int = 1, height: int | None = None, width: int | None = None,
                       gop: int | None = None, rdo: float = 0.0, tile: int | None = None):
        """Frames in, token grids out (`StreamEncoder`). tile: code each frame in tiles of about this many pixels
        a side (`otok.codec.tiling`: the same tokens, bounded memory); 0: untiled; None: `choose_tile`'s."""
        from .streaming import StreamEncoder

        return StreamEncoder(self, batch, height, width, self.config.gop if gop is None else gop, rdo, tile)

    def stream_decoder(self, batch: int = 1, height: int | None = None, width: int | None = None,
                       gop: int | None = None, tile: int | None = None):
        """Token grids in, frames out (`StreamDecoder`). tile: as `stream_encoder` (the same pixels, within float
        rounding)."""
        from .streaming import StreamDecoder

        return StreamDecoder(self, batch, height, width, self.config.gop if gop is None else gop, tile)

    @torch.no_grad()
    def encode(self, video: Tensor, gop: int | None = None, rdo: float = 0.0, tile: int | None = None) -> Tensor:
        """video (B, 3, T, H, W) float in [-1, 1] -> tokens (B, S, h, w) int64 (KL: latents (B, S, C, h, w)).

        S = num_steps(T): 1 + ceil((T-1)/4) per segment of `gop` steps. rdo: rate-distortion tolerance
        (`otok.codec.rdo`); 0 gives the nearest codes. tile: see `stream_encoder` (the same tokens for any).
        """
        check_video(video, self.config.patch, check_values=False)  # push checks the values
        b, _, _, height, width = video.shape
        stream = self.stream_encoder(b, height, width, gop, rdo, tile)
        return torch.stack(stream.push(video) + stream.flush(), dim=1)

    @torch.no_grad()
    def decode(
        self, tokens: Tensor, frames: int | None = None, height: int | None = None, width: int | None = None,
        gop: int | None = None, tile: int | None = None,
    ) -> Tensor:
        """tokens (B, S, h, w) (KL: (B, S, C, h, w)) -> video (B, 3, T, H, W) in about [-1, 1].

        frames: the true frame count (drops the padding of a short last group); default: every decoded
        frame. height, width: the source size to crop to; default: the padded size h*p x w*p. tile: see
        `stream_decoder`.
        """
        gop = self.config.gop if gop is None else gop
        tokens = as_tokens(tokens)
        expected = 4 if self.config.discrete else 5
        if tokens.dim() != expected:
            raise ValueError(f"expected tokens of rank {expected}, got shape {tuple(tokens.shape)}")
        b, steps = tokens.shape[:2]
        h, w = tokens.shape[-2:]
        p = self.config.patch
        height, width = height or h * p, width or w * p
        if self.grid_size(height, width) != (h, w):
            raise ValueError(f"a {h}x{w} token grid does not code {width}x{height} frames")
        total = frames_in_steps(steps, gop, self.config.tubelet)
        frames = total if frames is None else frames
        if steps == 0 or num_steps(frames, gop, self.config.tubelet) != steps:
            raise ValueError(f"{steps} token steps cannot hold {frames} frames (gop {gop})")
        stream = self.stream_decoder(b, height, width, gop, tile)
        parts = [stream.push(tokens[:, s]) for s in range(steps)]
        video = parts[0] if steps == 1 else torch.cat(parts, dim=2)
        return video[:, :, :frames]

    def forward(self, video: Tensor, gop: int | None = None, rdo: float = 0.0) -> TokenizerOutput:
        """Training pass: encode, quantize (straight-through) and decode a clip (B, 3, T, H, W), every step at
        once. The same outputs and gradients as `forward_stepwise` (the step path), within float rounding;
        the quantizer sees the clip's steps together (its usage statistics and LFQ's codebook entropy are the
        clip's, not averages over steps).

        rdo: decode the tokens `otok.codec.rdo` chooses at this tolerance (what `otok encode` codes), with
        straight-through codes, so the decoder learns from them; 0: the nearest codes."""
        check_video(video, self.config.patch, check_values=False)  # the training loaders make the values
        c = self.config
        gop = c.gop if gop is None else gop
        if rdo and not c.discrete:
            raise ValueError("rdo applies to discrete tokens; a KL model's latents are not chosen from a codebook")
        b, _, frames, height, width = video.shape
        steps = num_steps(frames, gop, c.tubelet)
        layout = ClipLayout.of(steps, gop, c.tubelet, c.temporal_window, self.device)
        padded = pad_frames(video.to(self.device, self.dtype), *self.padded_size(height, width))
        missing = frames_in_steps(steps, gop, c.tubelet) - frames  # a short last group repeats its last frame
        if missing:
            padded = torch.cat([padded, padded[:, :, -1:].expand(-1, -1, missing, -1, -1)], dim=2)
        features = self.encoder.forward_clip(padded, layout)  # (S, B, h, w, in_dim), steps grouped
        out = self.quantizer(features)
        codes = out.codes
        if rdo:
            in_time = out.indices.index_select(0, layout.in_time)
            chosen = choose_clip_tokens(in_time, layout.grouped[: layout.images].tolist(),
                                        self.quantizer.codes_from_indices, rdo)
            chosen = chosen.index_select(0, layout.grouped)  # grouped again
            codes = codes + (self.quantizer.codes_from_indices(chosen).to(codes.dtype) - codes).detach()
        recon = self.decoder.forward_clip(codes, layout)[:, :, :frames, :height, :width]
        return TokenizerOutput(recon, out.loss, list(features.index_select(0, layout.in_time).unbind(0)), out.stats)

    def forward_stepwise(self, video: Tensor, gop: int | None = None, rdo: float = 0.0) -> TokenizerOutput:
        """The training pass through the step path (the streaming classes, one step after another): the
        reference that `forward` is tested against and benchmarked beside."""
        check_video(video, self.config.patch, check_values=False)  # push checks the values
        b, _, frames, height, width = video.shape
        encoder = self.stream_encoder(b, height, width, gop, rdo)
        decoder = self.stream_decoder(b, height, width, gop)
        outputs = encoder.push_quantized(video) + encoder.flush_quantized()
        recon = torch.cat([decoder.push_codes(out.codes) for out in outputs], dim=2)[:, :, :frames]
        loss = torch.stack([out.loss for out in outputs]).mean()
        stats = {k: torch.stack([o.stats[k] for o in outputs]).mean() for k in outputs[0].stats}
        return TokenizerOutput(recon, loss, encoder.last_features, stats)

    # ----- identity ------------------------------------------------------------------------------
    def weights_sha256(self) -> str:
        """SHA-256 over every persistent tensor (sorted names, dtype, shape, little-endian bytes).

        Independent of the file format, so a model loaded from any file or trained in memory has one
        identity; the `.otok` header records it.
        """
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return digest.hexdigest()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def with_decoder(tok: Tokenizer, **changes: int) -> Tokenizer:
    """`tok` with its decoder's optional parts resized (`refine=N`, `refine_blocks=N`, `upsample=N`,
    `tube_refine=N`; 0 removes one), every other weight kept. A new part starts as the identity, so the model
    decodes exactly as before until it trains."""
    new = Tokenizer(tok.config.replace(**changes))
    prefixes = {"refine": "decoder.refine.", "refine_blocks": "decoder.refine.wide", "upsample": "decoder.upsample.",
                "tube_refine": "decoder.tube_refine."}
    parts = tuple(prefixes[name] for name in changes)
    new.load_state_dict({k: v for k, v in tok.state_dict().items() if not k.startswith(parts)}, strict=False)
    return new.train(tok.training)


def as_tokens(tokens) -> Tensor:
    """Tokens or latents as a tensor: a torch.Tensor as it is, a NumPy array (what `otok.read_tokens` gives)
    as a tensor of its values (integers as int64); anything else a ValueError."""
    if isinstance(tokens, Tensor):
        return tokens
    if hasattr(tokens, "__array__") and hasattr(tokens, "dtype"):
        tensor = torch.tensor(tokens)  # a copy: a reader's arrays may be read-only views of its chunks
        return tensor.long() if not tensor.is_floating_point() else tensor.float()
    raise ValueError(f"expected tokens as a torch.Tensor or NumPy array, got {type(tokens).__name__}")


def check_video(video: Tensor, patch: int, allow_empty: bool = False, check_values: bool = True) -> None:
    """Raise ValueError naming what was expected unless video is float (B, 3, T, H, W) in [-1, 1].

    check_values=False checks only type and shape (the stream's push checks the values once)."""
    if not isinstance(video, Tensor):
        raise ValueError(f"expected a torch.Tensor video (B, 3, T, H, W), got {type(video).__name__}")
    if video.dim() != 5:
        raise ValueError(f"expected a video of shape (B, 3, T, H, W), got shape {tuple(video.shape)}")
    if not video.is_floating_point():
        raise ValueError(f"expected a floating-point video with values in [-1, 1], got dtype {video.dtype}")
    b, c, t, height, width = video.shape
    if c != 3:
        raise ValueError(f"expected 3 (RGB) channels in dim 1, got {c}")
    if b < 1:
        raise ValueError("expected a batch of at least one video, got B = 0")
    if t == 0 and not allow_empty:
        raise ValueError("expected at least one frame, got T = 0")
    if height < 1 or width < 1:  # any size of at least one pixel: frames are padded to whole windows
        raise ValueError(f"frames of {width}x{height} have no pixels")
    if check_values and video.numel():
        low, high = torch.aminmax(video.detach())
        if not torch.isfinite(low) or not torch.isfinite(high) or low < -1.0 - 1e-5 or high > 1.0 + 1e-5:
            raise ValueError(
                f"expected values in [-1, 1], got min {low.item():.4g} max {high.item():.4g} "
                "(scale uint8 frames as x / 127.5 - 1)"
            )


def pad_frames(video: Tensor, padded_height: int, padded_width: int) -> Tensor:
    """Edge-replicate (B, 3, n, H, W) to (B, 3, n, padded_height, padded_width)."""
    ph, pw = padded_height - video.shape[-2], padded_width - video.shape[-1]
    if ph == 0 and pw == 0:
        return video
    return F.pad(video, (0, pw, 0, ph, 0, 0), mode="replicate")
