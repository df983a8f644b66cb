"""Benchmark the `.otok` coders: bits/token and M tokens/s (encode, decode) per coder.

    python tools/bench_bitstream.py                      # synthetic 360p and 1080p grids (patch 8)
    python tools/bench_bitstream.py --tokens grids.npy   # real token grids, int (S, h, w) or (1, S, h, w)

Synthetic streams: uniform tokens, and 70/80/90 % "same token as the previous step" (segments of 5 steps,
codebook 8192 by default); the entropy bound of each stream is printed beside the ctx rows. `ctx+prior`
starts from a prior table built from a separate sample of the same source (referenced by hash, as a model
would ship it; not counted in the file size). Timings are the median of `--repeat` runs through the full
writer and reader on an in-memory file.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time

import numpy as np

from otok.bitstream import Header, OtokWriter, Prior, read_tokens
from otok.bitstream.synthetic import entropy_bound, repetition_grids

GRIDS = {"360p": (45, 80), "1080p": (135, 240)}
STREAMS = {"uniform": 0.0, "rep70": 0.7, "rep80": 0.8, "rep90": 0.9}


def _median_time(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench(tokens: np.ndarray, k: int, gop: int, coder: str, prior: Prior | None, repeat: int) -> tuple[float, float, float]:
    """-> (bits/token, encode M tokens/s, decode M tokens/s) for tokens (S, h, w)."""
    h, w = tokens.shape[1:]
    header = Header("bench", bytes(32), 8, 4, gop, (h, w), 8 * w, 8 * h, (30, 1), codebook_size=k, coder=coder)

    def encode() -> bytes:
        buf = io.BytesIO()
        with OtokWriter(buf, header, prior=prior, embed_prior=False) as writer:
            writer.write(tokens)
        return buf.getvalue()

    t_enc, data = _median_time(encode, repeat)
    t_dec, out = _median_time(lambda: read_tokens(io.BytesIO(data), prior=prior), repeat)
    if not np.array_equal(out, tokens):
        raise SystemExit(f"{coder}: round trip failed")
    return 8 * len(data) / tokens.size, tokens.size / t_enc / 1e6, tokens.size / t_dec / 1e6


def _rows(name: str, tokens: np.ndarray, k: int, gop: int, prior: Prior | None, bound: float | None,
          repeat: int) -> None:
    for coder, p in [("raw", None), ("zstd", None), ("ctx", None), ("ctx+prior", prior)]:
        if coder == "ctx+prior" and p is None:
            continue
        bits, enc, dec = bench(tokens, k, gop, coder.split("+")[0], p, repeat)
        gap = "" if bound is None or not coder.startswith("ctx") else f"{bound:8.3f} {bits - bound:+7.3f}"
        print(f"{name:<16} {coder:<10} {bits:8.3f} {enc:9.1f} {dec:9.1f}   {gap}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", help="a .npy of real token grids, int (S, h, w) or (1, S, h, w)")
    ap.add_argument("--codebook", type=int, default=8192, help="codebook size K (default 8192; --tokens: max + 1)")
    ap.add_argument("--gop", type=int, default=5, help="segment length in steps")
    ap.add_argument("--steps", type=int, default=50, help="synthetic steps per stream")
    ap.add_argument("--repeat", type=int, default=3, help="timing runs (the median is kept)")
    args = ap.parse_args(argv)
    print(f"{'stream':<16} {'coder':<10} {'bits/tok':>8} {'enc Mt/s':>9} {'dec Mt/s':>9}   {'bound':>8} {'gap':>7}")
    if args.tokens:
        tokens = np.load(args.tokens)
        tokens = tokens.reshape(tokens.shape[-3:]) if tokens.ndim == 4 and tokens.shape[0] == 1 else tokens
        k = args.codebook if "--codebook" in (argv or sys.argv) else int(tokens.max()) + 1
        segments = [tokens[i:i + args.gop] for i in range(0, len(tokens), args.gop)] if args.gop else [tokens]
        prior = Prior.from_tokens(segments, k)  # in-sample: an optimistic stand-in for the model's prior
        _rows("file", tokens.astype(np.int64), k, args.gop, prior, None, args.repeat)
        return 0
    for grid_name, grid in GRIDS.items():
        for stream, rep in STREAMS.items():
            tokens = repetition_grids(args.steps, grid, args.codebook, rep, args.gop, seed=1)
            sample = repetition_grids(2 * args.gop, grid, args.codebook, rep, args.gop, seed=2)
            prior = Prior.from_tokens([sample[i:i + args.gop] for i in range(0, len(sample), args.gop)], args.codebook)
            bound = entropy_bound(args.steps, args.codebook, rep, args.gop)
            _rows(f"{grid_name}/{stream}", tokens, args.codebook, args.gop, prior, bound, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
