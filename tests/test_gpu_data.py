"""Batches sampled from a data bank in device memory (`otok.train.gpu_data`), on the CPU: shapes, clips of
consecutive frames that never cross from one video into the next, crops of the right content, batches
that are functions of their step, token budgets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from otok.train.gpu_data import GpuBatches, Turn, turns_for_budget


def _bank(videos=((0, 30), (30, 20)), height=36, width=64):
    """Frame i is filled with the value i (so a clip shows which frames it took); photos are 2x-tiled."""
    total = sum(n for _, n in videos)
    frames = torch.arange(total, dtype=torch.uint8)[:, None, None, None].expand(total, height, width, 3).contiguous()
    photos = torch.full((3, 40, 40, 3), 200, dtype=torch.uint8)
    return SimpleNamespace(frames=frames, videos=torch.tensor(videos), photos=photos, heldout=[], manifest={})


def test_video_clips_are_consecutive_frames_of_one_video():
    data = GpuBatches(_bank(), [Turn("video", 16, 12, 9)], seed=3, min_crop=0.5)
    batch = data[0]
    assert batch["pixels"].shape == (12, 3, 9, 16, 16) and batch["pixels"].dtype == torch.uint8
    values = batch["pixels"].float().mean(dim=(1, 3, 4))  # (B, T): the frame index of each frame
    assert torch.equal(values, values.round())  # one source frame per output frame, not a blend
    steps = values.diff(dim=1)
    assert torch.all(steps == 1)
    first, last = values[:, 0], values[:, -1]
    in_first = last < 30
    in_second = first >= 30
    assert torch.all(in_first | in_second)  # never across the boundary between the two videos


def test_batches_are_functions_of_the_step():
    data = GpuBatches(_bank(), [Turn("video", 16, 4, 5), Turn("image", 24, 6, 1)], seed=1)
    assert torch.equal(data[7]["pixels"], data[7]["pixels"])
    assert not torch.equal(data[0]["pixels"], data[2]["pixels"])
    image = data[1]
    assert image["kind"] == "image" and image["pixels"].shape == (6, 3, 1, 24, 24)
    assert (image["pixels"] == 200).all(dim=(1, 2, 3, 4)).sum() == 3  # half the image batch from the photos


def test_crops_are_square_views_of_the_frame_and_flips_happen():
    bank = _bank(videos=((0, 40),))
    ramp = torch.arange(64, dtype=torch.uint8) * 4
    bank.frames = ramp[None, None, :, None].expand(40, 36, 64, 3).contiguous()
    data = GpuBatches(bank, [Turn("video", 32, 64, 1)], seed=0, min_crop=0.5)
    rows = data[0]["pixels"][:, 0, 0].float()  # (B, 32, 32): a horizontal ramp, rising or falling
    left, right = rows[:, :, 0].mean(1), rows[:, :, -1].mean(1)
    assert (right > left).any() and (right < left).any()  # flipped and not
    assert torch.all(rows.std(dim=1) < 1e-3)  # the ramp is the same on every row of a crop


def test_turns_fill_a_token_budget():
    turns = turns_for_budget([("video", 128), ("video", 256), ("image", 256)], 17, 2**17, patch=8, tubelet=4)
    assert [t.batch for t in turns] == [102, 25, 128]
    assert [t.frames for t in turns] == [17, 17, 1]


def test_a_bank_with_too_short_videos_is_refused():
    with pytest.raises(ValueError, match="17 frames"):
        GpuBatches(_bank(videos=((0, 10), (10, 40))), [Turn("video", 16, 2, 17)])
