"""The rate–distortion math of tools/evaluation/rd.py: Bjøntegaard deltas and curve interpolation (tools/evaluation/bd.py), and one
tiny x264 encode to check how size and PSNR are measured."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from otok.tools.evaluation import bd

# A realistic x264-like curve: bpp and PSNR rising together, concave in log-rate.
RATES = [0.02, 0.05, 0.11, 0.24, 0.5, 1.0]
PSNRS = [26.0, 29.1, 32.0, 34.8, 37.5, 40.1]
REF = list(zip(RATES, PSNRS))


def test_identical_curves_give_zero():
    assert bd.bd_psnr(REF, REF) == pytest.approx(0.0, abs=1e-9)
    assert bd.bd_rate(REF, REF) == pytest.approx(0.0, abs=1e-9)


def test_psnr_shift_gives_bd_psnr():
    better = [(r, q + 1.0) for r, q in REF]
    assert bd.bd_psnr(REF, better) == pytest.approx(1.0, abs=1e-9)
    assert bd.bd_psnr(better, REF) == pytest.approx(-1.0, abs=1e-9)
    assert bd.bd_rate(REF, better) < 0  # the better curve needs fewer bits at equal PSNR


def test_half_rate_gives_minus_fifty_percent():
    cheaper = [(r * 0.5, q) for r, q in REF]
    assert bd.bd_rate(REF, cheaper) == pytest.approx(-50.0, abs=1e-6)
    assert bd.bd_rate(cheaper, REF) == pytest.approx(100.0, abs=1e-6)
    assert bd.bd_psnr(REF, cheaper) > 0


def test_order_of_points_and_rate_unit_do_not_matter():
    test = [(r * 0.8, q + 0.3) for r, q in REF]
    expected = bd.bd_rate(REF, test)
    assert bd.bd_rate(REF[::-1], test[3:] + test[:3]) == pytest.approx(expected, abs=1e-9)
    scaled = 1234.5  # bytes instead of bpp: only ratios matter
    ref_b, test_b = [(r * scaled, q) for r, q in REF], [(r * scaled, q) for r, q in test]
    assert bd.bd_rate(ref_b, test_b) == pytest.approx(expected, abs=1e-9)
    assert bd.bd_psnr(ref_b, test_b) == pytest.approx(bd.bd_psnr(REF, test), abs=1e-9)


def test_known_linear_case():
    # PSNR = 10 * log10(rate) + c: a +1 dB shift is a rate factor 10**(-0.1) at equal PSNR.
    ref = [(r, 10 * np.log10(r) + 40) for r in (0.1, 0.2, 0.4, 0.8, 1.6)]
    test = [(r, q + 1.0) for r, q in ref]
    assert bd.bd_rate(ref, test) == pytest.approx((10**-0.1 - 1) * 100, abs=1e-6)


def test_non_overlapping_curves_raise():
    far = [(r * 1000, q + 100) for r, q in REF]
    with pytest.raises(bd.BDError, match="do not overlap"):
        bd.bd_psnr(REF, far)
    with pytest.raises(bd.BDError, match="do not overlap"):
        bd.bd_rate(REF, far)


def test_too_few_distinct_points_raise():
    # otok's usual case: one model, three coders -> three rates but one PSNR.
    otok = [(0.05, 22.0), (0.06, 22.0), (0.1, 22.0)]
    with pytest.raises(bd.BDError, match="at least 4"):
        bd.bd_rate(REF, otok)
    with pytest.raises(bd.BDError, match="1 distinct PSNR"):
        bd.bd_psnr(REF, otok + [(0.2, 22.0)])
    with pytest.raises(bd.BDError, match="at least 4"):
        bd.bd_psnr(REF[:3], REF[:3])
    assert bd.distinct_points(otok) == (3, 1)


def test_infinite_psnr_raises():
    with pytest.raises(bd.BDError, match="finite"):
        bd.bd_psnr(REF, REF[:-1] + [(2.0, float("inf"))])


def test_psnr_at_rate_interpolates_in_log_rate():
    assert bd.psnr_at_rate(REF, 0.11) == pytest.approx(32.0)
    # halfway between 0.05 and 0.11 in log10(rate) is their geometric mean
    assert bd.psnr_at_rate(REF, np.sqrt(0.05 * 0.11)) == pytest.approx((29.1 + 32.0) / 2)
    assert bd.psnr_at_rate(REF[::-1], np.sqrt(0.05 * 0.11)) == pytest.approx((29.1 + 32.0) / 2)
    assert bd.psnr_at_rate(REF, 0.01) is None  # below the sweep: no extrapolation
    assert bd.psnr_at_rate(REF, 2.0) is None
    assert bd.psnr_at_rate(REF, 0.0) is None


def test_rate_at_psnr_is_the_inverse():
    for rate in (0.02, 0.07, 0.3, 1.0):
        assert bd.rate_at_psnr(REF, bd.psnr_at_rate(REF, rate)) == pytest.approx(rate)
    assert bd.rate_at_psnr(REF, 20.0) is None
    assert bd.rate_at_psnr(REF, 45.0) is None
    with pytest.raises(bd.BDError, match="increasing"):
        bd.rate_at_psnr([(0.1, 30.0), (0.2, 29.0), (0.4, 33.0)], 31.0)


def test_tiny_x264_encode_measures_stream_bytes_and_psnr():
    pytest.importorskip("av")
    from otok.tools.evaluation import rd

    yy, xx = np.mgrid[0:32, 0:32]
    frames = [np.stack([(xx * 8 + t * 4) % 256, (yy * 8) % 256, ((xx + yy) * 4 + t * 8) % 256], -1).astype(np.uint8)
              for t in range(4)]
    fine = rd.encode_conventional(frames, Fraction(25), "x264", crf=10)
    coarse = rd.encode_conventional(frames, Fraction(25), "x264", crf=45)
    assert len(fine.decoded) == 4 and fine.decoded[0].shape == (32, 32, 3)
    assert fine.bytes > coarse.bytes > 0
    assert 400 < fine.info_bytes < 2000  # x264's version/options SEI, left out of `bytes` by default
    counted = rd.encode_conventional(frames, Fraction(25), "x264", crf=45, count_info_sei=True)
    assert counted.bytes == coarse.bytes + coarse.info_bytes
    assert rd.encoder_version(fine.info).startswith("x264 - core")
    p_fine = rd.measure("c", "x264", "crf=10", frames, fine.decoded, fine.bytes, Fraction(25))
    p_coarse = rd.measure("c", "x264", "crf=45", frames, coarse.decoded, coarse.bytes, Fraction(25))
    assert p_fine.psnr > p_coarse.psnr
    assert p_fine.psnr > 30
    assert p_fine.bpp == pytest.approx(8 * fine.bytes / (4 * 32 * 32))
    assert p_fine.kbps == pytest.approx(8 * fine.bytes / (4 / 25) / 1000)
    # an odd size goes through yuv444p and keeps its exact size
    odd = [f[:31, :29] for f in frames[:2]]
    assert rd.pixel_format(29, 31) == "yuv444p"
    assert rd.encode_conventional(odd, Fraction(25), "x264", crf=23).decoded[1].shape == (31, 29, 3)


def test_annexb_split_keeps_every_byte():
    from otok.tools.evaluation import rd

    stream = (b"\x00\x00\x00\x01\x67abc" b"\x00\x00\x01\x06x264 - core 165 - opts\x00\x80"
              b"\x00\x00\x00\x01\x65\x00\x00\x03\x01xyz")
    nals = rd.annexb_nal_units(stream)
    assert b"".join(nals) == stream
    assert [n[:5] for n in nals] == [b"\x00\x00\x00\x01\x67", b"\x00\x00\x01\x06x", b"\x00\x00\x00\x01\x65"]
    assert rd.sei_text(nals[1]) == "x264 - core 165 - opts"
    sei = "x265 (build 216) - 4.2+1-e444744:[Linux][GCC 14.2.1][64 bit] 8bit - H.265/HEVC codec"
    assert rd.encoder_version(sei) == "x265 (build 216) - 4.2+1-e444744"


def test_rd_end_to_end_at_a_short_side(tmp_path):
    """rd.main on one small clip: x264 at two CRFs and a tiny otok model, frames scaled so the short side is
    24 px; the CSV, plot and summary are written and every row has that size."""
    pytest.importorskip("matplotlib")
    import csv

    from codec_helpers import tiny
    from otok.codec import save
    from otok.tools.evaluation import rd
    from otok.tools.video_io import VideoWriter, max_side_for

    yy, xx = np.mgrid[0:36, 0:60]
    clip = tmp_path / "clip.mp4"
    writer = VideoWriter(clip, 60, 36, Fraction(25))
    for t in range(5):
        writer.write(np.stack([(xx * 4 + t * 8) % 256, yy * 6, (xx + yy) * 2], -1).astype(np.uint8))
    writer.close()
    assert max_side_for(clip, 24) == 40 and max_side_for(clip, 36) is None
    model = save(tiny(), tmp_path / "tiny.safetensors")
    out = tmp_path / "rd"
    status = rd.main(["--clips", str(clip), "--short-side", "24", "--codecs", "x264", "--crf", "20,40",
                      "--models", str(model), "--coders", "zstd", "--rdo", "0,0.5", "--out", str(out)])
    assert status == 0
    rows = list(csv.DictReader(line for line in (out / "rd.csv").open() if not line.startswith("#")))
    assert [(r["codec"], r["param"]) for r in rows] == [
        ("x264", "crf=20"), ("x264", "crf=40"), ("tiny:zstd", "rdo=0"), ("tiny:zstd", "rdo=0.5")]
    assert rows[2]["bytes"] != rows[3]["bytes"]  # the tolerance reached the tokens
    assert {(r["width"], r["height"], r["frames"]) for r in rows} == {("40", "24", "5")}
    assert float(rows[0]["psnr"]) > float(rows[1]["psnr"])
    assert (out / "rd.png").stat().st_size > 0 and "x264" in (out / "summary.txt").read_text()
