"""Every registered model, swept (as timm sweeps its registry): shapes, finite outputs, gradients, and the
streamed step path against an independent reference, the parallel training pass. A model added to the
registry is tested without a line here."""

from __future__ import annotations

import pytest
import torch

from codec_helpers import random_video
from otok.codec import list_models, load

FRAMES, SIZE = 5, 48  # an image step and a tube; 48 is not a multiple of a window, so padding is exercised


@pytest.fixture(scope="module", params=list_models())
def model(request):
    return load(request.param, pretrained=False, seed=0)


def test_shapes_and_finite_outputs(model):
    c = model.config
    video = random_video(1, FRAMES, SIZE, SIZE)
    tokens = model.encode(video)
    h, w = model.grid_size(SIZE, SIZE)
    assert tokens.shape == ((1, 2, h, w) if c.discrete else (1, 2, model.quantizer.code_dim, h, w))
    if c.discrete:
        assert tokens.dtype == torch.int64 and 0 <= int(tokens.min()) and int(tokens.max()) < c.codebook_size
    decoded = model.decode(tokens, frames=FRAMES, height=SIZE, width=SIZE)
    assert decoded.shape == video.shape and torch.isfinite(decoded).all()


def test_streamed_in_uneven_pushes_equals_the_parallel_pass(model):
    """The step path, fed 1, 2 and 2 frames at a time, against `forward` (every step at once, another
    implementation): the same reconstruction; and the same tokens as one whole-clip encode."""
    video = random_video(1, FRAMES, SIZE, SIZE, seed=2)
    stream = model.stream_encoder(1, SIZE, SIZE)
    grids = []
    for start, stop in ((0, 1), (1, 3), (3, FRAMES)):
        grids += stream.push(video[:, :, start:stop])
    grids += stream.flush()
    streamed = torch.stack(grids, dim=1)
    whole = model.encode(video)
    assert torch.equal(streamed, whole)
    decoded = model.decode(streamed, frames=FRAMES, height=SIZE, width=SIZE)
    with torch.no_grad():
        parallel = model(video).reconstruction
    torch.testing.assert_close(decoded, parallel, rtol=1e-4, atol=1e-4)


def test_gradients_are_finite_and_reach_both_ends(model):
    model.train()
    try:
        model.zero_grad(set_to_none=True)
        video = random_video(1, FRAMES, SIZE, SIZE, seed=3)
        out = model(video)
        ((out.reconstruction - video).square().mean() + out.quantizer_loss).backward()
        grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
        assert all(torch.isfinite(g).all() for g in grads.values())
        first = next(name for name, _ in model.named_parameters() if name.startswith("encoder."))
        last = [name for name, _ in model.named_parameters() if name.startswith("decoder.")][-1]
        for name in (first, last):
            assert name in grads and grads[name].abs().sum() > 0, name
    finally:
        model.eval()
        model.zero_grad(set_to_none=True)
