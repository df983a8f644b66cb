"""Frame-level streaming on top of the step functions: constant memory for a video of any length.

`StreamEncoder.push` takes any number of frames, buffers at most one group, and returns the token grids
of the steps it completed; `flush` pads a short last group by repeating its last frame. `StreamDecoder`
turns one grid at a time back into 1 (segment start) or `tubelet` frames. Every `gop` steps both reset
their temporal cache, so a segment decodes on its own.

`tile` (pixels a side; 0: untiled; None: `tiling.choose_tile`) codes each frame in tiles with a cache per tile
(`otok.codec.tiling`): the same tokens and, within float rounding, the same pixels, in bounded memory.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .model import Tokenizer, as_tokens, check_video
from .quantizers import QuantizerOutput
from .rdo import check_tau, choose_tokens
from .tiling import plan_tiles
from .timeline import ONE_SEGMENT, frames_in_step


class _Stream:
    auto_tile = True  # engine streams (otok.export) tile only when given a tile size

    def __init__(self, tokenizer: Tokenizer, batch: int, height: int | None, width: int | None, gop: int,
                 tile: int | None = None) -> None:
        if height is None or width is None:
            raise TypeError("a stream codes frames of one size, which it needs: stream_encoder(batch, height=H, width=W)")
        if batch < 1 or gop < 0:
            raise ValueError(f"batch must be >= 1 and gop >= 0 (0: one segment), got batch {batch}, gop {gop}")
        if height < 1 or width < 1:  # any size of at least one pixel: frames are padded to whole windows
            raise ValueError(f"frames of {width}x{height} have no pixels")
        self.tokenizer = tokenizer
        self.batch, self.height, self.width, self.gop = batch, height, width, gop
        self.padded_height, self.padded_width = tokenizer.padded_size(height, width)
        self.grid = tokenizer.grid_size(height, width)
        if tile is None and not self.auto_tile:
            tile = 0
        self.tiles = plan_tiles(tokenizer.config, height, width, tile, batch, tokenizer.device)
        self.cache = self._new_cache()
        self.steps = 0  # steps coded so far, all segments

    def _new_cache(self):
        if self.tiles is None:
            return self.tokenizer.new_cache(self.batch, self.height, self.width)
        return self.tokenizer.new_cache(self.batch, self.height, self.width, self.tiles)

    def _tiled(self) -> tuple:
        """The extra argument of the step functions: the tiles, where the stream is tiled."""
        return () if self.tiles is None else (self.tiles,)

    def _advance(self, cache) -> None:
        self.steps += 1
        segment_ends = self.gop != ONE_SEGMENT and cache.step >= self.gop
        self.cache = self._new_cache() if segment_ends else cache

    def state_nbytes(self) -> int:
        return self.cache.nbytes()


class StreamEncoder(_Stream):
    """Frames in, token grids out. Build with `Tokenizer.stream_encoder(batch, height, width)`.

    rdo: the rate-distortion tolerance of `otok.codec.rdo.choose_tokens` (0: the nearest codes, what the
    model was trained on; above 0: tokens that repeat a neighbour's or the previous step's when their code
    is that close, for smaller files). Discrete models only.
    """

    def __init__(self, tokenizer: Tokenizer, batch: int, height: int | None, width: int | None, gop: int,
                 rdo: float = 0.0, tile: int | None = None) -> None:
        super().__init__(tokenizer, batch, height, width, gop, tile)
        self.rdo = check_tau(rdo)
        if self.rdo and not tokenizer.config.discrete:
            raise ValueError("rdo applies to discrete tokens; a KL model's latents are not chosen from a codebook")
        self._pending: list[Tensor] = []  # frames (B, 3, 1, H, W) of the group being filled, as pushed
        self._chosen: Tensor | None = None  # with rdo: the tokens of the step before in this segment
        self.frames = 0  # frames pushed so far
        self.last_features: list[Tensor] = []  # pre-quantization features of the last push (training)

    @torch.no_grad()  # as `Tokenizer.encode`: autograd changes which kernels run, and so a near-tie's token
    def push(self, frames: Tensor) -> list[Tensor]:
        """frames (B, 3, n, H, W), n >= 0 -> the grids of the steps completed: (B, h, w) int64 each
        (KL models: latents (B, C, h, w))."""
        return [self._tokens(out) for out in self.push_quantized(frames)]

    @torch.no_grad()
    def flush(self) -> list[Tensor]:
        """Pad and code a short last group; the next push starts a new segment."""
        return [self._tokens(out) for out in self.flush_quantized()]

    def push_quantized(self, frames: Tensor) -> list[QuantizerOutput]:
        """Like `push`, but returns the quantizer outputs (codes keep their gradient)."""
        check_video(frames, self.tokenizer.config.patch, allow_empty=True)
        b, _, n, height, width = frames.shape
        if (b, height, width) != (self.batch, self.height, self.width):
            raise ValueError(
                f"this stream takes frames of batch {self.batch} and size {self.width}x{self.height}, "
                f"got batch {b} and size {width}x{height}"
            )
        self.last_features = []
        if n == 0:
            return []
        frames = frames.to(self.tokenizer.device)
        outputs = []
        for i in range(n):
            self._pending.append(frames[:, :, i : i + 1])
            self.frames += 1
            if len(self._pending) == frames_in_step(self.cache.step, self.gop, self.tokenizer.config.tubelet):
                outputs.append(self._code_pending())
        return outputs

    def flush_quantized(self) -> list[QuantizerOutput]:
        outputs = []
        if self._pending:
            missing = self.tokenizer.config.tubelet - len(self._pending)
            self._pending.extend([self._pending[-1]] * missing)
            outputs.append(self._code_pending())
        self.cache = self._new_cache()
        return outputs

    def _code_pending(self):
        pixels = self._padded(self._pending)
        self._pending = []
        segment_start = self.cache.step == 0
        out, cache = self._step(pixels, self.cache)
        if self.rdo:
            out = self._choose(out, None if segment_start else self._chosen)
        self._advance(cache)
        return out

    def _padded(self, frames: list[Tensor]) -> Tensor:
        """A step's frames, each (B, 3, 1, H, W), padded (edge-replicated, as `model.pad_frames`) into one tensor
        (B, 3, n, Hp, Wp): one copy, where padding the push and joining its frames took two."""
        (b, c, _, height, width), first = frames[0].shape, frames[0]
        out = first.new_empty(b, c, len(frames), self.padded_height, self.padded_width)
        for k, frame in enumerate(frames):
            out[:, :, k, :height, :width] = frame[:, :, 0]
        out[..., height:, :width] = out[..., height - 1 : height, :width]
        out[..., width:] = out[..., width - 1 : width]
        return out

    def _choose(self, out: QuantizerOutput, previous: Tensor | None) -> QuantizerOutput:
        """The step's output with rate-distortion optimized tokens in place of the nearest ones (codes
        straight-through, so a gradient still reaches the encoder; loss and stats stay the nearest's)."""
        quantizer = self.tokenizer.quantizer
        self._chosen = choose_tokens(out.indices, previous, quantizer.codes_from_indices, self.rdo)
        chosen = quantizer.codes_from_indices(self._chosen).to(out.codes.dtype)
        return QuantizerOutput(out.codes + (chosen - out.codes).detach(), self._chosen, out.loss, out.stats)

    # Backends (otok.export) override these two hooks; buffering, padding and segments stay here.
    def _step(self, pixels: Tensor, cache) -> tuple[QuantizerOutput, object]:
        """Code one step of padded pixels (B, 3, 1|t, Hp, Wp) from `cache`; returns (output, new cache)."""
        features, cache = self.tokenizer.encoder.step(pixels.to(self.tokenizer.dtype), cache, *self._tiled())
        self.last_features.append(features)
        return self.tokenizer.quantizer(features), cache

    def _tokens(self, out: QuantizerOutput) -> Tensor:
        """A step's output -> its grid (B, h, w) int64, or KL latents (B, C, h, w)."""
        if out.indices is not None:
            return out.indices
        return out.codes.permute(0, 3, 1, 2)

    def state_nbytes(self) -> int:
        return super().state_nbytes() + sum(f.numel() * f.element_size() for f in self._pending)


class StreamDecoder(_Stream):
    """Token grids in, frames out. Build with `Tokenizer.stream_decoder(batch, height, width)`."""

    @torch.no_grad()  # as `Tokenizer.decode`
    def push(self, grid: Tensor, frames: int | None = None) -> Tensor:
        """grid (B, h, w) int64 (KL: (B, C, h, w) float) -> frames (B, 3, 1 or t, H, W).

        frames: keep only the first `frames` frames of this step (the true count of a padded last group).
        """
        grid = as_tokens(grid)
        if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 0):
            raise ValueError(f"frames must be a count >= 0 of this step's frames, got {frames!r}")
        self._check_grid(grid)
        out = self._decode(self._step(grid.to(self.tokenizer.device), self.cache))
        return out if frames is None else out[:, :, :frames]

    def push_codes(self, codes: Tensor) -> Tensor:
        """Decoder codes (B, h, w, C) -> frames cropped to the stream's size (gradient kept)."""
        return self._decode(self.tokenizer.decode_step(codes, self.cache, *self._tiled()))

    def _step(self, grid: Tensor, cache) -> tuple[Tensor, object]:
        """Decode one checked grid from `cache` -> (padded pixels (B, 3, 1|t, Hp, Wp), new cache).
        Backends (otok.export) override this hook."""
        return self.tokenizer.decode_step(self.tokenizer.codes_from_tokens(grid), cache, *self._tiled())

    def _decode(self, result: tuple[Tensor, object]) -> Tensor:
        pixels, cache = result
        self._advance(cache)
        return pixels[..., : self.height, : self.width]

    def _check_grid(self, grid: Tensor) -> None:
        config = self.tokenizer.config
        h, w = self.grid
        if config.discrete:
            expected = (self.batch, h, w)
            if grid.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
                raise ValueError(f"expected an integer token grid, got dtype {grid.dtype}")
            if tuple(grid.shape) != expected:
                raise ValueError(f"expected a token grid of shape {expected}, got {tuple(grid.shape)}")
            if grid.numel() and (grid.min() < 0 or grid.max() >= config.codebook_size):
                raise ValueError(f"token values must lie in [0, {config.codebook_size}), got "
                                 f"[{int(grid.min())}, {int(grid.max())}]")
        else:
            expected = (self.batch, self.tokenizer.quantizer.code_dim, h, w)
            if tuple(grid.shape) != expected or not grid.is_floating_point():
                raise ValueError(f"expected float latents of shape {expected}, got {tuple(grid.shape)} {grid.dtype}")
