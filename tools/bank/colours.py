"""Colour statistics of a data bank: what the trainer's sampler feeds the model against real footage.

    python -m otok.tools.bank.colours data/otok-bank-v2.zip            # a Markdown table on stdout

For every training video, the per-channel mean and standard deviation of R, G and B (0..255) and the mean
HSV saturation ((max - min) / max of a pixel's channels) over all its frames; then the same for mixtures:
the clips the sampler draws (`otok.train.bank.sampling_weights`, each video's frames equally likely), the
same under the earlier rule (each video weighted by the square root of its frame count), the bank's real
colour camera footage, its held-out video and photos, and its training photos; with each source's share of
the clips now and under the earlier rule. Frames are decoded as the trainer decodes them (cv2), one segment
at a time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field

import numpy as np

from otok.train.bank import MAX_SOURCE_SHARE, BankError, decode_image, read_manifest, sampling_weights, video_sources

# What kind of footage each source of tools/bank/make_dataset.py is; a source not named here is camera footage.
CONTENT = {"big_buck_bunny": "animation", "cv_Megamind": "animation", "gnome_dual_monitors": "screen recording",
           "visp": "camera, grey", "camera_motion": "synthetic camera motion", "object_motion": "synthetic object motion"}


LEVELS = np.arange(256, dtype=np.float64)
_HI, _LO = np.meshgrid(LEVELS, LEVELS, indexing="ij")
SATURATION = np.divide(_HI - _LO, _HI, out=np.zeros_like(_HI), where=_HI > _LO).ravel()  # [hi * 256 + lo]


@dataclass
class Moments:
    """Running sums over pixels: per channel x and x^2, and saturation."""

    n: float = 0.0
    s: np.ndarray = field(default_factory=lambda: np.zeros(3))
    s2: np.ndarray = field(default_factory=lambda: np.zeros(3))
    sat: float = 0.0

    def add(self, rgb: np.ndarray) -> None:
        """Add uint8 (..., 3) pixels."""
        x = np.ascontiguousarray(rgb).reshape(-1, 3)
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
        hi, lo = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
        self.n += len(x)
        for c, channel in enumerate((r, g, b)):  # exact sums from 256-bin histograms
            hist = np.bincount(channel, minlength=256)
            self.s[c] += hist @ LEVELS
            self.s2[c] += hist @ LEVELS**2
        self.sat += float(np.bincount(hi.astype(np.int32) * 256 + lo, minlength=65536) @ SATURATION)

    def mean(self) -> np.ndarray:
        return self.s / self.n

    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.s2 / self.n - self.mean() ** 2, 0))

    def saturation(self) -> float:
        return self.sat / self.n


def mixture(parts: list[tuple[float, Moments]]) -> Moments:
    """The moments of drawing part i's pixels with probability w_i (weights normalised)."""
    total = sum(w for w, _ in parts)
    out = Moments(n=1.0)
    for w, m in parts:
        if m.n:
            out.s += w / total * m.s / m.n
            out.s2 += w / total * m.s2 / m.n
            out.sat += w / total * m.sat / m.n
    return out


def video_moments(zf: zipfile.ZipFile, files: list[dict], tmp: str, m: Moments | None = None) -> Moments:
    """Add every frame of the video files ({"file": member} each) to `m` (a new one if None) -> it."""
    import cv2

    m = Moments() if m is None else m
    for seg in files:
        capture = cv2.VideoCapture(zf.extract(seg["file"], tmp))
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            m.add(bgr[..., ::-1])
        capture.release()
    return m


def bank_colours(path, cap: float = MAX_SOURCE_SHARE) -> list[tuple[str, float | None, float | None, Moments]]:
    """(row label, share of the sampled clips now, and under the earlier rule (None for rows that are not
    sampled), moments) for each source and each mixture."""
    if not zipfile.is_zipfile(path):
        raise BankError(f"{path}: not a ZIP file, so not an otok data bank")
    with zipfile.ZipFile(path) as zf, tempfile.TemporaryDirectory(prefix="otok-colours-") as tmp:
        manifest = read_manifest(zf)
        videos = manifest["videos"]
        per_video = [video_moments(zf, v["files"], tmp) for v in videos]
        held_video, held_photos = Moments(), Moments()
        for entry in manifest["heldout"]:
            if entry["file"].endswith(".mp4"):
                video_moments(zf, [entry], tmp, held_video)
            else:
                held_photos.add(decode_image(zf.read(entry["file"])))
        photos = Moments()
        for entry in manifest["photos"]:
            photos.add(decode_image(zf.read(entry["file"])))
    sources = video_sources(manifest)
    new = sampling_weights(manifest, cap)
    old = np.sqrt([v["frames"] for v in videos])
    old = old / old.sum()
    rows: list[tuple[str, float | None, float | None, Moments]] = []
    for name in dict.fromkeys(sources):
        idx = [i for i, s in enumerate(sources) if s == name]
        frames = [videos[i]["frames"] for i in idx]
        m = mixture([(f, per_video[i]) for f, i in zip(frames, idx)])
        rows.append((f"{name} ({CONTENT.get(name, 'camera, colour')})", float(new[idx].sum()), float(old[idx].sum()), m))
    camera = [i for i, s in enumerate(sources) if s not in CONTENT and videos[i]["kind"] == "real"]
    rows.append(("**sampled clips, this sampler**", 1.0, None, mixture(list(zip(new.tolist(), per_video)))))
    rows.append(("sampled clips, the earlier rule (sqrt per video)", None, 1.0,
                 mixture(list(zip(old.tolist(), per_video)))))
    rows.append(("**real colour camera footage** (its frames alike)", None, None,
                 mixture([(videos[i]["frames"], per_video[i]) for i in camera])))
    rows.append(("**held-out video** (`skv_bikes`, real footage)", None, None, held_video))
    rows.append(("held-out photos", None, None, held_photos))
    rows.append(("training photos", None, None, photos))
    return rows


def table(rows) -> str:
    head = ("| | clips now | clips before | mean R | mean G | mean B | std R | std G | std B | saturation |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    lines = [head]
    for label, share, before, m in rows:
        mean, std = m.mean(), m.std()
        cells = [label, *("" if x is None else f"{100 * x:.1f} %" for x in (share, before)),
                 *(f"{v:.1f}" for v in mean), *(f"{v:.1f}" for v in std), f"{m.saturation():.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bank", help="data bank (tools/bank/make_dataset.py --bank)")
    p.add_argument("--cap", type=float, default=MAX_SOURCE_SHARE, help="largest share of any one source")
    args = p.parse_args(argv)
    try:
        print(table(bank_colours(args.bank, args.cap)))
    except (BankError, OSError, KeyError) as exc:
        print(f"bank_colours: error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(f"bank_colours: error: {exc.name} is needed (pip install opencv-python-headless)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
