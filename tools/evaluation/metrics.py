"""Quality metrics on 8-bit RGB frames: PSNR and SSIM (Wang et al. 2004) per frame, and `VideoQuality`:
what a person sees over a clip (seams, judder, the segment pulse, colour error, a bicubic floor), defined
in its docstring and in docs/METRICS.md."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from otok.bitstream.timeline import is_segment_start, step_of_frame, step_start_frame


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB of two (H, W, 3) uint8 frames, peak 255 (inf when identical)."""
    mse = np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).float()


_GAUSSIAN = _gaussian()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter of (C, 1, H, W)."""
    return F.conv2d(F.conv2d(x, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))


def ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Mean SSIM of two (H, W, 3) uint8 frames: 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03,
    computed per RGB channel over the valid region and averaged. Frames smaller than the window use a
    window of their size. (float32 with the means removed first: exact enough, and fast.)"""
    a = torch.from_numpy(reference).permute(2, 0, 1)[:, None].float()
    b = torch.from_numpy(decoded).permute(2, 0, 1)[:, None].float()
    g = _GAUSSIAN
    side = min(a.shape[-2:])
    if side < g.numel():
        g = _gaussian(side if side % 2 else max(side - 1, 1))
    offset = 0.5 * (a.mean() + b.mean())  # SSIM is shift-invariant; centring keeps float32 variances exact
    a, b = a - offset, b - offset
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = _blur(a, g), _blur(b, g)
    var_a = _blur(a * a, g) - mu_a**2
    var_b = _blur(b * b, g) - mu_b**2
    cov = _blur(a * b, g) - mu_a * mu_b
    # mu terms use the centred means: shift them back for the luminance term.
    ma, mb = mu_a + offset, mu_b + offset
    score = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (var_a + var_b + c2))
    return float(score.mean())


# ----- measures of what a person sees (docs/METRICS.md) ---------------------------------------------------
# Shared conventions: frames are (H, W, 3) uint8 RGB, `reference` the source as coded (after any --max-side
# scaling) and `decoded` the decoder's output of the same size. Absolute differences are in 8-bit grey
# levels, averaged over the three RGB channels. A ratio of two means floors each mean at RATIO_FLOOR grey
# levels, so that a flat frame or a still clip gives 1 rather than 0/0.

RATIO_FLOOR = 0.01
BT601_CHROMA = np.array([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])  # Cb, Cr rows (JPEG full range)


def _ratio(numerator: float, denominator: float) -> float:
    return max(numerator, RATIO_FLOOR) / max(denominator, RATIO_FLOOR)


def _psnr_of_mse(mse: float) -> float:
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def finite_mean(values) -> float | None:
    """Mean of the finite values; inf when every value is inf (exact frames); None when there are none."""
    values = list(values)
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else (float("inf") if values else None)


def seam_sums(frame: np.ndarray, patch: int = 8) -> np.ndarray:
    """[sum, count] of |neighbour difference| across patch seams, then [sum, count] inside patches, of one
    (H, W, 3) frame: horizontal neighbours (x-1, x) and vertical ones (y-1, y), every RGB channel. The pair
    crosses a seam when x (or y) is a multiple of `patch`: the decoder lays patches from pixel 0 of the
    padded frame (padding is added at the right and bottom) and crops the top left."""
    f = frame.astype(np.int16)
    dx = np.abs(np.diff(f, axis=1)).sum(axis=(0, 2))  # per column pair (x-1, x), x = 1..W-1
    dy = np.abs(np.diff(f, axis=0)).sum(axis=(1, 2))  # per row pair (y-1, y), y = 1..H-1
    h, w = frame.shape[:2]
    on_x = np.arange(1, w) % patch == 0
    on_y = np.arange(1, h) % patch == 0
    seam = float(dx[on_x].sum() + dy[on_y].sum())
    inside = float(dx[~on_x].sum() + dy[~on_y].sum())
    n_seam = 3 * (h * int(on_x.sum()) + w * int(on_y.sum()))
    n_inside = 3 * (h * int((~on_x).sum()) + w * int((~on_y).sum()))
    return np.array([seam, n_seam, inside, n_inside], dtype=np.float64)


def _seam_ratio_of_sums(s: np.ndarray) -> float | None:
    if s[1] == 0 or s[3] == 0:
        return None
    return _ratio(s[0] / s[1], s[2] / s[3])


def bicubic8(frame: np.ndarray, factor: int = 8) -> np.ndarray:
    """`frame` scaled down x`factor` (bicubic, antialiased: torch `F.interpolate(mode="bicubic",
    antialias=True)`, to floor(H/factor) x floor(W/factor), at least 1) and back up to H x W (bicubic),
    rounded and clamped to uint8."""
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    h, w = frame.shape[:2]
    small = F.interpolate(x, size=(max(1, h // factor), max(1, w // factor)), mode="bicubic",
                          align_corners=False, antialias=True)
    back = F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)
    return back.round().clamp(0, 255)[0].permute(1, 2, 0).to(torch.uint8).numpy()


def chroma(frame: np.ndarray) -> np.ndarray:
    """(H, W, 2) float Cb, Cr of an RGB frame (BT.601, full range as in JPEG, offset 128 left out)."""
    return frame.astype(np.float32) @ BT601_CHROMA.T.astype(np.float32)


def side_by_side(reference: np.ndarray, decoded: np.ndarray, gain: int = 4) -> np.ndarray:
    """One (H, 3W, 3) uint8 image: source | decoded | |decoded - source| x `gain` (per channel, clipped)."""
    error = np.abs(decoded.astype(np.int16) - reference.astype(np.int16)) * gain
    return np.concatenate([reference, decoded, np.clip(error, 0, 255).astype(np.uint8)], axis=1)


class FrameLayout:
    """Where frame t sits in the time layout (`otok.bitstream.timeline`): a segment of `gop` steps is an
    image step of 1 frame, then video steps (tubes) of `tubelet` frames; gop 0 = one segment."""

    def __init__(self, tubelet: int = 4, gop: int = 5) -> None:
        self.tubelet, self.gop = tubelet, gop

    def step(self, t: int) -> int:
        return step_of_frame(t, self.gop, self.tubelet)

    def is_image(self, t: int) -> bool:
        """Frame t is the image step of its segment."""
        return is_segment_start(self.step(t), self.gop)

    def starts_step(self, t: int) -> bool:
        """Frame t is the first frame of its step (a segment's image frame or a tube's first frame)."""
        return step_start_frame(self.step(t), self.gop, self.tubelet) == t


class VideoQuality:
    """The measures below over a clip, fed one frame pair at a time (`add`), so memory stays at two frames.
    `result()` returns them as a dict (the keys `otok eval --json` reports):

    - seam_ratio: R(decoded) / R(source), R = mean |neighbour difference| across the `patch`-pixel seams
      (pixel pairs (x-1, x) with x = patch*k, and (y-1, y) with y = patch*k) / the same for pairs inside a
      patch; horizontal and vertical pairs together, RGB channels averaged, over all frames. 1.0: the
      decoder adds no seams; above 1: a mosaic. None for a frame no larger than one patch.
    - judder_ratio: J(decoded) / J(source), J = B / I: B = the mean over the frame pairs (t-1, t) where t is
      the first frame of a tube or of a segment of mean |frame t - frame t-1| (over pixels and RGB channels),
      I = the same mean over the pairs inside one tube. 1.0: motion as smooth as the source; above 1: still
      within tubes, jumps between them. None without such pairs (an image, a clip of fewer than 2 tubes,
      tubelet 1).
    - psnr_image_steps, psnr_video_steps: mean PSNR of the frames of image steps, and of video steps;
      segment_pulse_db: their difference (image - video; None for a single frame).
    - channel_bias: mean signed error decoded - source per RGB channel, grey levels ({"r", "g", "b"}).
    - channel_psnr: PSNR per RGB channel (per frame, averaged over frames like `psnr`).
    - chroma_psnr: PSNR of Cb and Cr (BT.601 full range, unrounded; per frame, averaged) ({"cb", "cr"}).
    - psnr_bicubic8: PSNR of the source scaled down x8 and back up (`bicubic8`) against the source, per
      frame, averaged: a floor the tokenizer should beat.
    - psnr_min: the lowest frame PSNR.
    Frame-averaged PSNRs leave out exact (infinite) frames, as `psnr` does; inf when every frame is exact.
    """

    def __init__(self, patch: int = 8, tubelet: int = 4, gop: int = 5) -> None:
        self.patch, self.layout = patch, FrameLayout(tubelet, gop)
        self.frames = 0
        self._seams = {"decoded": np.zeros(4), "source": np.zeros(4)}
        # [boundary sum, boundary pairs, inside sum, inside pairs] of per-pair mean |difference|
        self._motion = {"decoded": np.zeros(4), "source": np.zeros(4)}
        self._tubes = 0
        self._previous: tuple[np.ndarray, np.ndarray] | None = None
        self._psnr: list[float] = []
        self._image_psnr: list[float] = []
        self._video_psnr: list[float] = []
        self._bias = np.zeros(3)
        self._channel_psnr: list[np.ndarray] = []
        self._chroma_psnr: list[np.ndarray] = []
        self._bicubic: list[float] = []

    def add(self, reference: np.ndarray, decoded: np.ndarray, frame_psnr: float | None = None) -> None:
        """The next frame pair (the frame's PSNR, when already computed, saves computing it again)."""
        t = self.frames
        p = psnr(reference, decoded) if frame_psnr is None else frame_psnr
        self._psnr.append(p)
        (self._image_psnr if self.layout.is_image(t) else self._video_psnr).append(p)
        if not self.layout.is_image(t) and self.layout.starts_step(t):
            self._tubes += 1
        self._seams["source"] += seam_sums(reference, self.patch)
        self._seams["decoded"] += seam_sums(decoded, self.patch)
        if self._previous is not None:
            slot = 0 if self.layout.starts_step(t) else 2
            for name, now, before in (("source", reference, self._previous[0]),
                                      ("decoded", decoded, self._previous[1])):
                self._motion[name][slot] += np.abs(now.astype(np.int16) - before.astype(np.int16)).mean()
                self._motion[name][slot + 1] += 1
        self._previous = (reference, decoded)
        error = decoded.astype(np.float64) - reference.astype(np.float64)
        self._bias += error.mean(axis=(0, 1))
        self._channel_psnr.append(np.array([_psnr_of_mse(m) for m in (error**2).mean(axis=(0, 1))]))
        chroma_error = (chroma(decoded) - chroma(reference)).astype(np.float64)
        self._chroma_psnr.append(np.array([_psnr_of_mse(m) for m in (chroma_error**2).mean(axis=(0, 1))]))
        self._bicubic.append(psnr(reference, bicubic8(reference)))
        self.frames += 1

    def result(self) -> dict:
        m = self._motion
        judder = None
        if self._tubes >= 2 and m["decoded"][1] and m["decoded"][3]:
            judder = (_ratio(m["decoded"][0] / m["decoded"][1], m["decoded"][2] / m["decoded"][3])
                      / _ratio(m["source"][0] / m["source"][1], m["source"][2] / m["source"][3]))
        seams_decoded, seams_source = (_seam_ratio_of_sums(self._seams[k]) for k in ("decoded", "source"))
        image, video = finite_mean(self._image_psnr), finite_mean(self._video_psnr)
        pulse = image - video if image is not None and video is not None and np.isfinite(image - video) else None
        # (None too when both are exact: inf - inf)
        rgb, cbcr = ("r", "g", "b"), ("cb", "cr")
        n = max(self.frames, 1)
        return {
            "seam_ratio": None if seams_decoded is None else float(seams_decoded / seams_source),
            "judder_ratio": None if judder is None else float(judder),
            "segment_pulse_db": pulse,
            "psnr_image_steps": image,
            "psnr_video_steps": video,
            "channel_bias": {c: float(v / n) for c, v in zip(rgb, self._bias)},
            "channel_psnr": {c: finite_mean(p[i] for p in self._channel_psnr) for i, c in enumerate(rgb)},
            "chroma_psnr": {c: finite_mean(p[i] for p in self._chroma_psnr) for i, c in enumerate(cbcr)},
            "psnr_bicubic8": finite_mean(self._bicubic),
            "psnr_min": float(min(self._psnr)) if self._psnr else None,
        }


def _figure(value: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def quality_line(q: dict) -> str:
    """`VideoQuality.result()` (or a mean of them) on one line, for people (docs/METRICS.md)."""
    bias, rgb, cbcr = q["channel_bias"], q["channel_psnr"], q["chroma_psnr"]
    return (f"min {_figure(q['psnr_min'], '.2f', ' dB')}  bicubic x8 {_figure(q['psnr_bicubic8'], '.2f', ' dB')}  "
            f"seams {_figure(q['seam_ratio'], '.2f', 'x')}  judder {_figure(q['judder_ratio'], '.2f', 'x')}  "
            f"pulse {_figure(q['segment_pulse_db'], '+.2f', ' dB')}  "
            f"bias R{_figure(bias['r'], '+.1f')} G{_figure(bias['g'], '+.1f')} B{_figure(bias['b'], '+.1f')}  "
            f"PSNR R/G/B {'/'.join(_figure(rgb[c], '.1f') for c in 'rgb')}  "
            f"Cb/Cr {_figure(cbcr['cb'], '.1f')}/{_figure(cbcr['cr'], '.1f')} dB")


def mean_quality(results: list[dict]) -> dict:
    """The mean over clips of `VideoQuality.result()`s, key by key (and channel by channel), leaving out
    None and infinite values (None when no clip has one); psnr_min is the lowest over the clips."""
    def mean(values):
        finite = [v for v in values if v is not None and np.isfinite(v)]
        return float(np.mean(finite)) if finite else None

    out = {}
    for key in results[0] if results else ():
        values = [r[key] for r in results]
        if isinstance(values[0], dict):
            out[key] = {c: mean(v[c] for v in values) for c in values[0]}
        elif key == "psnr_min":
            present = [v for v in values if v is not None]
            out[key] = float(min(present)) if present else None
        else:
            out[key] = mean(values)
    return out


def video_quality(reference: np.ndarray, decoded: np.ndarray, patch: int = 8, tubelet: int = 4,
                  gop: int = 5) -> dict:
    """`VideoQuality.result()` of two (T, H, W, 3) (or (H, W, 3): one frame) uint8 clips."""
    reference, decoded = np.asarray(reference), np.asarray(decoded)
    if reference.shape != decoded.shape:
        raise ValueError(f"the clips differ in shape: {reference.shape} vs {decoded.shape}")
    q = VideoQuality(patch, tubelet, gop)
    for a, b in zip(*(x[None] if x.ndim == 3 else x for x in (reference, decoded))):
        q.add(a, b)
    return q.result()


def seam_ratio(reference: np.ndarray, decoded: np.ndarray, patch: int = 8) -> float | None:
    """See VideoQuality."""
    return video_quality(reference, decoded, patch=patch)["seam_ratio"]


def judder_ratio(reference: np.ndarray, decoded: np.ndarray, tubelet: int = 4, gop: int = 5) -> float | None:
    """See VideoQuality."""
    return video_quality(reference, decoded, tubelet=tubelet, gop=gop)["judder_ratio"]


def segment_pulse_db(reference: np.ndarray, decoded: np.ndarray, tubelet: int = 4, gop: int = 5) -> float | None:
    """See VideoQuality."""
    return video_quality(reference, decoded, tubelet=tubelet, gop=gop)["segment_pulse_db"]
