"""Bjøntegaard deltas and rate–distortion interpolation: small pure functions on (rate, PSNR) points.

Rates may be in any unit (bytes, bpp, kbps) as long as both curves use the same one; only their ratios
matter, because everything is done in log10(rate).

- `bd_psnr(ref, test)`: the mean PSNR gain of `test` over `ref` at equal rate, dB (Bjøntegaard, VCEG-M33,
  2001): PSNR fitted as a cubic polynomial of log10(rate) for each curve, the difference of the two fits
  integrated over the overlapping log-rate interval and divided by its length.
- `bd_rate(ref, test)`: the mean rate change of `test` against `ref` at equal PSNR, percent (negative =
  `test` needs fewer bits): log10(rate) fitted as a cubic polynomial of PSNR, integrated over the
  overlapping PSNR interval; the mean log difference d gives (10**d - 1) * 100.
- `psnr_at_rate(curve, rate)` / `rate_at_psnr(curve, psnr)`: a point on a codec's curve, piecewise-linear
  in log10(rate) between its measured points (monotone, no fit, no extrapolation: None outside the
  measured range).

A curve needs at least 4 points with distinct rates and distinct PSNRs for a cubic fit; anything less, or
curves that do not overlap, raise `BDError` rather than return an invented figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MIN_POINTS = 4  # a cubic fit needs four distinct abscissae

Curve = Sequence[tuple[float, float]]  # (rate, psnr) points, any order


class BDError(ValueError):
    """A Bjøntegaard figure is undefined for these curves (too few points, or no overlap); says why."""


def _arrays(curve: Curve, name: str) -> tuple[np.ndarray, np.ndarray]:
    """log10(rate) and PSNR of a curve's points, sorted by rate; finite, positive rates only."""
    points = np.asarray(list(curve), dtype=np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(points)):
        raise BDError(f"{name}: rates and PSNRs must be finite (a lossless point has infinite PSNR)")
    if np.any(points[:, 0] <= 0):
        raise BDError(f"{name}: rates must be positive")
    points = points[np.argsort(points[:, 0], kind="stable")]
    return np.log10(points[:, 0]), points[:, 1]


def distinct_points(curve: Curve) -> tuple[int, int]:
    """(number of distinct rates, number of distinct PSNRs) of a curve."""
    points = np.asarray(list(curve), dtype=np.float64).reshape(-1, 2)
    return len(np.unique(points[:, 0])), len(np.unique(points[:, 1]))


def check_bd_curve(curve: Curve, name: str = "curve") -> None:
    """Raise BDError unless the curve has at least MIN_POINTS distinct rates and distinct PSNRs."""
    rates, psnrs = distinct_points(curve)
    if rates < MIN_POINTS or psnrs < MIN_POINTS:
        raise BDError(
            f"{name}: a Bjøntegaard cubic fit needs at least {MIN_POINTS} points with distinct rates and "
            f"PSNRs; it has {rates} distinct rate(s) and {psnrs} distinct PSNR(s)"
        )


def _mean_gap(
    x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, what: str,
) -> tuple[float, tuple[float, float]]:
    """Mean of (cubic fit of y2 over x2) - (cubic fit of y1 over x1) over the overlap of the x ranges,
    and that overlap."""
    lo, hi = max(x1.min(), x2.min()), min(x1.max(), x2.max())
    if not hi > lo:
        raise BDError(
            f"the curves do not overlap in {what} ([{x1.min():.4g}, {x1.max():.4g}] vs "
            f"[{x2.min():.4g}, {x2.max():.4g}]); a Bjøntegaard delta is undefined"
        )
    p1, p2 = np.polyint(np.polyfit(x1, y1, 3)), np.polyint(np.polyfit(x2, y2, 3))
    area1 = np.polyval(p1, hi) - np.polyval(p1, lo)
    area2 = np.polyval(p2, hi) - np.polyval(p2, lo)
    return float((area2 - area1) / (hi - lo)), (float(lo), float(hi))


def bd_psnr(ref: Curve, test: Curve) -> float:
    """Bjøntegaard delta PSNR (dB) of `test` against `ref`: positive = `test` has higher PSNR at equal rate.

    Each curve's PSNR is fitted as a cubic polynomial of log10(rate); the mean difference of the fits
    over the overlapping log-rate interval is returned. Raises BDError for fewer than 4 distinct points
    or no overlap."""
    check_bd_curve(ref, "reference curve")
    check_bd_curve(test, "test curve")
    lr1, q1 = _arrays(ref, "reference curve")
    lr2, q2 = _arrays(test, "test curve")
    return _mean_gap(lr1, q1, lr2, q2, "log-rate")[0]


def bd_rate(ref: Curve, test: Curve) -> float:
    """Bjøntegaard delta rate (%) of `test` against `ref`: negative = `test` needs fewer bits at equal PSNR.

    Each curve's log10(rate) is fitted as a cubic polynomial of PSNR; with d the mean difference of the
    fits over the overlapping PSNR interval, the result is (10**d - 1) * 100. Raises BDError for fewer
    than 4 distinct points or no overlap."""
    check_bd_curve(ref, "reference curve")
    check_bd_curve(test, "test curve")
    lr1, q1 = _arrays(ref, "reference curve")
    lr2, q2 = _arrays(test, "test curve")
    d, _ = _mean_gap(q1, lr1, q2, lr2, "PSNR")
    return float((10.0**d - 1.0) * 100.0)


def psnr_at_rate(curve: Curve, rate: float) -> float | None:
    """The curve's PSNR at `rate`: linear in log10(rate) between the two measured points around it (points
    taken in order of rate). None when `rate` lies outside the measured rates (no extrapolation)."""
    if rate <= 0 or not np.isfinite(rate):
        return None
    lr, q = _arrays(curve, "curve")
    x = np.log10(rate)
    if len(lr) == 0 or x < lr[0] or x > lr[-1]:
        return None
    return float(np.interp(x, lr, q))


def rate_at_psnr(curve: Curve, psnr: float) -> float | None:
    """The rate at which the curve reaches `psnr`: linear in log10(rate) between the two measured points
    around it. The curve must be monotone (PSNR rising with rate; BDError otherwise). None when `psnr`
    lies outside the measured PSNRs (no extrapolation)."""
    if not np.isfinite(psnr):
        return None
    lr, q = _arrays(curve, "curve")
    if len(q) == 0:
        return None
    if np.any(np.diff(q) <= 0) and len(q) > 1:
        raise BDError("rate_at_psnr needs PSNR strictly increasing with rate")
    if psnr < q[0] or psnr > q[-1]:
        return None
    return float(10.0 ** np.interp(psnr, q, lr))
