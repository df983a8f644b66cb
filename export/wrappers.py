"""Export views of the live tokenizer: one step of the encoder or decoder as a plain tensor function.

The wrappers hold the live submodules of a `Tokenizer` (never copies), so an export always reflects the
weights in memory. They rewrite only what does not trace into a shape-generic graph (Segment Anything
style):

- `SpatialBlock` decides in Python whether to shift along an axis (`h > window`); a trace would bake that
  decision for the example shape. `ExportSpatialBlock` computes the shift as a tensor (0 where the axis
  holds one window) and rolls with a gather, which is the same arithmetic: with a zero shift the region
  mask is all zeros and the roll is the identity.
- The VQ nearest-code search splits its rows into chunks whose count depends on the example shape; the
  wrapper uses one matmul + argmax over the same normalized codebook.

State tensors (one per kind, all temporal layers stacked), a fixed-size shift register per grid position:

    keys, values: (L, B, h, w, heads, temporal_window - 1, head_dim)   slot j = the step at distance W-1-j
    valid:        (temporal_window - 1,) float, 1.0 where the slot holds a past step of this segment

Only batch, grid height and grid width vary, so a TensorRT optimization profile needs nothing else.
Tokens cross the graph boundary as int32 (TensorRT's native index type); KL latents as float (B, C, h, w).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otok.codec import Tokenizer
from otok.codec.layers import SpatialBlock, shifted_window_mask, window_merge, window_partition
from otok.codec.model import patchify

TOKEN_DTYPE = torch.int32

# Graph name -> (input names, output names). `{code}` is `tokens` (discrete models) or `latents` (KL).
STATE_IN = ["keys", "values", "valid"]
STATE_OUT = ["keys_out", "values_out", "valid_out"]


def graph_io(discrete: bool) -> dict[str, tuple[list[str], list[str]]]:
    code = "tokens" if discrete else "latents"
    return {
        "encoder_image": (["pixels"], [code, *STATE_OUT]),
        "encoder_video": (["pixels", *STATE_IN], [code, *STATE_OUT]),
        "decoder_image": ([code], ["pixels", *STATE_OUT]),
        "decoder_video": ([code, *STATE_IN], ["pixels", *STATE_OUT]),
    }


def _roll(x: Tensor, shift: Tensor | int, size: Tensor | int, dim: int) -> Tensor:
    """torch.roll(x, -shift, dim) for 0 <= shift < size, as a gather (the shift may be a traced tensor)."""
    index = torch.arange(size, device=x.device) + shift
    index = torch.where(index >= size, index - size, index)
    return x.index_select(dim, index)


def _unroll(x: Tensor, shift: Tensor | int, size: Tensor | int, dim: int) -> Tensor:
    """torch.roll(x, shift, dim), the inverse of `_roll`."""
    index = torch.arange(size, device=x.device) - shift
    index = torch.where(index < 0, index + size, index)
    return x.index_select(dim, index)


class ExportSpatialBlock(nn.Module):
    """A live `SpatialBlock` whose shift decision is data, not Python control flow."""

    def __init__(self, block: SpatialBlock) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, h, w, D) with h, w multiples of the window -> (B, h, w, D)."""
        blk = self.block
        b, h, w, _ = x.shape
        y = blk.norm1(x)
        mask = None
        if blk.shift:  # a property of the layer; whether an axis shifts depends on its size
            shift_h = (torch.as_tensor(h) > blk.window).long() * blk.shift
            shift_w = (torch.as_tensor(w) > blk.window).long() * blk.shift
            y = _roll(_roll(y, shift_h, h, 1), shift_w, w, 2)
            mask = shifted_window_mask(h, w, blk.window, shift_h, shift_w, x.device).to(x.dtype)
        y = blk.attn(window_partition(y, blk.window), mask)
        y = window_merge(y, blk.window, b, h, w)
        if blk.shift:
            y = _unroll(_unroll(y, shift_h, h, 1), shift_w, w, 2)
        x = x + y
        return x + blk.mlp(blk.norm2(x))


class _Temporal(nn.Module):
    """The live temporal blocks over stacked state tensors."""

    def __init__(self, blocks: nn.ModuleList, temporal_window: int) -> None:
        super().__init__()
        if len(blocks) == 0:
            raise ValueError("export needs at least one temporal layer (the state would be empty)")
        self.blocks = blocks
        self.slots = temporal_window - 1

    def empty(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The reset state for a step of x (B, h, w, D)."""
        b, h, w, d = x.shape
        heads = self.blocks[0].heads
        shape = (len(self.blocks), b, h, w, heads, self.slots, d // heads)
        zeros = x.new_zeros(shape)
        return zeros, zeros, x.new_zeros(self.slots)

    def forward(self, x: Tensor, keys: Tensor, values: Tensor, valid: Tensor):
        """x (B, h, w, D); keys/values (L, B, h, w, heads, W-1, hd); valid (W-1,) -> x and the next state."""
        b, h, w, _ = x.shape
        new_keys, new_values = [], []
        for i, block in enumerate(self.blocks):
            k = keys[i].reshape(-1, keys.shape[4], self.slots, keys.shape[6])  # (B*h*w, heads, W-1, hd)
            v = values[i].reshape(-1, values.shape[4], self.slots, values.shape[6])
            x, k, v = block(x, k, v, valid)
            new_keys.append(k.reshape(b, h, w, k.shape[1], self.slots, k.shape[3]))
            new_values.append(v.reshape(b, h, w, v.shape[1], self.slots, v.shape[3]))
        next_valid = torch.cat([valid[1:], valid.new_ones(1)])
        return x, torch.stack(new_keys), torch.stack(new_values), next_valid


class _Quantize(nn.Module):
    """Encoder features (B, h, w, C) -> tokens (B, h, w) int32, or KL latents (B, C, h, w)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__()
        self.quantizer = tokenizer.quantizer
        self.kind = tokenizer.config.quantizer

    def forward(self, features: Tensor) -> Tensor:
        if self.kind == "vq":
            z = F.normalize(features, dim=-1)
            return (z @ self.quantizer.normalized_codebook().t()).argmax(-1).to(TOKEN_DTYPE)
        out = self.quantizer(features)
        if out.indices is None:
            return out.codes.permute(0, 3, 1, 2)
        return out.indices.to(TOKEN_DTYPE)


class EncoderStep(nn.Module):
    """One encoder step. image=True: pixels (B, 3, 1, Hp, Wp), no state in (a segment start);
    image=False: pixels (B, 3, t, Hp, Wp) and the state. Returns (tokens | latents, keys, values, valid)."""

    def __init__(self, tokenizer: Tokenizer, image: bool) -> None:
        super().__init__()
        enc = tokenizer.encoder
        self.image = image
        self.patch = enc.patch
        self.embed = enc.embed_image if image else enc.embed_tube
        self.spatial = nn.ModuleList(ExportSpatialBlock(b) for b in enc.spatial)
        self.temporal = _Temporal(enc.temporal, tokenizer.config.temporal_window)
        self.norm, self.to_latent = enc.norm, enc.to_latent
        self.quantize = _Quantize(tokenizer)

    def forward(self, pixels: Tensor, *state: Tensor):
        x = self.embed(patchify(pixels, self.patch))
        for block in self.spatial:
            x = block(x)
        x, keys, values, valid = self.temporal(x, *(self.temporal.empty(x) if self.image else state))
        return self.quantize(self.to_latent(self.norm(x))), keys, values, valid


class DecoderStep(nn.Module):
    """One decoder step. Input tokens (B, h, w) int32 (KL: latents (B, C, h, w)); image=False adds the
    state. Returns (pixels (B, 3, 1 | t, Hp, Wp), keys, values, valid)."""

    def __init__(self, tokenizer: Tokenizer, image: bool) -> None:
        super().__init__()
        dec = tokenizer.decoder
        self.image = image
        self.discrete = tokenizer.config.discrete
        self.quantizer = tokenizer.quantizer
        self.from_latent = dec.from_latent
        self.temporal = _Temporal(dec.temporal, tokenizer.config.temporal_window)
        self.spatial = nn.ModuleList(ExportSpatialBlock(b) for b in dec.spatial)
        self.decoder = dec  # its to_pixels: the heads, upsampling and refinement

    def forward(self, grid: Tensor, *state: Tensor):
        if self.discrete:
            codes = self.quantizer.codes_from_indices(grid.long())
        else:
            codes = grid.permute(0, 2, 3, 1)
        x = self.from_latent(codes.to(self.from_latent.weight.dtype))
        x, keys, values, valid = self.temporal(x, *(self.temporal.empty(x) if self.image else state))
        for block in self.spatial:
            x = block(x)
        return self.decoder.to_pixels(x, self.image), keys, values, valid


def step_modules(tokenizer: Tokenizer) -> dict[str, nn.Module]:
    """The four graphs' modules, keyed by graph name."""
    return {
        "encoder_image": EncoderStep(tokenizer, image=True).eval(),
        "encoder_video": EncoderStep(tokenizer, image=False).eval(),
        "decoder_image": DecoderStep(tokenizer, image=True).eval(),
        "decoder_video": DecoderStep(tokenizer, image=False).eval(),
    }
