"""Rate-distortion optimized token choice (codec/rdo.py): what it may change, in which order, and that the
streaming and whole-clip paths agree on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from otok.codec.rdo import check_tau, choose_tokens
from codec_helpers import random_video, tiny


def _table(k: int, dim: int, seed: int) -> torch.Tensor:
    """Unit codes in a few tight clusters, so that small tolerances matter."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(max(1, k // 4), dim, generator=g), dim=-1)
    codes = centres[torch.arange(k) % len(centres)] + 0.15 * torch.randn(k, dim, generator=g)
    return F.normalize(codes, dim=-1)


def _gap(table: torch.Tensor, a, b) -> float:
    return 0.5 * float((table[a] - table[b]).square().sum())


def _raster_reference(nearest: np.ndarray, previous: np.ndarray | None, table: torch.Tensor, tau: float):
    """The rule, one position at a time in raster order: T, else U, else L, else the nearest token."""
    b, h, w = nearest.shape
    out = nearest.copy()
    for n in range(b):
        for i in range(h):
            for j in range(w):
                best = nearest[n, i, j]
                if previous is not None and _gap(table, best, previous[n, i, j]) <= tau:
                    out[n, i, j] = previous[n, i, j]
                elif i and _gap(table, best, out[n, i - 1, j]) <= tau:
                    out[n, i, j] = out[n, i - 1, j]
                elif j and _gap(table, best, out[n, i, j - 1]) <= tau:
                    out[n, i, j] = out[n, i, j - 1]
    return out


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 2), h=st.integers(1, 7), w=st.integers(1, 9), k=st.sampled_from([2, 5, 64]),
       tau=st.sampled_from([0.0, 0.01, 0.05, 0.2, 2.0]), with_previous=st.booleans(), seed=st.integers(0, 10**6))
def test_choice_is_the_raster_rule(b, h, w, k, tau, with_previous, seed):
    table = _table(k, 4, seed)
    rng = np.random.default_rng(seed)
    nearest = rng.integers(0, k, (b, h, w))
    previous = rng.integers(0, k, (b, h, w)) if with_previous else None
    codes_of = lambda t: F.embedding(t, table)  # noqa: E731
    out = choose_tokens(torch.from_numpy(nearest), None if previous is None else torch.from_numpy(previous),
                        codes_of, tau).numpy()
    np.testing.assert_array_equal(out, _raster_reference(nearest, previous, table, tau))
    # every token stays within tau of the nearest code
    gaps = 0.5 * (table[out] - table[nearest]).square().sum(-1)
    assert float(gaps.max()) <= tau + 1e-6


def test_tolerance_zero_keeps_the_nearest_tokens_and_large_ones_collapse_a_step():
    table = _table(16, 4, 0)
    nearest = torch.randint(0, 16, (1, 5, 6), generator=torch.Generator().manual_seed(3))
    codes_of = lambda t: F.embedding(t, table)  # noqa: E731
    assert choose_tokens(nearest, None, codes_of, 0.0) is nearest
    # every gap between unit codes is at most 2: the whole step repeats the first token, or the previous step
    assert (choose_tokens(nearest, None, codes_of, 2.0) == nearest[0, 0, 0]).all()
    previous = torch.randint(0, 16, (1, 5, 6), generator=torch.Generator().manual_seed(4))
    assert torch.equal(choose_tokens(nearest, previous, codes_of, 2.0), previous)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_bad_tolerances_are_refused(bad):
    with pytest.raises(ValueError, match="finite number >= 0"):
        check_tau(bad)
    with pytest.raises(ValueError, match="finite number >= 0"):
        tiny().stream_encoder(1, 32, 32, rdo=bad)


def test_kl_models_refuse_rdo():
    with pytest.raises(ValueError, match="discrete tokens"):
        tiny("kl").encode(random_video(1, 5, 32, 32), rdo=0.1)


@pytest.mark.parametrize("quantizer", ["vq", "fsq"])
def test_stream_equals_whole_clip_and_only_cheaper_tokens_change(quantizer):
    tok = tiny(quantizer)
    tau, gop = (0.3 if quantizer == "vq" else 0.1), 2
    video = random_video(2, 14, 32, 48)
    nearest = tok.encode(video, gop=gop)
    chosen = tok.encode(video, gop=gop, rdo=tau)
    changed = chosen != nearest
    assert 0.05 < changed.double().mean() < 1.0  # the tolerance does something, and not everything
    # step by step: the rule applied to each step's nearest tokens, with no previous step at segment starts
    codes_of = tok.quantizer.codes_from_indices
    for s in range(chosen.shape[1]):
        previous = chosen[:, s - 1] if s % gop else None
        assert torch.equal(chosen[:, s], choose_tokens(nearest[:, s], previous, codes_of, tau))
    # a stream in uneven pushes, across segment boundaries, then flushed and used again: the same tokens
    stream = tok.stream_encoder(2, 32, 48, gop=gop, rdo=tau)
    for _ in range(2):
        grids, start = [], 0
        for n in [1, 4, 0, 3, 6]:
            grids += stream.push(video[:, :, start : start + n])
            start += n
        grids += stream.flush()
        assert torch.equal(torch.stack(grids, 1), chosen)
    with torch.no_grad():
        gaps = 0.5 * (codes_of(chosen) - codes_of(nearest)).square().sum(-1)
    assert float(gaps.max()) <= tau + 1e-6


def test_ties_and_duplicate_codes_follow_the_rule():
    """Codes on a grid (exact duplicates, gaps exactly equal to tau): '<= tau' takes the source."""
    table = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.5, 0.0], [1.0, 0.0]])  # 0 == 1; gap(0, 2) = 0.125
    codes_of = lambda t: F.embedding(t, table)  # noqa: E731
    nearest = torch.tensor([[[0, 1, 2, 3], [2, 2, 3, 0]]])
    out = choose_tokens(nearest, None, codes_of, 0.125)
    np.testing.assert_array_equal(out.numpy(), _raster_reference(nearest.numpy(), None, table, 0.125))
    assert out[0, 0].tolist() == [0, 0, 0, 3]  # duplicates and an exact tie repeat the left token
    int32 = choose_tokens(nearest.int(), None, codes_of, 0.125)
    assert int32.dtype == torch.int64 and torch.equal(int32, out)


def test_gradient_reaches_the_encoder_through_chosen_codes():
    tok = tiny().train()
    stream = tok.stream_encoder(1, 32, 32, rdo=0.3)
    outputs = stream.push_quantized(random_video(1, 5, 32, 32)) + stream.flush_quantized()
    torch.stack([o.codes.sum() for o in outputs]).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tok.encoder.parameters())
    torch.testing.assert_close(outputs[1].codes.detach(), tok.quantizer.codes_from_indices(outputs[1].indices).detach(),
                               atol=1e-6, rtol=0)  # the chosen codes, up to the straight-through rounding


def test_training_pass_decodes_the_chosen_tokens_with_a_gradient():
    """forward(video, rdo=tau) reconstructs from the tokens encode(video, rdo=tau) chooses (what `otok
    encode` codes, so the decoder can learn from them) and still passes a gradient to the encoder."""
    tok = tiny()
    video = random_video(1, 9, 32, 32, seed=5)
    tau = 0.3  # otok-tiny's random codes lie far apart: a large tolerance changes tokens
    chosen, nearest = tok.encode(video, rdo=tau), tok.encode(video)
    assert not torch.equal(chosen, nearest)
    out = tok(video, rdo=tau)
    with torch.no_grad():
        expected = tok.decode(chosen, frames=9)
    torch.testing.assert_close(out.reconstruction, expected, rtol=1e-4, atol=1e-4)
    out.reconstruction.square().mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tok.encoder.parameters())
