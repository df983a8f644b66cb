"""Quality and rate of a model over a set of files: per file and the mean, through real `.otok` files.

    python tools/evaluation/eval_set.py --model otok-s --data DIR [--data DIR ...] [--short-side 256] [--frames 33]

Each video and image under the folders is encoded and decoded with `otok.tools.evaluation.evaluate.eval_file`
(frames scaled down so the shorter side is --short-side, or with --max-side so the longer side is at most
that); prints PSNR, SSIM, bits/token (of the whole file, and of the coded steps alone:
`OtokReader.coded_bytes`, the coder's data without the container's ~270 bytes) and bpp per file and their
means over files, what a person sees (`otok.tools.evaluation.metrics.VideoQuality`, docs/METRICS.md: the lowest frame
PSNR, the bicubic x8 down-up floor `psnr_bicubic8`, `seam_ratio`, `judder_ratio`, `segment_pulse_db`,
per-channel and chroma error) per file and as means (the lowest frame over all files for psnr_min, and how
many files fall below their bicubic floor), and for VQ models how much of the codebook the files used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from otok.bitstream import OtokError
from otok.tools.encode import rdo_for
from otok.tools.evaluation.evaluate import eval_file
from otok.tools.info import coded_suffix
from otok.tools.models import load_model
from otok.tools.options import DEFAULTS
from otok.tools.evaluation.metrics import mean_quality, quality_line
from otok.tools.video_io import max_side_for, media_files


def codebook_usage(counts: np.ndarray) -> dict:
    """Codes used at least once, and the perplexity 2**H of the token distribution."""
    p = counts[counts > 0] / counts.sum()
    return {"codes_used": int(len(p)), "codebook_size": int(len(counts)),
            "perplexity": float(2 ** -(p * np.log2(p)).sum()), "tokens": int(counts.sum())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULTS.model)
    parser.add_argument("--data", action="append", type=Path, required=True)
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--short-side", type=int, default=256, help="scale down so the shorter side is this")
    scale.add_argument("--max-side", type=int, default=None, help="scale down so the longer side is at most this")
    parser.add_argument("--frames", type=int, default=None, help="at most this many frames per video")
    parser.add_argument("--coder", default="ctx")
    parser.add_argument("--rdo", type=float, default=None, metavar="TAU",
                        help="rate-distortion tolerance (default: what `otok encode` uses)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    tok = load_model(args.model)
    try:
        rdo = rdo_for(tok, args.rdo)
    except OtokError as exc:
        parser.exit(2, f"eval_set: error: {exc}\n")
    files = media_files(args.data)
    rows, qualities, counts = [], [], None
    for path in files:
        max_side = args.max_side or max_side_for(path, args.short_side)
        r = eval_file(path, coder=args.coder, max_side=max_side, frames=args.frames, tokenizer=tok, rdo=rdo)
        if r.code_counts is not None:
            counts = r.code_counts if counts is None else counts + r.code_counts
        row = {"file": path.name, "frames": r.frames, "size": f"{r.width}x{r.height}", "psnr": r.psnr,
               "ssim": r.ssim, "bits_per_token": r.bits_per_token, "coded_bits_per_token": r.coded_bits_per_token,
               "bpp": r.bpp, **r.quality}
        rows.append(row)
        qualities.append(r.quality)
        if not args.json:
            print(f"{path.name:<28} {r.frames:>4} frames {row['size']:>9}  PSNR {r.psnr:6.2f} dB  SSIM {r.ssim:.4f}  "
                  f"{r.bits_per_token:6.3f} bits/token{coded_suffix(r.coded_bits_per_token, 6)}  "
                  f"{r.bpp:.4f} bpp", flush=True)
            print(f"{'':<28} {quality_line(r.quality)}", flush=True)
    means = {k: float(np.mean([row[k] for row in rows]))
             for k in ("psnr", "ssim", "bits_per_token", "coded_bits_per_token", "bpp")}
    means.update(mean_quality(qualities))
    means["below_bicubic8"] = sum(1 for row in rows if row["psnr_bicubic8"] is not None
                                  and row["psnr"] < row["psnr_bicubic8"])
    usage = codebook_usage(counts) if counts is not None else None
    if args.json:
        print(json.dumps({"model": str(args.model), "rdo": rdo, "max_side": args.max_side,
                          "short_side": args.short_side,
                          "files": rows, "mean": means, "codebook": usage}))
    else:
        print(f"rdo {rdo:g}")
        print(f"{'mean over ' + str(len(rows)) + ' files':<28} PSNR {means['psnr']:6.2f} dB  SSIM {means['ssim']:.4f}  "
              f"{means['bits_per_token']:6.3f} bits/token{coded_suffix(means['coded_bits_per_token'], 6)}  "
              f"{means['bpp']:.4f} bpp")
        print(f"{'':<28} {quality_line(means)}  ({means['below_bicubic8']} of {len(rows)} files below their "
              f"bicubic x8 floor; min: the lowest frame of all)")
        if usage:
            print(f"codebook: {usage['codes_used']} of {usage['codebook_size']} codes used "
                  f"({100 * usage['codes_used'] / usage['codebook_size']:.1f} %) over {usage['tokens']:,} tokens, "
                  f"perplexity {usage['perplexity']:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
