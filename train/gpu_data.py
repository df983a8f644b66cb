"""Training batches sampled on the device from a data bank already there (`train/bank.py`).

The whole bank sits in device memory as uint8, so a batch is a gather and a resize per clip on the device:
videos (each source's share of the clips from `otok.train.bank.sampling_weights`: no one source, such as
the film, above `max_source_share`), clip starts, square crops (a fraction `min_crop`..1 of the short side,
enlarged at most 4/3), flips and the output resolution are drawn on the host with a generator seeded by the
step (nothing waits on the device), and the frames never leave it. Shrinking crops are resized with
antialiasing.

Batches are indexed by step, like `TrainBatches`: `GpuBatches[step]` is
    {"pixels": uint8 (B, 3, T, res, res) on the device, "kind": "image" | "video", "res": int, "step": step,
     "skipped": []}
and the step's turn (kind, resolution, batch) comes from `turns`, round-robin. Every random choice derives
from (seed, step), so a batch is a function of its step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .bank import MAX_SOURCE_SHARE, Bank, sampling_weights, video_sources


MAX_UPSCALE = 4 / 3


@dataclass(frozen=True)
class Turn:
    """One shape of batch: `batch` clips of `frames` frames at `res` x `res`."""

    kind: str  # "image" or "video"
    res: int
    batch: int
    frames: int

    @property
    def label(self) -> str:
        return f"{self.kind}{self.res}"


def turns_for_budget(kinds_res: list[tuple[str, int]], clip_frames: int, tokens: int, patch: int,
                     tubelet: int) -> list[Turn]:
    """Turns whose batches each hold about `tokens` tokens (a video clip of T frames is 1 + (T-1)/t steps
    of (res/patch)^2 tokens), so every shape fills the device about alike."""
    out = []
    for kind, res in kinds_res:
        frames = clip_frames if kind == "video" else 1
        steps = 1 + -(-(frames - 1) // tubelet)
        out.append(Turn(kind, res, max(1, tokens // (steps * (res // patch) ** 2)), frames))
    return out


class GpuBatches:
    """Per-step batches from `bank` (on its device); see the module docstring."""

    def __init__(self, bank: Bank, turns: list[Turn], seed: int = 0, min_crop: float = 0.5,
                 photo_share: float = 0.5, max_source_share: float = MAX_SOURCE_SHARE) -> None:
        if bank.videos.shape[0] == 0:
            raise ValueError("the bank holds no training videos")
        shortest = int(bank.videos[:, 1].min())
        if shortest < max(t.frames for t in turns):
            raise ValueError(f"every bank video needs {max(t.frames for t in turns)} frames; the shortest has {shortest}")
        self.bank, self.turns, self.seed, self.min_crop = bank, turns, seed, min_crop
        self.photo_share = photo_share if bank.photos.shape[0] else 0.0
        self.device = bank.frames.device
        self.videos = bank.videos.cpu()
        # Sources (the film, a camera, a synthetic generator) weighted by the square root of their frames, none
        # above max_source_share; a bank without a manifest's video list counts each video as a source.
        manifest = bank.manifest if len(bank.manifest.get("videos", [])) == len(self.videos) else {
            "videos": [{"name": f"video{i}", "kind": "real", "frames": 0} for i in range(len(self.videos))]}
        counts = self.videos[:, 1].tolist()
        self.video_weights = torch.from_numpy(sampling_weights(manifest, max_source_share, counts))
        self.sources = video_sources(manifest)
        self.source_shares = {}
        for name, w in zip(self.sources, self.video_weights.tolist()):
            self.source_shares[name] = self.source_shares.get(name, 0.0) + w

    def turn(self, step: int) -> Turn:
        return self.turns[step % len(self.turns)]

    def __getitem__(self, step: int) -> dict:
        turn = self.turn(step)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)  # choices on the host: no device sync
        if turn.kind == "video":
            pixels = self._video(turn.batch, turn.frames, turn.res, g)
        else:
            photos = int(round(turn.batch * self.photo_share))
            parts = [self._photos(photos, turn.res, g)] if photos else []
            if turn.batch - photos:
                parts.append(self._video(turn.batch - photos, 1, turn.res, g))
            pixels = torch.cat(parts)
        return {"pixels": pixels, "kind": turn.kind, "res": turn.res, "step": step, "skipped": []}

    def _video(self, count: int, frames: int, res: int, g: torch.Generator) -> Tensor:
        """`count` clips of `frames` consecutive frames -> uint8 (B, 3, T, res, res)."""
        which = torch.multinomial(self.video_weights, count, replacement=True, generator=g)
        first, length = self.videos[which, 0], self.videos[which, 1]
        start = first + (torch.rand(count, generator=g, dtype=torch.float64) * (length - frames + 1)).long()
        index = (start[:, None] + torch.arange(frames)).flatten().to(self.device, non_blocking=True)
        return self._crop(self.bank.frames[index], count, frames, res, g)

    def _photos(self, count: int, res: int, g: torch.Generator) -> Tensor:
        which = torch.randint(self.bank.photos.shape[0], (count,), generator=g).to(self.device, non_blocking=True)
        return self._crop(self.bank.photos[which], count, 1, res, g)

    def _crop(self, frames: Tensor, count: int, n: int, res: int, g: torch.Generator) -> Tensor:
        """One random square crop per clip (the same for its n frames), resized to res x res (antialiased
        when it shrinks), flipped at random: uint8 (count*n, H, W, 3) -> uint8 (count, 3, n, res, res)."""
        height, width = frames.shape[1:3]
        short = min(height, width)
        # Crops from a min_crop fraction of the short side up to all of it, but never enlarged more than
        # MAX_UPSCALE: an enlarged crop is a blurred picture, and the tokenizer should learn sharp ones.
        low = max(1, round(max(self.min_crop * short, min(short, res / MAX_UPSCALE))))
        sides = torch.randint(low, short + 1, (count,), generator=g).tolist()
        x0 = [int(torch.randint(width - s + 1, (1,), generator=g)) for s in sides]
        y0 = [int(torch.randint(height - s + 1, (1,), generator=g)) for s in sides]
        flips = (torch.rand(count, generator=g) < 0.5).tolist()
        clips = frames.reshape(count, n, height, width, 3)
        out = []
        for i, side in enumerate(sides):
            crop = clips[i, :, y0[i] : y0[i] + side, x0[i] : x0[i] + side].permute(0, 3, 1, 2).float()
            if side != res:
                crop = F.interpolate(crop, size=(res, res), mode="bilinear", antialias=side > res, align_corners=False)
            out.append(crop.flip(-1) if flips[i] else crop)
        pixels = torch.stack(out).round_().clamp_(0, 255).to(torch.uint8)  # (count, n, 3, res, res)
        return pixels.transpose(1, 2).contiguous()
