"""The data bank: all training footage, training photos and the held-out set in one file, read without PyAV.

Written by `tools/bank/make_dataset.py --bank FILE` on a machine with PyAV; read here with cv2 (opencv-python-headless)
and numpy only, so a training machine needs neither PyAV nor constriction nor zstandard.

File format (version 1): an uncompressed ZIP (ZIP_STORED: the media are compressed already) holding
- `manifest.json`:
    {"format": "otok-bank", "version": 1,
     "video_size": [W, H],            # every training video frame is W x H (default 384 x 216)
     "photo_side": S,                 # every training photo is S x S (default 320)
     "x264": {"crf", "preset", "pix_fmt", "heldout_crf"}, "photo_jpeg_quality": q,
     "counts": {"frames", "real_frames", "videos", "photos", "heldout", "frames_per_source": {name: n}},
     "heldout_split": {...},          # the file names held out, by package
     "videos":  [{"name", "kind": "real" | "synthetic", "source", "origin", "licence", "source_file", "fps",
                  "frames", "files": [{"file": "videos/NAME.000.mp4", "frames", "bytes"}, ...]}, ...],
     "photos":  [{"name", "file": "photos/NNNN_NAME.jpg", "origin", "licence", "source_file", "bytes"}, ...],
     "heldout": [{"name", "file", "frames", "width", "height", "origin", "licence", "source_file"}, ...]}
  A video's "source" names the film, capture or generator it comes from (several videos may share one:
  the film and a clip of it, the sequences of one camera, the clips of one synthetic generator); it is
  what sampling balances (`sampling_weights`). Banks written before the field existed get it derived
  (`video_sources`). Synthetic videos may carry "cutout_files" (the photos their objects were cut from).
  A bank cut from another (`make_dataset.py --subset-of`) records {"sha256", "segments_kept"} as "subset_of".
- `videos/*.mp4`: H.264 (libx264, yuv420p) at the source's frame rate. A long video is cut into segments of
  at most 1024 frames (so it decodes in parallel); a video's segments follow each other in `files` and its
  frames are their frames end to end. Every video has at least 17 frames.
- `photos/*.jpg`: the training photos, centre-cropped and resized to S x S.
- `heldout/*`: the held-out items at short side 256: the video's first 33 frames as H.264 (.mp4, low CRF),
  photos as PNG. No training video or photo comes from a held-out item.

`load_bank` decodes the videos in a thread pool with cv2.VideoCapture (which needs a file path: the videos are
extracted to a temporary folder first), checks every frame count and size against the manifest, and returns
uint8 RGB tensors on `device`. `sampling_weights` gives each training video's share of sampled clips.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

FORMAT, VERSION = "otok-bank", 1
# No one source (the film, a camera, a synthetic generator) gets more than this share of the sampled clips;
# docs/DATA.md says why this value.
MAX_SOURCE_SHARE = 0.2


class BankError(ValueError):
    """The file is not a readable bank (not a ZIP, no manifest, another version, a frame count or size that
    disagrees with its manifest)."""


@dataclass
class Bank:
    frames: torch.Tensor  # uint8 (N, H, W, 3) RGB: every training video frame, videos end to end
    videos: torch.Tensor  # int64 (V, 2): (first frame index in `frames`, frame count) per training video
    photos: torch.Tensor  # uint8 (P, S, S, 3) RGB: training photos
    heldout: list[tuple[str, torch.Tensor]]  # (name, uint8 (T, H, W, 3) RGB) per held-out item
    manifest: dict  # the JSON manifest (sources, licences, counts, sizes)


def read_manifest(zf: zipfile.ZipFile) -> dict:
    try:
        manifest = json.loads(zf.read("manifest.json"))
    except KeyError:
        raise BankError("no manifest.json: not an otok data bank") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise BankError(f"format {manifest.get('format')!r} version {manifest.get('version')!r}; "
                        f"this reader reads {FORMAT!r} version {VERSION}")
    return manifest


def decode_video(path: str, out: np.ndarray) -> None:
    """Decode every frame of `path` into `out` (uint8 (T, H, W, 3), RGB); T must be its frame count."""
    import cv2

    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise BankError(f"{os.path.basename(path)}: cv2 cannot open it")
    count = 0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if count >= len(out) or bgr.shape != out.shape[1:]:
                raise BankError(f"{os.path.basename(path)}: frame {count} is {bgr.shape}, "
                                f"the manifest says {len(out)} frames of {out.shape[1:]}")
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=out[count])
            count += 1
    finally:
        capture.release()
    if count != len(out):
        raise BankError(f"{os.path.basename(path)}: {count} frames decoded, the manifest says {len(out)}")


def decode_image(data: bytes) -> np.ndarray:
    """JPEG or PNG bytes -> uint8 (H, W, 3) RGB."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise BankError("an image in the bank does not decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def video_table(manifest: dict) -> torch.Tensor:
    """int64 (V, 2): (first frame, frame count) of each training video, videos end to end."""
    counts = [v["frames"] for v in manifest["videos"]]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if counts else np.zeros(0, np.int64)
    return torch.tensor(np.stack([starts, counts], 1) if counts else np.zeros((0, 2)), dtype=torch.int64)


def decode_training_videos(zf: zipfile.ZipFile, manifest: dict, tmp: str, workers: int) -> torch.Tensor:
    """Every training video frame -> uint8 (N, H, W, 3), decoded straight into one preallocated tensor."""
    width, height = manifest["video_size"]
    segments = [seg for v in manifest["videos"] for seg in v["files"]]
    total = sum(seg["frames"] for seg in segments)
    if total != sum(v["frames"] for v in manifest["videos"]):
        raise BankError("the manifest's segment frame counts do not add up to its video frame counts")
    frames = torch.empty((total, height, width, 3), dtype=torch.uint8)
    array = frames.numpy()
    jobs, start = [], 0
    for seg in segments:
        path = zf.extract(seg["file"], tmp)
        jobs.append((path, array[start : start + seg["frames"]]))
        start += seg["frames"]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for future in [pool.submit(decode_video, path, out) for path, out in jobs]:
            future.result()
    return frames


def decode_photos(zf: zipfile.ZipFile, manifest: dict) -> torch.Tensor:
    side = manifest["photo_side"]
    photos = torch.empty((len(manifest["photos"]), side, side, 3), dtype=torch.uint8)
    for i, entry in enumerate(manifest["photos"]):
        rgb = decode_image(zf.read(entry["file"]))
        if rgb.shape != (side, side, 3):
            raise BankError(f"{entry['file']} is {rgb.shape}, the manifest says {side} x {side}")
        photos[i] = torch.from_numpy(rgb)
    return photos


def decode_heldout(zf: zipfile.ZipFile, manifest: dict, tmp: str) -> list[tuple[str, torch.Tensor]]:
    items = []
    for entry in manifest["heldout"]:
        shape = (entry["frames"], entry["height"], entry["width"], 3)
        if entry["file"].endswith(".mp4"):
            out = np.empty(shape, np.uint8)
            decode_video(zf.extract(entry["file"], tmp), out)
        else:
            out = decode_image(zf.read(entry["file"]))[None]
            if out.shape != shape:
                raise BankError(f"{entry['file']} is {out.shape[1:]}, the manifest says {shape[1:]}")
        items.append((entry["name"], torch.from_numpy(out)))
    return items


def load_bank(path, device="cpu", workers: int = 8) -> Bank:
    """Read a bank written by `make_dataset.py --bank` -> Bank with its tensors on `device`."""
    if not zipfile.is_zipfile(path):
        raise BankError(f"{path}: not a ZIP file, so not an otok data bank")
    with zipfile.ZipFile(path) as zf, tempfile.TemporaryDirectory(prefix="otok-bank-") as tmp:
        manifest = read_manifest(zf)
        frames = decode_training_videos(zf, manifest, tmp, workers)
        photos = decode_photos(zf, manifest)
        heldout = decode_heldout(zf, manifest, tmp)
    videos = video_table(manifest)
    return Bank(frames.to(device), videos.to(device), photos.to(device),
                [(name, t.to(device)) for name, t in heldout], manifest)


# ----- sampling ----------------------------------------------------------------------------------------
def video_sources(manifest: dict) -> list[str]:
    """The source of each training video: its "source" field, or for a bank written before that field
    existed, derived the way `tools/bank/make_dataset.py` names them (the Big Buck Bunny film and its clip are
    one source, ViSP's camera sequences one, the camera-motion clips one; any other video is its own)."""
    out = []
    for v in manifest.get("videos", []):
        if v.get("source"):
            out.append(v["source"])
        elif v.get("kind") == "synthetic":
            out.append("object_motion" if v["name"].startswith("objects_") else "camera_motion")
        elif "Big Buck Bunny" in v.get("licence", ""):
            out.append("big_buck_bunny")
        elif v["name"].startswith("visp_"):
            out.append("visp")
        else:
            out.append(v["name"])
    return out


def source_shares(frames_per_source: dict[str, int], cap: float = MAX_SOURCE_SHARE) -> dict[str, float]:
    """Each source's share of the sampled clips: in proportion to the square root of its frame count, with no
    source above `cap` (what a capped source loses is spread over the others in proportion to their shares,
    until none is above it). With fewer than 1/cap sources the cap cannot hold and every source gets the
    same share. The shares sum to 1."""
    if not frames_per_source:
        return {}
    names = list(frames_per_source)
    weights = np.sqrt(np.array([max(0, frames_per_source[n]) for n in names], np.float64))
    if len(names) * cap < 1 or weights.sum() == 0:
        return {n: 1 / len(names) for n in names}
    capped = np.zeros(len(names), bool)
    while True:
        free = 1 - cap * capped.sum()
        shares = np.where(capped, cap, free * weights / weights[~capped].sum())
        over = (shares > cap * (1 + 1e-12)) & ~capped
        if not over.any():
            return dict(zip(names, shares.tolist()))
        capped |= over


def sampling_weights(manifest: dict, cap: float = MAX_SOURCE_SHARE, counts: list[int] | None = None) -> np.ndarray:
    """Each training video's probability of giving a sampled clip -> float64 (V,), summing to 1: its source's
    share (`source_shares`), split among the source's videos in proportion to their frames. `counts`
    overrides the manifest's frame counts (e.g. the rows of `Bank.videos`)."""
    sources = video_sources(manifest)
    counts = [v["frames"] for v in manifest.get("videos", [])] if counts is None else list(counts)
    if len(sources) != len(counts):
        raise BankError(f"the manifest lists {len(sources)} training videos, the bank holds {len(counts)}")
    per_source: dict[str, int] = {}
    for name, n in zip(sources, counts):
        per_source[name] = per_source.get(name, 0) + n
    shares = source_shares(per_source, cap)
    return np.array([shares[s] * n / per_source[s] if per_source[s] else 0.0 for s, n in zip(sources, counts)],
                    np.float64)
