"""Training batches from folders of images and videos, decoded lazily with PyAV.

Every random choice of a batch (its kind, resolution, files, crops, flips, clip start) derives from
(seed, step, rank, index) and nothing else, so a batch is a pure function of its step: resuming at step s
continues the data exactly, workers may decode in any order, and each rank draws a disjoint shard.

`TrainBatches[step]` is the whole per-rank batch of that step:
    {"pixels": uint8 (B, 3, T, res, res), "kind": "image" | "video", "res": int, "skipped": [paths]}
(T = 1 for images). `to_model_input` turns pixels into the model's float [-1, 1].
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from otok.codec import from_uint8

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
VIDEO_EXTS = {
    ".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".ogv", ".y4m",
    ".gif", ".3gp",
}
MAX_TRIES = 64  # consecutive unreadable files before a batch gives up


class DataError(RuntimeError):
    """No readable media, or too many unreadable files in a row."""


def find_media(dirs: tuple[str, ...] | list[str]) -> tuple[list[str], list[str]]:
    """Image and video paths under `dirs` (recursive, hidden files skipped), each list sorted."""
    images, videos = [], []
    for root_dir in dirs:
        if not os.path.isdir(root_dir):
            raise DataError(f"--data {root_dir} is not a folder")
        for root, subdirs, files in os.walk(root_dir, followlinks=True):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            for name in files:
                ext = os.path.splitext(name)[1].lower()
                if name.startswith("."):
                    continue
                if ext in IMAGE_EXTS:
                    images.append(os.path.join(root, name))
                elif ext in VIDEO_EXTS:
                    videos.append(os.path.join(root, name))
    return sorted(images), sorted(videos)


# ----- decoding ------------------------------------------------------------------------------------
def _crop_plan(width: int, height: int, res: int, min_crop: float, rng: np.random.Generator):
    """A random square crop, as (scaled_w, scaled_h, x0, y0): scale the frame, then cut res x res."""
    side = min(width, height) * rng.uniform(min_crop, 1.0)
    scale = res / side
    sw, sh = max(res, round(width * scale)), max(res, round(height * scale))
    x0 = int(rng.integers(0, sw - res + 1))
    y0 = int(rng.integers(0, sh - res + 1))
    return sw, sh, x0, y0


def _to_array(frame, plan, res: int) -> np.ndarray:
    sw, sh, x0, y0 = plan
    if (frame.width, frame.height) != (sw, sh):
        interpolation = "AREA" if sw < frame.width else "BICUBIC"
        frame = frame.reformat(width=sw, height=sh, format="rgb24", interpolation=interpolation)
    return frame.to_ndarray(format="rgb24")[y0 : y0 + res, x0 : x0 + res]


def read_frames(
    path: str, frames: int, fps: float | None, res: int, min_crop: float, rng: np.random.Generator,
) -> np.ndarray:
    """`frames` frames of `path` from a random start, sampled at `fps` (None: every source frame), one
    random crop resized to res x res for the whole clip -> uint8 (T, res, res, 3). A clip longer than
    the source repeats its last frame. Any decoding problem raises (the caller skips the file)."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        total = stream.frames
        if not total and stream.duration:
            total = int(float(stream.duration * stream.time_base) * rate)
        if not total and container.duration:
            total = int(container.duration / 1e6 * rate)
        stride = rate / fps if fps else 1.0
        first = rng.uniform(0, max(0.0, total - 1 - (frames - 1) * stride)) if total > 1 else 0.0
        wanted = [int(round(first + i * stride)) for i in range(frames)]
        plan = None
        start = stream.start_time or 0
        if wanted[0] > 0:
            try:  # to the keyframe before the clip; frames before it are skipped by index below
                container.seek(start + int(wanted[0] / rate / stream.time_base), stream=stream, backward=True)
            except av.error.FFmpegError:
                pass  # not seekable: decode from the start
        out: list[np.ndarray] = []
        for count, frame in enumerate(container.decode(stream)):
            index = round(float((frame.pts - start) * stream.time_base) * rate) if frame.pts is not None else count
            if index < wanted[len(out)]:
                continue
            if plan is None:
                plan = _crop_plan(frame.width, frame.height, res, min_crop, rng)
            array = _to_array(frame, plan, res)
            while len(out) < frames and wanted[len(out)] <= index:
                out.append(array)
            if len(out) == frames:
                break
    if not out:
        raise ValueError("no decodable frames")
    out += [out[-1]] * (frames - len(out))
    return np.stack(out)


# ----- batches -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchPlan:
    """What a step trains on. Same on every rank (so ranks do equal work); files differ per rank."""

    stage: str
    res: tuple[int, ...]
    seed: int
    has_videos: bool

    def kind(self, step: int) -> str:
        if self.stage == "image" or not self.has_videos:
            return "image"
        return "image" if step % 2 == 0 else "video"  # joint and kl: image and video batches alternate

    def resolution(self, step: int) -> int:
        if len(self.res) == 1:
            return self.res[0]
        rng = np.random.default_rng([self.seed, step, 0x5E5])
        return int(self.res[rng.integers(len(self.res))])


class TrainBatches(torch.utils.data.Dataset):
    """Per-rank batches indexed by step. Image batches use the image files (or, with none, single
    frames of the videos); video batches use `clip_frames` frames at `fps`."""

    def __init__(
        self, dirs, stage: str, batch: int, res: tuple[int, ...], clip_frames: int = 17,
        fps: float | None = None, seed: int = 0, rank: int = 0, world: int = 1, min_crop: float = 0.8,
    ) -> None:
        self.images, self.videos = find_media(dirs)
        if not self.images and not self.videos:
            raise DataError(f"no images or videos found under {', '.join(dirs)}")
        if stage == "joint" and not self.videos:
            raise DataError(f"the joint stage needs videos; none found under {', '.join(dirs)}")
        self.plan = BatchPlan(stage, tuple(res), seed, bool(self.videos))
        self.batch, self.clip_frames, self.fps = batch, clip_frames, fps
        self.seed, self.rank, self.world, self.min_crop = seed, rank, world, min_crop
        self._orders: dict[tuple[str, int], np.ndarray] = {}
        self._bad: set[str] = set()  # files this process failed to read (they fail again: skip fast)

    def __len__(self) -> int:  # steps are unbounded; the sampler says which to draw
        return 1 << 62

    def _file(self, kind: str, files: list[str], position: int) -> str:
        """The file at a global sample position: a fresh seeded permutation of `files` each epoch."""
        epoch, i = divmod(position, len(files))
        key = (kind, epoch)
        if key not in self._orders:
            if len(self._orders) > 4:
                self._orders.clear()
            self._orders[key] = np.random.default_rng([self.seed, epoch, kind == "video"]).permutation(len(files))
        return files[self._orders[key][i]]

    def __getitem__(self, step: int) -> dict:
        kind, res = self.plan.kind(step), self.plan.resolution(step)
        frames = self.clip_frames if kind == "video" else 1
        files = self.images if kind == "image" and self.images else self.videos
        skipped: list[str] = []
        samples = []
        for i in range(self.batch):
            position = (step * self.world + self.rank) * self.batch + i
            rng = np.random.default_rng([self.seed, step, self.rank, i])
            for attempt in range(MAX_TRIES):
                # A bad file is replaced by one far away in the order, the same on every run.
                path = self._file(kind, files, position + attempt * 7919)
                if path in self._bad:
                    skipped.append(path)
                    continue
                try:
                    clip = read_frames(path, frames, self.fps, res, self.min_crop, rng)
                    break
                except Exception:  # noqa: BLE001 - anything PyAV cannot read is skipped
                    self._bad.add(path)
                    skipped.append(path)
            else:
                raise DataError(f"{MAX_TRIES} unreadable files in a row (last: {path})")
            if rng.random() < 0.5:
                clip = clip[:, :, ::-1]
            samples.append(torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2))  # (3, T, res, res)
        return {"pixels": torch.stack(samples), "kind": kind, "res": res, "step": step, "skipped": skipped}


def to_model_input(pixels: Tensor, device: torch.device | str) -> Tensor:
    """uint8 (B, 3, T, H, W) -> float32 (B, 3, T, H, W) in [-1, 1] on `device`."""
    return from_uint8(pixels.to(device, non_blocking=True))


def make_loader(dataset: TrainBatches, start: int, stop: int, workers: int) -> torch.utils.data.DataLoader:
    """Batches of steps start..stop-1 in order; `workers` processes decode ahead."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=range(start, stop), num_workers=workers,
        prefetch_factor=4 if workers else None,
    )
