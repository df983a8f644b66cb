"""Streaming is exact: tokens pushed frame-piece by frame-piece equal whole-clip tokens, the temporal cache
implements sliding-window causal attention, and the state stays bounded."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from codec_helpers import QUANTIZER_VARIANTS, random_video, tiny
from otok.codec import num_steps
from otok.codec.model import pad_frames, patchify

HEIGHT, WIDTH = 40, 72  # not multiples of 64 (nor of the 32-pixel pad multiple), non-square
UNEVEN = [3, 1, 0, 2, 5, 1, 7]


def push_unevenly(stream, video, pieces=UNEVEN):
    grids, start, i = [], 0, 0
    while start < video.shape[2]:
        n = pieces[i % len(pieces)]
        grids += stream.push(video[:, :, start : start + n])
        start += n
        i += 1
    return grids + stream.flush()


@pytest.mark.parametrize("quantizer", sorted(QUANTIZER_VARIANTS))
@pytest.mark.parametrize("frames", [1, 5, 9, 7, 23])  # image, 1+4k, padded last group, two segments
def test_streamed_tokens_equal_whole_clip(quantizer, frames):
    tok = tiny(quantizer)
    video = random_video(2, frames, HEIGHT, WIDTH)
    whole = tok.encode(video)
    steps = num_steps(frames, tok.config.gop, tok.config.tubelet)
    assert whole.shape[:2] == (2, steps)

    with torch.no_grad():
        grids = push_unevenly(tok.stream_encoder(2, HEIGHT, WIDTH), video)
    streamed = torch.stack(grids, dim=1)
    if tok.config.discrete:
        assert streamed.dtype == torch.int64
        assert torch.equal(streamed, whole)
        assert 0 <= int(whole.min()) and int(whole.max()) < tok.config.codebook_size
    else:
        assert streamed.shape == (2, steps, tok.config.latent_dim, *tok.grid_size(HEIGHT, WIDTH))
        assert torch.equal(streamed, whole)

    decoded = tok.decode(whole, frames=frames, height=HEIGHT, width=WIDTH)
    assert decoded.shape == video.shape
    assert torch.isfinite(decoded).all()
    with torch.no_grad():
        dec = tok.stream_decoder(2, HEIGHT, WIDTH)
        pieces = [dec.push(whole[:, s]) for s in range(steps)]
    streamed_video = torch.cat(pieces, dim=2)[:, :, :frames]
    assert torch.allclose(streamed_video, decoded, atol=1e-5)
    assert [p.shape[2] for p in pieces] == [1 if s % tok.config.gop == 0 else 4 for s in range(steps)]


def test_decoder_drops_padding_of_last_group():
    tok = tiny()
    video = random_video(1, 7, 32, 32)
    tokens = tok.encode(video)
    assert tokens.shape[1] == 3  # 1 + 4 + (2 padded to 4)
    assert tok.decode(tokens, frames=7).shape[2] == 7
    assert tok.decode(tokens).shape[2] == 9  # without the true count, the padded frames come back


def test_tokens_are_causal():
    """Changing frames of later steps never changes the tokens of earlier steps."""
    tok = tiny()
    video = random_video(1, 13, 32, 32)
    changed = video.clone()
    changed[:, :, 5:] = -changed[:, :, 5:]  # frames of steps 2 and 3
    a, b = tok.encode(video), tok.encode(changed)
    assert torch.equal(a[:, :2], b[:, :2])
    assert not torch.equal(a[:, 2:], b[:, 2:])


def test_segments_decode_on_their_own():
    tok = tiny(gop=3)  # segments of 1 + 4*2 = 9 frames
    video = random_video(1, 18, 32, 32)
    whole = tok.encode(video)
    second = tok.encode(video[:, :, 9:])
    assert torch.equal(whole[:, 3:], second)
    assert torch.allclose(tok.decode(whole, frames=18)[:, :, 9:], tok.decode(second, frames=9), atol=1e-5)


def _reference_temporal(block, x, window):
    """Sliding-window causal attention over all steps at once. x: (S, N, D) -> (S, N, D)."""
    s, n, d = x.shape
    heads, hd = block.heads, d // block.heads
    q, k, v = block.qkv(block.norm1(x)).reshape(s, n, 3, heads, hd).permute(2, 1, 3, 0, 4)  # (N, heads, S, hd)
    i = torch.arange(s)
    distance = i[:, None] - i[None, :]
    allowed = (distance >= 0) & (distance < window)
    slot = (window - 1 - distance).clamp(0, window - 1)
    bias = block.distance_bias[:, slot] + torch.where(allowed, 0.0, -math.inf)  # (heads, S, S)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None])
    x = x + block.proj(out.permute(2, 0, 1, 3).reshape(s, n, d))
    return x + block.mlp(block.norm2(x))


def test_cache_equals_sliding_window_attention():
    """The K/V ring buffer computes exactly what full-sequence banded causal attention computes."""
    tok = tiny(gop=100, temporal_layers=2)
    frames = 1 + 4 * 9  # 10 steps: the 5-step window slides
    video = random_video(1, frames, 32, 32)
    with torch.no_grad():
        stream = tok.stream_encoder(1, 32, 32)
        stream.push_quantized(video)
        streamed = torch.stack(stream.last_features)  # (S, B, h, w, C)

        enc, p = tok.encoder, tok.config.patch
        padded = pad_frames(video, *tok.padded_size(32, 32))
        steps = [padded[:, :, :1]] + [padded[:, :, 1 + 4 * j : 5 + 4 * j] for j in range(9)]
        x = []
        for j, pixels in enumerate(steps):
            y = (enc.embed_image if j == 0 else enc.embed_tube)(patchify(pixels, p))
            for block in enc.spatial:
                y = block(y)
            x.append(y.reshape(-1, y.shape[-1]))
        x = torch.stack(x)  # (S, N, D)
        for block in enc.temporal:
            x = _reference_temporal(block, x, tok.config.temporal_window)
        reference = enc.to_latent(enc.norm(x)).reshape(streamed.shape)
    assert torch.allclose(streamed, reference, atol=1e-5)


def test_state_is_bounded():
    tok = tiny(gop=10_000)
    stream = tok.stream_encoder(1, 32, 32)
    group = random_video(1, 4, 32, 32)
    sizes = {}
    with torch.no_grad():
        stream.push(group[:, :, :1])
        for step in range(1, 201):
            assert len(stream.push(group)) == 1
            if step in (10, 200):
                sizes[step] = stream.state_nbytes()
    assert sizes[10] == sizes[200] > 0
    assert stream.steps == 201


def test_stream_rejects_mismatched_frames():
    tok = tiny()
    stream = tok.stream_encoder(2, 32, 32)
    with pytest.raises(ValueError, match="batch 2 and size 32x32"):
        stream.push(random_video(1, 1, 32, 32))
    dec = tok.stream_decoder(1, 32, 32)
    with pytest.raises(ValueError, match="token grid of shape"):
        dec.push(torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token values must lie in \[0, 256\)"):
        dec.push(torch.full((1, 4, 4), 256))


def test_streamed_tokens_equal_whole_clip_tokens_at_a_near_tie():
    """A clip where one position's two nearest codes differ by one float32 step (the shipped otok-s, step 3 at
    (20, 27)): pushed in two parts outside `torch.no_grad`, as the README does, it must give `encode`'s tokens
    (autograd picks other kernels, whose last bit decided the tie)."""
    from otok.codec import load

    tok = load("otok-s")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(185)
        video = torch.rand(1, 3, 17, 144, 256) * 2 - 1
    tokens = tok.encode(video)
    stream = tok.stream_encoder(batch=1, height=144, width=256)
    grids = stream.push(video[:, :, :6]) + stream.push(video[:, :, 6:]) + stream.flush()
    assert torch.equal(torch.stack(grids, 1), tokens)


def test_decode_takes_what_read_tokens_gives_and_refuses_the_rest():
    """issue 29 B.7: NumPy arrays into decode gave AttributeError; push(frames=-1) returned nothing, silently."""
    import numpy as np

    tok = tiny()
    tokens = tok.encode(random_video(1, 5, 32, 32))
    as_numpy = tokens.numpy().astype(np.int32)
    assert torch.equal(tok.decode(as_numpy, frames=5), tok.decode(tokens, frames=5))
    with pytest.raises(ValueError, match="torch.Tensor or NumPy array"):
        tok.decode([[1, 2]], frames=1)
    stream = tok.stream_decoder(1, 32, 32)
    with pytest.raises(ValueError, match="frames must be a count"):
        stream.push(tokens[:, 0], frames=-1)
