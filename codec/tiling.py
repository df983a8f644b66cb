"""Exact tiled inference: any frame size in bounded memory, the same tokens as the whole frame.

    enc = tok.stream_encoder(1, 3000, 4000, tile=512)    # 512-pixel tiles; 0: off; None (default): auto
    tokens = tok.encode(video, tile=None)                # auto: untiled while the frame is small
    tile = choose_tile(tok.config, 3000, 4000, budget=2 << 30)   # what auto picks under a memory budget

Where memory goes. Untiled, a photo step of otok-s held 870-950 bytes a pixel (docs/BENCHMARKS.md): the temporal
K/V ring (4 slots x 2 layers x K and V of 256 channels = 256 B/px, allocated as zeros at a segment start, plus
the 5-slot concatenation the new ring was a view of: 576 B/px at an image step, where one slot holds data),
the spatial blocks' transients over every window at once (the MLP's 4x hidden, q/k/v, the attention bias
repeated per window: ~10 copies of the 16 B/px features), and the decoder's refinement at full resolution
(32 channels through conv, GELU and conv: ~430 B/px, four times that on a video step). Only the ring's filled
slots are real state (`state.TemporalCache` now stores only those); the rest is working memory that need not
span the frame.

Design: tile where the working memory is, keep the frame where the state is. A step keeps whole-frame tensors
only of the token features (dim floats a token: 16 B/px for otok-s), of its pixels and of the temporal cache
(the state); every layer runs over the frame tile by tile, each tile a rectangle of whole windows:

- Per-token layers (patch embedding, layer norms, temporal blocks, `to_latent`, the quantizer's input) have
  a receptive field of one token: a tile computes exactly its own tokens. The temporal stack runs tile by
  tile with a cache per tile (`state.TiledCache`).
- A window-attention block is computed window by window from the whole frame's input to that block: a tile
  gathers its windows of the (cyclically shifted) window grid straight from the frame's tensor, with the
  shifted-window mask of those windows, and scatters its outputs back. Each window is then the same
  computation as in the whole frame, and the block needs no halo at all: its receptive field is its window
  (`test_codec_tiling` holds each layer to that), and stacking blocks does not add up, because each block
  reads the previous block's output over the whole frame. Tiling through the whole transformer instead
  (tiles of the frame with halos) needs a halo of about one window per shifted block, computes the halo
  again at every step, and duplicates the decoder's cache over it; chunking per layer needs none of that.
- The decoder's pixel stage (linear heads, upsampling convolutions, refinement convolutions) is local but
  wider than a patch: a tile computes it on its tokens plus a halo of `pixel_halo(config)` tokens a side
  and keeps its own pixels. `pixel_halo` is the receptive-field arithmetic, written out from the config
  (`spread`: each 3x3 convolution at cells of c pixels reaches c pixels further, and the cell grid's
  alignment up to c - 1 pixels more; stacked convolutions add up) and checked by `test_codec_tiling`
  against the model's measured reach (`pixel_reach`, per branch in pixels, and the halo in tokens): a layer
  that grows it makes the test fail. At the frame's border a tile's crop ends where the
  frame ends, so the convolutions' zero padding is the frame's. Crop origins are whole tokens (and even
  pixels where pixels are folded 2x2), so every cell grid lines up with the frame's.

Exported engines (`otok.export`) run whole-step graphs, which cannot be cut per layer: an engine stream
at a tile size runs the graphs on each tile's crop, the tile plus `window_halo` tokens (whole windows: the
blocks' reach, backwards, one window per unshifted + shifted pair for otok-s; the decoder's on top of the pixel
halo), with a state per crop, and keeps the tile (`engine_crops`). A crop starts on the window grid, so its
windows are the frame's; those its edge cuts and the cyclic wrap of its shifted windows lie in the halo; at the
frame's edge a wrapped window is masked into the same regions (a masked key adds exactly 0). The halo's tokens
are computed again in each crop that holds them (the price of whole-step graphs).

Padding to a multiple of patch x window is done on the whole frame before tiling, so tiles cut the padded
frame and the window grid is the frame's.

Exactness. Every tile runs the same float operations on the same values as the whole frame, per token; what
differs is how many rows a kernel gets at once. The CPU kernels (MKL's GEMM, the attention, layer norm) give
every row the same bits for any batch of at least a dozen rows (checked at shipping sizes by
`tools/bench/tiling.py --exact` and by the tests), and a tile holds at least 16 tokens, so tokens are bit
for bit the untiled ones. The pixel stage runs convolutions on other frame sizes, whose algorithms may round
differently: decoded pixels agree within float rounding (1e-5). On CUDA the same holds only as far as cuBLAS
picks kernels alike for both batch sizes (not measured here). In bf16 (`accelerate(tok, "bf16")`, the encoder
under autocast) it does not hold: otok-tiny's tiles gave 98.5 % of the untiled tokens, as bf16 gives ~97 % of
fp32's; the default precision keeps the encoder in fp32.

Memory: with tiles, a step's peak is the whole-frame part (`frame_bytes`: pixels, token features, the
cache) plus one tile's working memory (`tile_bytes`); `choose_tile` picks the largest tile whose working
memory fits, and no tiling at all while the frame's own working memory does (small frames, where the gathers
and the pixel stage's halo cost a little; from about 1 MP on, tiles of 256-512 px ran faster than untiled).
A tiled step consumes its `TiledCache` tile by tile, so the state before and after it are never both whole.
"""

from __future__ import annotations

import contextlib
import resource
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .config import TokenizerConfig
from .layers import SpatialBlock, window_merge, window_partition, window_region_mask

# The decoder builds `TubeRefine(tubelet, channels)` with its default of two residual pairs.
TUBE_REFINE_BLOCKS = 2
# A tile holds at least this many tokens a side (rounded up to whole windows): kernels given fewer rows may
# take other code paths (MKL's GEMM does below ~12 rows), whose last bits differ.
MIN_TILE_TOKENS = 4
# Auto tiling keeps a tile's working memory under this many bytes (and under the budget left by the frame).
AUTO_TILE_BYTES = 384 << 20


@dataclass(frozen=True)
class Tiles:
    """A padded frame's token grid cut into tiles: rectangles of whole windows, in raster order."""

    grid: tuple[int, int]  # (h, w) tokens of the padded frame
    size: int  # tile side in tokens, a multiple of the window
    halo: int  # tokens of context a side for the decoder's pixel stage (`pixel_halo`)
    patch: int

    def rects(self) -> list[tuple[int, int, int, int]]:
        """(row0, row1, col0, col1) token ranges of each tile."""
        h, w, n = *self.grid, self.size
        return [(r, min(r + n, h), c, min(c + n, w)) for r in range(0, h, n) for c in range(0, w, n)]

    @property
    def pixels(self) -> int:
        """Tile side in pixels."""
        return self.size * self.patch


def check_tile(tile: int | None) -> int | None:
    """tile as an int >= 0 (or None: auto), else ValueError."""
    if tile is None:
        return None
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 0:
        raise ValueError(f"tile must be a whole number of pixels >= 0 (0: no tiling) or None (auto), got {tile!r}")
    return tile


def plan_tiles(config: TokenizerConfig, height: int, width: int, tile: int | None, batch: int = 1,
               device: torch.device | str = "cpu") -> Tiles | None:
    """The tiles of height x width frames for a `tile` setting in pixels (rounded down to whole windows, at least
    `MIN_TILE_TOKENS` tokens; None: `choose_tile`), or None where the frame is coded untiled (tile 0, or one
    tile would hold the whole frame)."""
    if check_tile(tile) is None:
        tile = choose_tile(config, height, width, batch, device=device)
    if tile == 0:
        return None
    h, w = grid_of(config, height, width)
    unit = config.window
    size = max(tile // config.patch // unit * unit, -(-MIN_TILE_TOKENS // unit) * unit)
    if size >= h and size >= w:
        return None
    return Tiles((h, w), size, pixel_halo(config), config.patch)


def grid_of(config: TokenizerConfig, height: int, width: int) -> tuple[int, int]:
    m = config.pad_multiple
    return -(-height // m) * m // config.patch, -(-width // m) * m // config.patch


# ----- receptive field of the decoder's pixel stage --------------------------------------------------------
def refine_chain(config: TokenizerConfig, image: bool) -> list[tuple[int, int]]:
    """The decoder's refinements after the heads (`Decoder.refined`) as their convolutions in order, each as
    (cell size in pixels, radius in cells): `PixelRefine`'s 3x3 pair at full resolution, then, with blocks,
    its 3x3s at half resolution (in, a pair per block, out); on video steps `TubeRefine`'s, likewise."""
    c = config
    chain: list[tuple[int, int]] = []
    if c.refine:
        chain += [(1, 1), (1, 1)]
        if c.refine_blocks:
            chain += [(2, 1)] * (2 + 2 * c.refine_blocks)
    if c.tube_refine and not image:
        chain += [(2, 1)] * (2 + 2 * TUBE_REFINE_BLOCKS)
    return chain


def upsample_chain(config: TokenizerConfig) -> list[tuple[int, int]]:
    """`UpsampleHead`'s convolutions from the token grid to pixels: 3x3s at cells of p, p/2, ... 2 pixels, then
    one at full resolution (none without the branch; the linear heads decode each patch from its own token)."""
    if not config.upsample:
        return []
    return [(config.patch >> i, 1) for i in range(config.patch.bit_length() - 1)] + [(1, 1)]


def spread(chain: list[tuple[int, int]], lo: int, hi: int) -> tuple[int, int]:
    """Pixels lo..hi through convolutions (cell, radius) in order -> the pixels they reach. A convolution of
    radius r at cells of c pixels reaches the cells floor(lo/c) - r ... floor(hi/c) + r, i.e. the pixels
    c*(floor(lo/c) - r) ... c*(floor(hi/c) + r) + c - 1 (the same both ways: which outputs an input reaches,
    which inputs an output needs)."""
    for cell, radius in chain:
        lo = (lo // cell - radius) * cell
        hi = (hi // cell + radius) * cell + cell - 1
    return lo, hi


def pixel_reach(config: TokenizerConfig) -> tuple[int, int]:
    """(upsampling, refinement), in pixels: how far beyond a token's patch the upsampling branch reaches, and
    how far from a pixel the refinements reach (worst alignment, image or video step): what changing one
    token's features, or one pixel before the refinements, changes."""
    p = config.patch
    lo, hi = spread(upsample_chain(config), 0, p - 1)
    refine = 0
    for image in (True, False):
        for x in range(2):  # even and odd pixels, against the 2x2 folds
            a, b = spread(refine_chain(config, image), x, x)
            refine = max(refine, x - a, b - x)
    return max(0, -lo, hi - (p - 1)), refine


def pixel_halo(config: TokenizerConfig) -> int:
    """Tokens of halo a tile needs for the decoder's pixel stage (`Decoder.to_pixels`): the most tokens between
    an output pixel's own token and a token it depends on, through either branch (the heads, or the
    upsampling convolutions) and the refinements, at every alignment to the cell grids, image and video steps
    (made even where patch is odd and pixels are folded 2x2, so crops start on even pixels)."""
    p = config.patch
    tokens = 0
    for image in (True, False):
        for chain in ([], upsample_chain(config)) if config.upsample else ([],):
            backwards = list(reversed(refine_chain(config, image) + chain))
            for x in range(2 * p):  # every alignment of a pixel to cells of up to 2p pixels
                lo, hi = spread(backwards, x, x)
                tokens = max(tokens, x // p - lo // p, hi // p - x // p)
    if p % 2 and tokens % 2 and (config.refine_blocks or config.tube_refine):
        tokens += 1
    return tokens


# ----- tiles through a whole step (exported engines) --------------------------------------------------------
def window_halo(config: TokenizerConfig, layers: int, extra: int = 0) -> int:
    """Tokens of context a window-aligned tile needs to compute its tokens (and `extra` tokens past them)
    through `layers` window-attention blocks alternating unshifted and shifted, as a whole step graph computes
    them on a crop: backwards, an unshifted block needs the windows holding what it computes, a shifted one the
    windows of the grid offset by half a window. Rounded up to whole windows (crops start on the window grid)."""
    win = config.window
    shift = win // 2 if win > 1 else 0
    lo, hi = -extra, win - 1 + extra  # a one-window tile: the alignment is the same for any
    for i in reversed(range(layers)):
        s = shift if i % 2 else 0
        lo = (lo - s) // win * win + s
        hi = (hi - s) // win * win + s + win - 1
    return -(-max(-lo, hi - (win - 1)) // win) * win


def engine_crops(config: TokenizerConfig, tiles: Tiles, decoder: bool) -> list[tuple[tuple[int, int, int, int],
                                                                                       tuple[int, int, int, int]]]:
    """Per tile: its token rect and the crop a whole-step graph (`otok.export`) must run on for it, the tile
    and `window_halo` tokens a side within the frame (the decoder's also covers the pixel stage's halo). Inside
    a crop the graph's windows are the frame's (the crop starts on the window grid); those a crop's edge cuts,
    and the cyclic wrap of its shifted windows, lie in the halo; a shifted window that wraps round the frame is
    masked into its regions the same in the crop (a masked key adds exactly 0)."""
    h, w = tiles.grid
    n = window_halo(config, config.spatial_layers, tiles.halo if decoder else 0)
    return [((r0, r1, c0, c1), (max(0, r0 - n), min(h, r1 + n), max(0, c0 - n), min(w, c1 + n)))
            for r0, r1, c0, c1 in tiles.rects()]


# ----- the tiled layers -------------------------------------------------------------------------------------
def spatial_block(block: SpatialBlock, x: Tensor, tiles: Tiles) -> Tensor:
    """`block(x)` for x (B, h, w, D) of the whole frame, computed tile by tile: the same windows (of the grid
    rolled by the block's shift, with their masks), each from the whole frame's input, scattered back."""
    b, h, w, _ = x.shape
    win = block.window
    shift_h = block.shift if h > win else 0  # as SpatialBlock.forward
    shift_w = block.shift if w > win else 0
    out = torch.empty_like(x)
    for r0, r1, c0, c1 in tiles.rects():  # in the rolled grid
        rows = torch.arange(r0, r1, device=x.device)
        cols = torch.arange(c0, c1, device=x.device)
        src_rows, src_cols = (rows + shift_h) % h, (cols + shift_w) % w  # where the rolled grid's tokens are
        xt = x.index_select(1, src_rows).index_select(2, src_cols)  # (B, th, tw, D)
        mask = None
        if shift_h or shift_w:
            mask = window_region_mask(rows, cols, h, w, win, shift_h, shift_w).to(x.dtype)
        y = block.attn(window_partition(block.norm1(xt), win), mask)
        xt = xt + window_merge(y, win, b, r1 - r0, c1 - c0)
        out[:, src_rows[:, None], src_cols[None, :]] = xt + block.mlp(block.norm2(xt))
    return out


def pixel_crops(tiles: Tiles) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """Per tile: its token rect and the rect of its crop (the tile and its halo, inside the frame)."""
    h, w = tiles.grid
    n = tiles.halo
    return [((r0, r1, c0, c1), (max(0, r0 - n), min(h, r1 + n), max(0, c0 - n), min(w, c1 + n)))
            for r0, r1, c0, c1 in tiles.rects()]


# ----- memory -----------------------------------------------------------------------------------------------
def frame_bytes(config: TokenizerConfig, height: int, width: int, batch: int = 1, video: bool = True) -> int:
    """Bytes a step holds for the whole frame, tiled or not: its pixels twice (the frames pushed and the padded
    step, or the decoded step and its caller's), the token features in and out of a layer, and the temporal
    cache of the encoder or decoder (float32; video: a full ring, else the one slot a photo fills).
    Measured with otok-s (docs/BENCHMARKS.md): a tiled 12 MP photo holds 122 B/px encoding, this says 120."""
    c = config
    h, w = grid_of(config, height, width)
    tokens, pixels = batch * h * w, batch * h * w * c.patch ** 2
    slots = c.temporal_window - 1 if video else 1
    frames = c.tubelet if video else 1
    return 4 * (pixels * 3 * frames * 2 + tokens * (2 * c.dim + 2 * c.temporal_layers * slots * c.dim))


def tile_bytes(config: TokenizerConfig, tile_tokens: int, batch: int = 1, video: bool = True) -> int:
    """Working bytes of one square tile of `tile_tokens` tokens a side, at its worst layer: a spatial block's
    transients over its windows, the temporal blocks' rings, or the decoder's pixel stage over its crop (the
    tile and its halo; video: a tube step's frames at once)."""
    c = config
    tokens = batch * tile_tokens ** 2
    hidden = int(c.dim * c.mlp_ratio)
    block = tokens * (12 * c.dim + 3 * hidden + 2 * c.heads * c.window ** 2)
    temporal = tokens * 2 * c.temporal_layers * (2 * c.temporal_window) * c.dim
    crop = batch * ((tile_tokens + 2 * pixel_halo(c)) * c.patch) ** 2
    last = max(8, c.upsample >> max(0, c.patch.bit_length() - 2)) if c.upsample else 0  # its widest full-res conv
    pixel = (c.tubelet * (12 + 3 * c.refine + 3 * last + c.tube_refine) if video
             else 12 + 3 * c.refine + 3 * last)  # floats a crop pixel
    return 4 * max(block, temporal, crop * pixel)


def untiled_bytes(config: TokenizerConfig, height: int, width: int, batch: int = 1, video: bool = True) -> int:
    """Estimated peak bytes of an untiled step (the frame is one tile), beyond the loaded model."""
    h, w = grid_of(config, height, width)
    work = tile_bytes(config, max(h, w), batch, video) * h * w // max(h, w) ** 2
    return frame_bytes(config, height, width, batch, video) + work


def step_bytes(config: TokenizerConfig, height: int, width: int, tile: int | None = None, batch: int = 1,
               video: bool = True, budget: int | None = None, device: torch.device | str = "cpu") -> int:
    """Estimated peak bytes of coding height x width frames at a `tile` setting (as `stream_encoder` takes it;
    None: what `choose_tile` picks under `budget`), beyond the loaded model. video=False: a photo (image steps
    only). `step_bytes(..., tile=1)` is the least any tiling needs: what exceeds the memory even so cannot be
    coded here."""
    tiles = plan_tiles(config, height, width, tile, batch, device) if tile is not None else \
        plan_tiles(config, height, width, choose_tile(config, height, width, batch, budget, device), batch, device)
    if tiles is None:
        return untiled_bytes(config, height, width, batch, video)
    return frame_bytes(config, height, width, batch, video) + tile_bytes(config, tiles.size, batch, video)


def choose_tile(config: TokenizerConfig, height: int, width: int, batch: int = 1, budget: int | None = None,
                device: torch.device | str = "cpu") -> int:
    """The tile side in pixels to code height x width frames with (0: untiled), what `tile=None` picks.

    Untiled while the frame's working memory (its estimated untiled peak beyond `frame_bytes`, for a video
    step) stays under `AUTO_TILE_BYTES` and the budget; else the largest tile whose working memory fits under
    both, the budget less what the frame itself holds (at least the smallest tile: what cannot fit even tiled
    is the caller's to refuse, `step_bytes` says how much it needs). budget: bytes the step may use; default:
    the memory this process can still have on `device` (`available_memory`)."""
    budget = available_memory(device) if budget is None else budget
    frame = frame_bytes(config, height, width, batch)
    room = AUTO_TILE_BYTES if budget is None else max(0, min(AUTO_TILE_BYTES, budget - frame))
    if untiled_bytes(config, height, width, batch) - frame <= room:
        return 0
    unit = config.window
    h, w = grid_of(config, height, width)
    size = -(-max(h, w) // unit) * unit
    while size > unit and tile_bytes(config, size, batch) > room:
        size -= unit
    return max(size, -(-MIN_TILE_TOKENS // unit) * unit) * config.patch


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes this process may still allocate on `device`: on CUDA the free device memory; on the CPU the least
    of MemAvailable, a cgroup v2 limit's headroom and RLIMIT_AS's headroom; None when none can be read."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    limits: list[int] = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        meminfo = Path("/proc/meminfo").read_text()
        limits.append(int(meminfo.split("MemAvailable:")[1].split()[0]) * 1024)
    with contextlib.suppress(OSError, ValueError):
        cap = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if cap != "max":
            limits.append(int(cap) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        with contextlib.suppress(OSError, ValueError, IndexError):
            vm = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0]) * 1024
            limits.append(soft - vm)
    return max(min(limits), 0) if limits else None


__all__ = ["Tiles", "available_memory", "check_tile", "choose_tile", "engine_crops", "frame_bytes", "pixel_halo",
           "pixel_reach", "plan_tiles", "window_halo", "spatial_block", "step_bytes", "tile_bytes", "untiled_bytes"]
