"""Tiled inference is exact: tiles give the untiled tokens bit for bit and its pixels within float rounding, in
whole clips, streams and the step path; the receptive-field arithmetic is the model's (a layer that reaches
further makes these tests fail); tile choice and its arguments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from codec_helpers import random_video, tiny
from otok.codec import load
from otok.codec.layers import SpatialBlock, TemporalBlock
from otok.codec.state import TiledCache
from otok.codec.tiling import (
    AUTO_TILE_BYTES, MIN_TILE_TOKENS, Tiles, check_tile, choose_tile, frame_bytes, pixel_halo, pixel_reach, plan_tiles,
    spatial_block, step_bytes, untiled_bytes, window_halo,
)

HEIGHT, WIDTH = 72, 140  # odd sizes: padded to 96 x 160 (a 12 x 20 token grid of 3 x 5 windows)
DECODER_PARTS = {"refine": 8, "refine_blocks": 1, "upsample": 16, "tube_refine": 8}
REFINE = {"refine": 8, "refine_blocks": 1}  # what otok-s has, smaller


def assert_pixels_close(tiled, untiled):
    """Within float32 rounding of the output's scale (random convolutions make pixels of ~10)."""
    assert tiled.shape == untiled.shape
    scale = max(1.0, untiled.abs().max().item())
    assert (tiled - untiled).abs().max().item() <= 1e-5 * scale


def live(tok):
    """The tokenizer with its zero-initialized convolutions (identity refinements) given random weights, so
    every part of the pixel stage reaches as far as it can."""
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        for module in tok.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.normal_(0, 0.3)
                module.bias.normal_(0, 0.1)
    return tok


def push_unevenly(stream, video, pieces=(3, 1, 0, 2, 5)):
    grids, start, i = [], 0, 0
    while start < video.shape[2]:
        grids += stream.push(video[:, :, start : start + pieces[i % len(pieces)]])
        start += pieces[i % len(pieces)]
        i += 1
    return grids + stream.flush()


@pytest.mark.parametrize("quantizer, tile, parts, batch", [  # one window, two, 100 px (rounded down to three)
    ("vq", 32, REFINE, 1), ("vq", 64, DECODER_PARTS, 2), ("vq", 100, REFINE, 1), ("fsq", 64, REFINE, 1),
    ("lfq", 32, {}, 2), ("kl", 64, REFINE, 1)])
def test_tiled_clip_equals_untiled(quantizer, tile, parts, batch):
    """Tokens bit for bit and pixels within rounding, over an image step, tube steps, a padded last group and a
    segment reset (gop 2), on frames that are no multiple of the tile."""
    tok = live(tiny(quantizer, **parts))
    video = random_video(batch, 9, HEIGHT, WIDTH)
    untiled = tok.encode(video, gop=2, tile=0)
    tiled = tok.encode(video, gop=2, tile=tile)
    assert torch.equal(tiled, untiled)
    pixels = tok.decode(untiled, frames=9, height=HEIGHT, width=WIDTH, gop=2, tile=0)
    tiled_pixels = tok.decode(untiled, frames=9, height=HEIGHT, width=WIDTH, gop=2, tile=tile)
    assert pixels.shape == video.shape
    assert_pixels_close(tiled_pixels, pixels)


def test_tiled_stream_equals_untiled_and_keeps_a_cache_per_tile():
    tok = live(tiny(**REFINE))
    video = random_video(1, 13, HEIGHT, WIDTH)
    whole = tok.encode(video, tile=0)
    stream = tok.stream_encoder(1, HEIGHT, WIDTH, tile=64)
    assert stream.tiles is not None and len(stream.tiles.rects()) == 2 * 3
    grids = push_unevenly(stream, video)
    assert torch.equal(torch.stack(grids, 1), whole)

    untiled, tiled = tok.stream_decoder(1, HEIGHT, WIDTH, tile=0), tok.stream_decoder(1, HEIGHT, WIDTH, tile=64)
    for s in range(whole.shape[1]):
        assert_pixels_close(tiled.push(whole[:, s]), untiled.push(whole[:, s]))
        assert isinstance(tiled.cache, TiledCache) and len(tiled.cache.tiles) == 6
        # a tile's cache holds its own 8 x 8 tokens' filled slots, no more: the untiled state, cut into tiles
        assert tiled.cache.tiles[0].keys[0].shape[:3] == (8 * 8, 2, min(s + 1, 4))
        assert sum(t.keys[0].numel() for t in tiled.cache.tiles) == untiled.cache.keys[0].numel()


def test_step_path_with_tiles_equals_untiled():
    tok = live(tiny(**DECODER_PARTS))
    video = random_video(1, 5, 64, 96)
    tiles = plan_tiles(tok.config, 64, 96, 32)
    with torch.no_grad():
        out, cache = tok.encode_step(video[:, :, :1], tok.new_cache(1, 64, 96))
        tiled_out, tiled_cache = tok.encode_step(video[:, :, :1], tok.new_cache(1, 64, 96, tiles), tiles)
        assert torch.equal(out.indices, tiled_out.indices)
        out, _ = tok.encode_step(video[:, :, 1:], cache)
        tiled_out, _ = tok.encode_step(video[:, :, 1:], tiled_cache, tiles)
        assert torch.equal(out.indices, tiled_out.indices)
        with pytest.raises(ValueError, match="consumed by the step"):  # a tiled step takes its tiles' caches
            tok.encode_step(video[:, :, 1:], tiled_cache, tiles)
        pixels, _ = tok.decode_step(out.codes, tok.new_cache(1, 64, 96))
        tiled_pixels, _ = tok.decode_step(out.codes, tok.new_cache(1, 64, 96, tiles), tiles)
    assert_pixels_close(tiled_pixels, pixels)


def test_shipped_model_tiled_at_a_near_tie():
    """The shipped otok-s on the clip whose two nearest codes at one position differ by one float32 step
    (test_codec_streaming's): 64-pixel tiles (one window) give the untiled tokens, and pixels within rounding."""
    tok = load("otok-s")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(185)
        video = torch.rand(1, 3, 17, 144, 256) * 2 - 1
    tokens = tok.encode(video, tile=0)
    assert torch.equal(tok.encode(video, tile=64), tokens)
    pixels = tok.decode(tokens[:, :2], frames=5, tile=0)
    assert_pixels_close(tok.decode(tokens[:, :2], frames=5, tile=64), pixels)


# ----- receptive field -------------------------------------------------------------------------------------
def extent(changed: torch.Tensor, start: int, end: int) -> int:
    """How far the True pixels of changed (H, W) lie beyond rows and columns start..end."""
    rows, cols = (torch.nonzero(changed.any(d)).flatten() for d in (1, 0))
    assert rows.min() > 0 and cols.min() > 0 and rows.max() < changed.shape[0] - 1 and cols.max() < changed.shape[1] - 1, \
        "grid too small to measure"
    return max(0, start - int(rows.min()), start - int(cols.min()), int(rows.max()) - end, int(cols.max()) - end)


def measured_reach(tok, grid: int = 16) -> tuple[tuple[int, int], int]:
    """The decoder's pixel stage measured as `pixel_reach` and `pixel_halo` count it: the model in float64; one
    token's features changed (at even and odd rows and columns), how far the upsampled pixels change beyond its
    patch; one pixel changed before the refinements (at even and odd places), how far the refined ones change;
    and the most tokens between a changed output pixel's token and the changed token."""
    dec = tok.decoder.double()
    p, dim = tok.config.patch, tok.config.dim
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, grid, grid, dim, dtype=torch.float64, generator=g)
    direction = torch.linspace(-1, 1, dim, dtype=torch.float64)  # not a shift: the norm removes those
    upsample = refine = tokens = 0
    with torch.no_grad():
        for image in (True, False):
            frames = dec.unrefined_pixels(dec.norm(x), image)
            base_up, base = frames, dec.to_pixels(x, image)
            for i in (grid // 2, grid // 2 - 1):
                y = x.clone()
                y[:, i, i] += direction
                changed = lambda a, b: (a - b).abs().amax(dim=(0, 1, 2)) > 1e-9  # noqa: E731
                upsample = max(upsample, extent(changed(dec.unrefined_pixels(dec.norm(y), image), base_up),
                                                i * p, i * p + p - 1))
                far = extent(changed(dec.to_pixels(y, image), base), i * p, i * p + p - 1)
                tokens = max(tokens, -(-far // p))
                at = i * p + i % 2
                moved = frames.clone()
                moved[..., at, at] += 1.0
                if tok.config.refine or (tok.config.tube_refine and not image):
                    refine = max(refine, extent(changed(dec.refined(moved, image), dec.refined(frames, image)), at, at))
    dec.float()
    return (upsample, refine), tokens


@pytest.mark.parametrize("parts", [
    {}, {"refine": 8}, {"refine": 8, "refine_blocks": 1}, {"refine": 8, "refine_blocks": 2},
    {"upsample": 16}, {"tube_refine": 8}, DECODER_PARTS, {**DECODER_PARTS, "refine_blocks": 2},
], ids=lambda parts: "+".join(f"{k}{v}" for k, v in parts.items()) or "heads")
def test_pixel_halo_is_the_decoders_reach(parts):
    """`pixel_reach` and `pixel_halo`, written out from the config, equal the reach measured on the model:
    tiles stay exact while they agree, and a layer that reaches further fails this test."""
    tok = live(tiny(**parts))
    assert measured_reach(tok) == (pixel_reach(tok.config), pixel_halo(tok.config))


@pytest.mark.parametrize("mutant", ["pair", "wide", "tube", "upsample"])
def test_a_wider_kernel_fails_the_halo_check(mutant):
    """The check above has teeth: widen one 3x3 convolution to 5x5 and the measured reach exceeds the
    arithmetic's (tiles with that halo could be inexact)."""
    tok = tiny(**DECODER_PARTS)
    dec = tok.decoder
    parent, name = {"pair": (dec.refine, "conv_in"), "wide": (dec.refine, "wide_out"), "tube": (dec.tube_refine, "conv_in"),
                    "upsample": (dec.upsample, "conv_out")}[mutant]
    old = getattr(parent, name)
    setattr(parent, name, nn.Conv2d(old.in_channels, old.out_channels, 5, padding=2))
    live(tok)
    (upsample, refine), _ = measured_reach(tok)
    expected = pixel_reach(tok.config)
    assert upsample > expected[0] if mutant == "upsample" else refine > expected[1]


def together(n: int, window: int, shift: int, i: int) -> torch.Tensor:
    """(n,) bool: which rows share row i's window in a grid of n rows rolled by -shift, and its mask region
    (`layers.shifted_window_mask`: the last window holds both ends of the frame, which may not attend)."""
    rolled = (torch.arange(n) - shift) % n
    region = (rolled >= n - window).long() + (rolled >= n - shift).long()
    return (rolled // window == rolled[i] // window) & (region == region[i])


def test_token_stage_layers_reach_no_further_than_their_windows():
    """Why the transformer needs no halo: a spatial block's output at a token depends only on the tokens of
    its (shifted) window, and the temporal blocks and the per-token layers on that token alone. A layer that
    reached further (a position-generating convolution, say) would fail here and make tiling inexact."""
    torch.manual_seed(0)
    h = w = 16
    window, dim = 4, 16
    x = torch.randn(1, h, w, dim)
    with torch.no_grad():
        for shifted in (False, True):
            block = SpatialBlock(dim, 2, window, 2.0, shifted=shifted).eval()
            nn.init.normal_(block.attn.rel_bias)
            base = block(x)
            for i, j in ((5, 6), (0, 0), (15, 15)):
                y = x.clone()
                y[:, i, j] += 1.0
                changed = (block(y) - base).abs().amax(-1)[0] > 0
                s = block.shift
                same_window = together(h, window, s, i)[:, None] & together(w, window, s, j)[None, :]
                assert not (changed & ~same_window).any(), (shifted, i, j)
        block = TemporalBlock(dim, 2, 5, 2.0).eval()
        keys = torch.randn(h * w, 2, 4, dim // 2)
        valid = torch.ones(4)
        base, _, _ = block(x, keys, keys, valid)
        y = x.clone()
        y[:, 3, 4] += 1.0
        out, _, _ = block(y, keys, keys, valid)
        changed = (out - base).abs().amax(-1)[0] > 0
        assert changed.nonzero().tolist() == [[3, 4]]


def test_spatial_block_tile_by_tile_equals_the_block():
    torch.manual_seed(1)
    for shifted in (False, True):
        block = SpatialBlock(16, 2, 4, 2.0, shifted=shifted).eval()
        nn.init.normal_(block.attn.rel_bias)
        x = torch.randn(2, 12, 20, 16)
        with torch.no_grad():
            for size in (4, 8, 12):
                assert torch.equal(spatial_block(block, x, Tiles((12, 20), size, 0, 8)), block(x))


# ----- tile choice and arguments -----------------------------------------------------------------------------
def test_plan_tiles_rounds_to_whole_windows():
    c = tiny().config  # patch 8, window 4: tiles of whole 32-pixel windows
    assert plan_tiles(c, HEIGHT, WIDTH, 0) is None
    assert plan_tiles(c, HEIGHT, WIDTH, 4096) is None  # one tile would hold the frame: untiled
    tiles = plan_tiles(c, HEIGHT, WIDTH, 100)
    assert tiles.size == 12 and tiles.pixels == 96 and tiles.grid == (12, 20)
    assert tiles.rects() == [(0, 12, 0, 12), (0, 12, 12, 20)]
    assert plan_tiles(c, HEIGHT, WIDTH, 1).size == max(4, MIN_TILE_TOKENS)  # at least one window
    s = load("otok-s", pretrained=False).config
    assert plan_tiles(s, 3000, 4000, 500).size == 56  # 448 px: seven 64-pixel windows
    assert plan_tiles(s, 3000, 4000, 500).halo == pixel_halo(s)


@pytest.mark.parametrize("bad", [-1, 1.5, "512", True])
def test_bad_tile_raises_value_error(bad):
    with pytest.raises(ValueError, match="tile must be"):
        check_tile(bad)
    with pytest.raises(ValueError, match="tile must be"):
        tiny().stream_encoder(1, 32, 32, tile=bad)


def test_choose_tile_untiled_while_small_tiled_when_large():
    c = load("otok-s", pretrained=False).config
    assert choose_tile(c, 240, 320, budget=8 << 30) == 0
    tile = choose_tile(c, 3000, 4000, budget=8 << 30)
    assert tile > 0 and tile % c.pad_multiple == 0
    assert untiled_bytes(c, 3000, 4000) - frame_bytes(c, 3000, 4000) > AUTO_TILE_BYTES
    # less memory, smaller tiles; none left beside the frame itself: the smallest tile
    assert choose_tile(c, 3000, 4000, budget=frame_bytes(c, 3000, 4000) + (64 << 20)) < tile
    assert choose_tile(c, 3000, 4000, budget=0) == c.pad_multiple
    assert choose_tile(c, 3000, 4000, budget=None) > 0  # the memory this process can have


def test_engine_streams_tile_only_when_told():
    """ONNX Runtime and TensorRT engines tile when given a tile size (their parity: tests/test_export.py); auto
    (None) and 0 run the graphs on whole frames, as before."""
    from otok.export.runtime import EngineStreamDecoder, EngineStreamEncoder

    tok = load("otok-s", pretrained=False)
    assert EngineStreamEncoder(tok, 1, 3000, 4000, 5, 0.0, None).tiles is None
    assert EngineStreamDecoder(tok, 1, 3000, 4000, 5, 0).tiles is None
    assert EngineStreamEncoder(tok, 1, 3000, 4000, 5, 0.0, 512).tiles.pixels == 512


def test_window_halo_is_what_whole_step_crops_need():
    """A crop through a whole step graph: an unshifted then a shifted block need half a window past the tile,
    rounded to one window (otok-s: 8 tokens), a second pair another; the decoder's pixel halo on top."""
    s, b = load("otok-s", pretrained=False).config, load("otok-b", pretrained=False).config
    assert window_halo(s, 2) == 8 and window_halo(b, 4) == 16 and window_halo(s, 1) == 0
    assert window_halo(s, 2, pixel_halo(s)) == 8 and window_halo(s, 2, 5) == 16


def test_step_bytes_bounds_what_a_frame_needs():
    c = load("otok-s", pretrained=False).config
    tiled, untiled = step_bytes(c, 3000, 4000, tile=448, video=False), step_bytes(c, 3000, 4000, tile=0, video=False)
    assert frame_bytes(c, 3000, 4000, video=False) < tiled < 2 << 30 < untiled  # a 12 MP photo under 2 GB tiled
    assert step_bytes(c, 3000, 4000, tile=1) <= step_bytes(c, 3000, 4000, tile=448) < step_bytes(c, 3000, 4000, tile=0)
    assert step_bytes(c, 2160, 3840, video=True) > step_bytes(c, 2160, 3840, video=False)


def test_a_huge_stream_allocates_nothing_until_it_codes():
    """The issue's stream_decoder(1, 20000, 20000) tried to allocate 25.7 GB of zeros for its cache: no slot is
    stored before a step fills it."""
    tok = load("otok-s", pretrained=False)
    for tile in (0, None):
        stream = tok.stream_decoder(1, 20000, 20000, tile=tile)
        assert stream.state_nbytes() < 4 << 20  # tiled: a 16-byte `valid` for each of up to 98,000 tiles
