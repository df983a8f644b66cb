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
    tau = 0.3 if quantizer == "vq" else 0.1
    video = random_video(2, 14, 32, 48)
    nearest = tok.encode(video)
    chosen = tok.encode(video, rdo=tau)
    changed = chosen != nearest
    assert 0.05 < changed.double().mean() < 1.0  # the tolerance does something, and not everything
    stream, grids, start = tok.stream_encoder(2, 32, 48, rdo=tau), [], 0
    for n in [1, 4, 0, 3, 6]:
        grids += stream.push(video[:, :, start : start + n])
        start += n
    grids += stream.flush()
    assert torch.equal(torch.stack(grids, 1), chosen)
    # a changed token repeats its source: the previous step's (not at a segment start), the one above or left
    c = chosen.numpy()
    for n, s, i, j in zip(*np.nonzero(changed.numpy())):
        sources = [c[n, s, i - 1, j]] if i else []
        sources += [c[n, s, i, j - 1]] if j else []
        sources += [c[n, s - 1, i, j]] if s % tok.config.gop else []
        assert c[n, s, i, j] in sources
    codes = tok.quantizer.codes_from_indices
    with torch.no_grad():
        gaps = 0.5 * (codes(chosen) - codes(nearest)).square().sum(-1)
    assert float(gaps.max()) <= tau + 1e-6
