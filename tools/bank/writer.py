"""Writing a data bank (the format: otok.train.bank): frames cover-cropped to one size, H.264 videos checked
against cv2's decoder, square JPEG photos, held-out items at short side 256, and the manifest. What goes in
(and the held-out split) is decided by tools/bank/make_dataset.py; this module only turns Sources into the file.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from otok.tools.files import atomic_output
from otok.tools.video_io import MediaError, VideoReader

MIN_VIDEO_FRAMES = 17  # every bank video has at least this many (one training clip)


@dataclass(frozen=True)
class Source:
    """One item for the bank. kind: "video" (a file any FFmpeg reads), "sequence" (a folder of numbered
    images, `pattern` picks them) or "photo". `source` names the film, capture or package that sampling
    balances (default: the item's own name); `rotate` turns a photo clockwise by that many degrees (a
    multiple of 90) where its collection says it is stored turned."""

    name: str
    origin: str  # the package it ships in
    licence: str
    path: Path
    kind: str
    pattern: str = ""
    source: str = ""
    rotate: int = 0


# ----- pixels ----------------------------------------------------------------------------
def cover_resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale `rgb` (H, W, 3) to cover width x height, then cut the centre -> uint8 (height, width, 3)."""
    import cv2

    h, w = rgb.shape[:2]
    scale = max(width / w, height / h)
    sw, sh = max(width, round(w * scale)), max(height, round(h * scale))
    if (sw, sh) != (w, h):
        rgb = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    x0, y0 = (sw - width) // 2, (sh - height) // 2
    return np.ascontiguousarray(rgb[y0 : y0 + height, x0 : x0 + width])


def short_side_resize(rgb: np.ndarray, short: int) -> np.ndarray:
    """Scale `rgb` so its shorter side is `short` (the other rounded to even) -> uint8 (H', W', 3)."""
    import cv2

    h, w = rgb.shape[:2]
    scale = short / min(h, w)
    size = (short, 2 * round(h * scale / 2)) if w <= h else (2 * round(w * scale / 2), short)
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def read_photo(path: Path) -> np.ndarray:
    """Any photo (grey, RGBA composited over white) -> uint8 (H, W, 3) RGB."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # wallpapers reach 6000 x 4000
    with Image.open(path) as im:
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, im)
        return np.asarray(im.convert("RGB"))


def source_photo(src: Source) -> np.ndarray:
    """A photo Source's pixels, turned upright -> uint8 (H, W, 3) RGB."""
    rgb = read_photo(src.path)
    return np.ascontiguousarray(np.rot90(rgb, -(src.rotate // 90) % 4)) if src.rotate % 360 else rgb


def photo_problem(path: Path) -> str | None:
    """Why Pillow cannot read `path` as a photo (a JPEG is decoded at 1/8 size to find out) -> None if it can."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("RGB", (im.width // 8 + 1, im.height // 8 + 1))
            im.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return f"not a photo that Pillow can read ({_first_line(exc)})"
    return None


def video_problem(path: Path) -> str | None:
    """Why `path` cannot be a bank video (PyAV cannot open or decode it, no video stream, fewer than
    MIN_VIDEO_FRAMES frames; only that many are decoded to find out) -> None if it can."""
    try:
        with VideoReader(path, max_frames=MIN_VIDEO_FRAMES) as reader:
            frames = sum(1 for _ in reader)
    except MediaError as exc:
        return str(exc).removeprefix(f"{path}: ")
    return None if frames == MIN_VIDEO_FRAMES else f"{frames} frames, fewer than {MIN_VIDEO_FRAMES}"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def source_frames(src: Source) -> Iterator[np.ndarray]:
    """Every frame of a video or image sequence -> uint8 (H, W, 3) RGB each. A video whose tail does not
    decode gives the frames before it (as players do), with one line."""
    if src.kind == "sequence":
        for path in sorted(src.path.glob(src.pattern)):
            yield read_photo(path)
        return
    import av

    try:
        container = av.open(str(src.path))
    except av.FFmpegError as exc:
        raise MediaError(f"{src.path}: not a video that PyAV can read ({_first_line(exc)})") from None
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count = 0
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                count += 1
        except av.FFmpegError as exc:
            if count == 0:
                raise MediaError(f"{src.path}: cannot decode its video ({_first_line(exc)})") from None
            print(f"make_dataset: {src.path}: kept the {count} frames before a damaged part ({_first_line(exc)})")


def source_fps(src: Source) -> Fraction:
    if src.kind == "sequence":
        return Fraction(25)
    import av

    with av.open(str(src.path)) as container:
        rate = container.streams.video[0].average_rate or container.streams.video[0].guessed_rate
    return Fraction(rate).limit_denominator(1001) if rate else Fraction(25)


# ----- files -----------------------------------------------------------------------------
@dataclass
class Encoder:
    """x264 settings of the bank's videos."""

    crf: int
    preset: str = "veryslow"


def encode_segments(frames: Iterable[np.ndarray], stem: Path, fps: Fraction, enc: Encoder,
                    segment: int) -> list[tuple[Path, int]]:
    """Write frames as H.264/yuv420p .mp4 files of at most `segment` frames each (so a reader decodes one
    long video in parallel) -> [(path, frames)]."""
    import av

    written: list[tuple[Path, int]] = []
    container = stream = None
    count = 0
    for frame in frames:
        if container is None:
            path = stem.with_name(f"{stem.name}.{len(written):03d}.mp4")
            container = av.open(str(path), "w", format="mp4")
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
            stream.options = {"crf": str(enc.crf), "preset": enc.preset}
            count = 0
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts = count
        for packet in stream.encode(video_frame):
            container.mux(packet)
        count += 1
        if count == segment:
            _close(container, stream)
            written.append((path, count))
            container = None
    if container is not None:
        _close(container, stream)
        written.append((path, count))
    return written


def _close(container, stream) -> None:
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def decoded_frame_count(path: Path) -> int:
    """Frames that cv2.VideoCapture (the bank reader's decoder) gets out of `path`."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


def image_bytes(rgb: np.ndarray, ext: str, quality: int = 90) -> bytes:
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 9]
    ok, data = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise MediaError(f"could not encode a {ext} image")
    return data.tobytes()


def square_photo(rgb: np.ndarray, side: int) -> np.ndarray:
    return cover_resize(rgb, side, side)


@dataclass
class BankSettings:
    width: int = 384
    height: int = 216
    photo_side: int = 320
    photo_quality: int = 90
    crf: int = 22
    preset: str = "veryslow"
    heldout_crf: int = 8
    segment: int = 1024
    target_frames: int = 20000
    clip_lengths: tuple[int, ...] = (33, 49, 65)
    motion_min_side: int = 1000  # photos at least this large (shorter side) get synthetic camera motion
    object_frames: int = 0  # frames of synthetic object motion
    object_min_side: int = 512  # photos at least this large (shorter side) are object-motion backgrounds
    cutout_side: int = 512  # the photos that objects are cut from are reduced (area) to this shorter side
    min_photo_side: int = 256  # smaller photos stay out of the photo tensor
    max_bytes: int = 40 * 2**20
    seed: int = 0


class BankError(RuntimeError):
    """The bank cannot be built as asked (over its size limit, no training video, a frame count mismatch)."""


def add_video(zf: zipfile.ZipFile, work: Path, name: str, frames: Iterable[np.ndarray], fps: Fraction,
              enc: Encoder, segment: int, folder: str = "videos") -> list[dict]:
    """Encode `frames` into the bank as FOLDER/NAME.NNN.mp4 -> the manifest's file list."""
    files = []
    for path, count in encode_segments(frames, work / name, fps, enc, segment):
        decoded = decoded_frame_count(path)
        if decoded != count:
            raise BankError(f"{path.name}: cv2 decodes {decoded} frames of the {count} written")
        arcname = f"{folder}/{path.name}"
        zf.write(path, arcname)
        files.append({"file": arcname, "frames": count, "bytes": path.stat().st_size})
        path.unlink()
    return files


def real_videos(zf, work: Path, sources: list[Source], s: BankSettings) -> list[dict]:
    """Training videos from real footage, each cover-cropped to s.width x s.height at its own rate."""
    entries = []
    for src in sources:
        fps = source_fps(src)
        frames = (cover_resize(f, s.width, s.height) for f in source_frames(src))
        files = add_video(zf, work, src.name, frames, fps, Encoder(s.crf, s.preset), s.segment)
        total = sum(f["frames"] for f in files)
        if total < MIN_VIDEO_FRAMES:
            raise BankError(f"{src.name}: {total} frames, fewer than {MIN_VIDEO_FRAMES}")
        entries.append({"name": src.name, "kind": "real", "source": src.source or src.name, "origin": src.origin,
                        "licence": src.licence, "source_file": src.path.name, "fps": str(fps), "frames": total,
                        "files": files})
        print(f"make_dataset: {src.name}: {total} frames, {sum(f['bytes'] for f in files) / 2**20:.2f} MiB")
    return entries


def synthetic_videos(zf, work: Path, photos: list[Source], frames_needed: int, s: BankSettings) -> list[dict]:
    """Camera-motion clips over the high-resolution photos, round-robin, until `frames_needed` frames."""
    from otok.tools.bank.camera_motion import render_clip

    big = [p for p in photos if min(_upright_size(p)) >= s.motion_min_side]
    entries: list[dict] = []
    total, clip = 0, 0
    cache: dict[Path, np.ndarray] = {}
    while big and total < frames_needed:
        src = big[clip % len(big)]
        length = s.clip_lengths[clip % len(s.clip_lengths)]
        rng = np.random.default_rng([s.seed, clip])
        if src.path not in cache:
            cache.clear()  # one full-size photo in memory at a time
            cache[src.path] = source_photo(src)
        name = f"motion_{clip:03d}_{src.name}"
        files = add_video(zf, work, name, render_clip(cache[src.path], length, s.width, s.height, rng),
                          Fraction(25), Encoder(s.crf, s.preset), s.segment)
        entries.append({"name": name, "kind": "synthetic", "source": "camera_motion", "origin": src.origin,
                        "licence": src.licence, "source_file": src.path.name, "fps": "25", "frames": length,
                        "files": files})
        total += length
        clip += 1
    if total < frames_needed:
        print(f"make_dataset: synthetic motion made {total} of the {frames_needed} frames wanted"
              f" ({len(big)} photos with a shorter side of at least {s.motion_min_side})")
    return entries


def object_videos(zf, work: Path, photos: list[Source], frames_needed: int, s: BankSettings) -> list[dict]:
    """Object-motion clips (otok.tools.bank.object_motion) until `frames_needed` frames: objects cut from the
    training photos over a camera move across a background photo (those with a shorter side of at least
    s.object_min_side, each in turn, in a seeded order). A clip records its background's licence and the
    licence of every photo its objects were cut from."""
    import cv2

    from otok.tools.bank.object_motion import plan_clip, render_plan

    if frames_needed <= 0:
        return []
    usable = [p for p in photos if min(_upright_size(p)) >= s.min_photo_side]
    backgrounds = [p for p in usable if min(_upright_size(p)) >= s.object_min_side]
    if not backgrounds:
        print(f"make_dataset: no object motion: no photo with a shorter side of at least {s.object_min_side}")
        return []
    pool = []
    for src in usable:
        rgb = source_photo(src)
        scale = s.cutout_side / min(rgb.shape[:2])
        if scale < 1:
            rgb = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        pool.append(rgb)
    order = np.random.default_rng([s.seed, 2]).permutation(len(backgrounds)).tolist()
    entries: list[dict] = []
    total, clip = 0, 0
    while total < frames_needed:
        src = backgrounds[order[clip % len(backgrounds)]]
        length = s.clip_lengths[clip % len(s.clip_lengths)]
        plan = plan_clip(pool, length, s.width, s.height, np.random.default_rng([s.seed, 1, clip]))
        name = f"objects_{clip:03d}_{src.name}"
        files = add_video(zf, work, name, render_plan(plan, source_photo(src)), Fraction(25),
                          Encoder(s.crf, s.preset), s.segment)
        cut = [usable[i] for i in sorted({c.photo for c in plan.cutouts})]
        entries.append({"name": name, "kind": "synthetic", "source": "object_motion", "origin": src.origin,
                        "licence": src.licence, "source_file": src.path.name, "fps": "25", "frames": length,
                        "files": files, "cutout_files": [
                            {"name": c.name, "origin": c.origin, "licence": c.licence, "source_file": c.path.name}
                            for c in cut]})
        total += length
        clip += 1
    return entries


def _photo_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def _upright_size(src: Source) -> tuple[int, int]:
    w, h = _photo_size(src.path)
    return (h, w) if src.rotate % 180 else (w, h)


def training_photos(zf, photos: list[Source], s: BankSettings) -> list[dict]:
    entries = []
    for src in photos:
        if min(_photo_size(src.path)) < s.min_photo_side:
            continue
        arcname = f"photos/{len(entries):04d}_{src.name}.jpg"
        data = image_bytes(square_photo(source_photo(src), s.photo_side), ".jpg", s.photo_quality)
        zf.writestr(arcname, data)
        entries.append({"name": src.name, "file": arcname, "origin": src.origin, "licence": src.licence,
                        "source_file": src.path.name, "bytes": len(data)})
    return entries


HELDOUT_SHORT_SIDE = 256
HELDOUT_VIDEO_FRAMES = 33


HELDOUT_MATCH_DB = 40.0  # a held-out video copied from an earlier bank must decode this close to this build's frames


def heldout_items(zf, work: Path, sources: list[Source], s: BankSettings,
                  earlier: zipfile.ZipFile | None = None) -> list[dict]:
    """Held-out items at short side 256: the video's first 33 frames as near-lossless H.264, photos as PNG.

    With `earlier` (an earlier bank), an item it holds under the same name and source file is copied from it
    byte for byte, once it is checked to be the same picture (a photo: the same PNG bytes; the video: as many
    frames of the same size, decoding within HELDOUT_MATCH_DB of this build's frames), so that evaluations on
    either bank see the same files: x264 does not give the same bytes on every run."""
    from otok.train.bank import decode_video, read_manifest

    prior = {(e["name"], e["source_file"]): e for e in read_manifest(earlier)["heldout"]} if earlier else {}
    entries = []
    for src in sources:
        entry = {"name": src.name, "origin": src.origin, "licence": src.licence, "source_file": src.path.name}
        old = prior.get((src.name, src.path.name))
        if src.kind == "photo":
            rgb = short_side_resize(read_photo(src.path), HELDOUT_SHORT_SIDE)
            data = image_bytes(rgb, ".png")
            if old is not None and earlier.read(old["file"]) != data:
                raise BankError(f"held-out {src.name} is not the picture that the earlier bank holds")
            entry["file"] = f"heldout/{src.name}.png"
            zf.writestr(entry["file"], data)
            entry.update(frames=1, width=rgb.shape[1], height=rgb.shape[0])
        else:
            frames = np.stack([short_side_resize(f, HELDOUT_SHORT_SIDE)
                               for f, _ in zip(source_frames(src), range(HELDOUT_VIDEO_FRAMES))])
            fps = str(source_fps(src))
            if old is not None:
                copy = np.empty((old["frames"], old["height"], old["width"], 3), np.uint8)
                if copy.shape != frames.shape or old.get("fps") != fps:
                    raise BankError(f"held-out {src.name} in the earlier bank is {copy.shape[:3]} at {old.get('fps')}"
                                    f" fps; this build makes {frames.shape[:3]} at {fps} fps")
                decode_video(earlier.extract(old["file"], work), copy)
                mse = np.mean((copy.astype(np.float64) - frames) ** 2)
                if mse > 255**2 * 10 ** (-HELDOUT_MATCH_DB / 10):
                    raise BankError(f"held-out {src.name} is not the video that the earlier bank holds")
                zf.writestr(old["file"], earlier.read(old["file"]))
                entry["file"] = old["file"]
            else:
                files = add_video(zf, work, src.name, frames, Fraction(fps), Encoder(s.heldout_crf, s.preset),
                                  len(frames), folder="heldout")
                entry["file"] = files[0]["file"]
            entry.update(frames=len(frames), width=frames.shape[2], height=frames.shape[1], fps=fps)
        entries.append(entry)
    return entries


def build_bank(bank: Path, videos: list[Source], photos: list[Source], heldout: list[Source],
               s: BankSettings, split: dict[str, list[str]] | None = None, heldout_from: Path | None = None) -> dict:
    """Write the bank file (format: otok.train.bank): real videos first, then synthetic camera motion over
    `photos` up to s.target_frames, s.object_frames of synthetic object motion, the photos, the held-out
    items -> its manifest (`split`, the held-out file names by package, is recorded in it). `bank` appears
    only once complete; past s.max_bytes, BankError. With `heldout_from` (an earlier bank), its held-out
    files are kept byte for byte (`heldout_items`)."""
    bank.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=bank.parent, prefix=".bank-") as tmp, atomic_output(bank) as partial:
        work = Path(tmp)
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as zf:
            entries = real_videos(zf, work, videos, s)
            real = sum(e["frames"] for e in entries)
            entries += synthetic_videos(zf, work, photos, s.target_frames - real, s)
            entries += object_videos(zf, work, photos, s.object_frames, s)
            if not entries:
                raise BankError("no training video: give at least one video source")
            photo_entries = training_photos(zf, photos, s)
            if heldout_from is None:
                held = heldout_items(zf, work, heldout, s)
            else:
                if not zipfile.is_zipfile(heldout_from):
                    raise BankError(f"{heldout_from}: not a ZIP file, so not an otok data bank")
                with zipfile.ZipFile(heldout_from) as earlier:
                    held = heldout_items(zf, work, heldout, s, earlier)
            manifest = bank_manifest(entries, photo_entries, held, s, split or {})
            zf.writestr("manifest.json", json.dumps(manifest, indent=1))
        size = partial.stat().st_size
        if size > s.max_bytes:
            raise BankError(f"the bank is {size / 2**20:.2f} MiB, over its {s.max_bytes / 2**20:.2f} MiB limit:"
                            " raise --crf or lower --photo-quality/--target-frames")
    return manifest


def bank_manifest(videos: list[dict], photos: list[dict], heldout: list[dict], s: BankSettings,
                  split: dict[str, list[str]]) -> dict:
    per_source: dict[str, int] = {}
    for v in videos:
        per_source[v["source"]] = per_source.get(v["source"], 0) + v["frames"]
    return {
        "format": "otok-bank", "version": 1,
        "video_size": [s.width, s.height], "photo_side": s.photo_side,
        "x264": {"crf": s.crf, "preset": s.preset, "pix_fmt": "yuv420p", "heldout_crf": s.heldout_crf},
        "photo_jpeg_quality": s.photo_quality,
        "counts": {"frames": sum(v["frames"] for v in videos),
                   "real_frames": sum(v["frames"] for v in videos if v["kind"] == "real"),
                   "videos": len(videos), "photos": len(photos), "heldout": len(heldout),
                   "frames_per_source": per_source},
        "heldout_split": split,
        "videos": videos, "photos": photos, "heldout": heldout,
    }


# ----- a smaller bank from a built one --------------------------------------------------------------------
def subset_bank(src: Path, bank: Path, keep: dict[str, int], max_bytes: int) -> dict:
    """Write `bank` from the bank at `src` with only `keep[source]` of each named source's video segments
    (spread evenly through the source), every other member byte for byte -> its manifest. A kept segment
    becomes a video of its own (its neighbours are gone, so a clip must not run from one into the next), with
    the same source; the manifest records what it was cut from. Nothing is re-encoded."""
    import hashlib

    from otok.train.bank import read_manifest, video_sources

    if not zipfile.is_zipfile(src):
        raise BankError(f"{src}: not a ZIP file, so not an otok data bank")
    with zipfile.ZipFile(src) as zin:
        manifest = read_manifest(zin)
        sources = video_sources(manifest)
        for name, count in keep.items():
            if name not in sources:
                raise BankError(f"{src} has no source {name!r} (it has: {', '.join(dict.fromkeys(sources))})")
            if count < 1:
                raise BankError(f"keep at least one segment of {name!r}, not {count}")
        segments = {name: [(i, j) for i, s in enumerate(sources) if s == name
                           for j in range(len(manifest["videos"][i]["files"]))] for name in keep}
        chosen = {name: {segs[k] for k in np.unique(np.linspace(0, len(segs) - 1, min(keep[name], len(segs))).round()
                                                    .astype(int))} for name, segs in segments.items()}
        videos = []
        for i, (v, source) in enumerate(zip(manifest["videos"], sources)):
            if source not in keep:
                videos.append({**v, "source": source})
                continue
            for j, seg in enumerate(v["files"]):
                if (i, j) in chosen[source] and seg["frames"] >= MIN_VIDEO_FRAMES:
                    videos.append({**v, "name": f"{v['name']}.{j:03d}", "source": source, "frames": seg["frames"],
                                   "files": [seg]})
        out = {**manifest, "videos": videos}
        per_source: dict[str, int] = {}
        for v in videos:
            per_source[v["source"]] = per_source.get(v["source"], 0) + v["frames"]
        out["counts"] = {**manifest["counts"], "frames": sum(v["frames"] for v in videos),
                         "real_frames": sum(v["frames"] for v in videos if v["kind"] == "real"),
                         "videos": len(videos), "frames_per_source": per_source}
        out["subset_of"] = {"sha256": hashlib.sha256(Path(src).read_bytes()).hexdigest(),
                            "segments_kept": keep}
        members = [seg["file"] for v in videos for seg in v["files"]]
        members += [p["file"] for p in manifest["photos"]] + [h["file"] for h in manifest["heldout"]]
        bank.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(bank) as partial:
            with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as zout:
                for name in members:
                    zout.writestr(zin.getinfo(name), zin.read(name))
                zout.writestr("manifest.json", json.dumps(out, indent=1))
            size = partial.stat().st_size
            if size > max_bytes:
                raise BankError(f"the bank is {size / 2**20:.2f} MiB, over its {max_bytes / 2**20:.2f} MiB limit:"
                                " keep fewer segments")
    return out
