"""Benchmark the `.otok` coders: bits/token and M tokens/s (encode, decode) per coder.

    python tools/bench_bitstream.py                              # synthetic 360p and 1080p grids (patch 8)
    python tools/bench_bitstream.py --tokens a.otok b.otok ...   # real token grids: .otok files, or .npy
                                                                 # int (S, h, w) or (1, S, h, w)

Synthetic streams: uniform tokens, and 70/80/90 % "same token as the previous step" (segments of 5 steps,
codebook 8192 by default); the entropy bound of each stream is printed beside the ctx rows. `ctx` is
literal model 0 (format 1.1), `ctx1` literal model 1 (grouped literals, format 1.2); `+prior` starts from
a prior table built from a separate sample of the same source (referenced by hash, as a model would ship
it; not counted in the file size). Timings are the median of `--repeat` runs through the full writer and
reader on an in-memory file.

Real tokens (`--tokens`): per file raw, zstd, ctx and ctx1 with `--prior FILE` (a model's shipped table,
e.g. codec/weights/otok-s.prior: what `otok encode` codes with), or else with `+loo`: a prior built by
`Prior.from_tokens` from the OTHER files given (leave-one-out, identity code order; with a single file
the prior is in-sample, shown as `+self`, an optimistic stand-in). An .otok file brings its segment length
and codebook size; for .npy, --gop and --codebook (default: max + 1) apply. Sizes are given twice, each
against zstd's: of the whole file, and of the coded steps alone (`OtokReader.coded_bytes`: the coder's data
without the ~300 bytes of container, which differs between coders only by their parameters). ctx uses
`--literal-increment` (default: 1 on synthetic streams, the value `otok encode` writes on real tokens, so
the sizes are those of real files).

`--workers N` codes N segments at once in worker processes (`OtokWriter(workers=N)`,
`OtokReader(workers=N)`; the pool is started before timing).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np

from otok.bitstream import CtxParams, Header, OtokReader, OtokWriter, Prior, parallel, read_header, read_tokens
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


def bench(tokens: np.ndarray, k: int, gop: int, coder: str, prior: Prior | None, repeat: int,
          literal_increment: int = 1, workers: int = 1) -> tuple[float, float, float, int]:
    """-> (bits/token, encode M tokens/s, decode M tokens/s, coded bytes: the STEP chunks' coder data,
    without the container) for tokens (S, h, w). coder: raw, zstd, ctx (literal model 0) or ctx1
    (literal model 1). workers: segments coded in that many processes (bitstream.parallel)."""
    h, w = tokens.shape[1:]
    params = None
    if coder.startswith("ctx"):
        params = CtxParams(literal_increment=literal_increment, literal_model=int(coder == "ctx1"))
        coder = "ctx"
    header = Header("bench", bytes(32), 8, 4, gop, (h, w), 8 * w, 8 * h, (30, 1), codebook_size=k, coder=coder,
                    coder_params=params)

    def encode() -> bytes:
        buf = io.BytesIO()
        with OtokWriter(buf, header, prior=prior, embed_prior=False, workers=workers) as writer:
            writer.write(tokens)
        return buf.getvalue()

    t_enc, data = _median_time(encode, repeat)
    t_dec, out = _median_time(lambda: read_tokens(io.BytesIO(data), prior=prior, workers=workers), repeat)
    if not np.array_equal(out, tokens):
        raise SystemExit(f"{coder}: round trip failed")
    coded = OtokReader(io.BytesIO(data)).coded_bytes
    return 8 * len(data) / tokens.size, tokens.size / t_enc / 1e6, tokens.size / t_dec / 1e6, coded


def _rows(name: str, tokens: np.ndarray, k: int, gop: int, prior: Prior | None, bound: float | None,
          repeat: int, literal_increment: int, workers: int) -> None:
    for coder, p in [("raw", None), ("zstd", None), ("ctx", None), ("ctx+prior", prior), ("ctx1", None),
                     ("ctx1+prior", prior)]:
        if coder == "ctx+prior" and p is None:
            continue
        bits, enc, dec, _ = bench(tokens, k, gop, coder.split("+")[0], p, repeat, literal_increment, workers)
        gap = "" if bound is None or not coder.startswith("ctx") else f"{bound:8.3f} {bits - bound:+7.3f}"
        print(f"{name:<16} {coder:<10} {bits:8.3f} {enc:9.1f} {dec:9.1f}   {gap}", flush=True)


def _load_tokens(path: str, gop: int, codebook: int | None, prior: Prior | None = None) -> tuple[np.ndarray, int, int]:
    """-> (tokens int64 (S, h, w), gop, K) from an .otok file (its header's gop and K; `prior`: the table a
    `ctx` file references) or an .npy."""
    if path.endswith(".otok"):
        header = read_header(path)
        return read_tokens(path, prior=prior).astype(np.int64), header.gop, header.codebook_size
    tokens = np.load(path)
    tokens = tokens.reshape(tokens.shape[-3:]) if tokens.ndim == 4 and tokens.shape[0] == 1 else tokens
    return tokens.astype(np.int64), gop, codebook or int(tokens.max()) + 1


def _segments(tokens: np.ndarray, gop: int) -> list[np.ndarray]:
    return [tokens[i:i + gop] for i in range(0, len(tokens), gop)] if gop else [tokens]


def real_tokens(paths: list[str], gop: int, codebook: int | None, repeat: int, literal_increment: int,
                model_prior: Prior | None = None, workers: int = 1) -> None:
    """Per file: bytes and bits/token of raw, zstd, and ctx / ctx1 with `model_prior` or a leave-one-out
    prior."""
    files = [(p, *_load_tokens(p, gop, codebook, model_prior)) for p in paths]
    print(f"{'file':<32} {'coder':<10} {'bytes':>9} {'bits/tok':>8} {'enc Mt/s':>9} {'dec Mt/s':>9}  {'vs zstd':>7}"
          f"  {'coded':>9} {'vs zstd':>7}")
    totals: dict[str, list[int]] = {}
    for path, tokens, g, k in files:
        if model_prior is not None:
            suffix, prior = "+prior", model_prior
        else:
            others = [seg for p, t, og, ok in files if p != path and ok == k for seg in _segments(t, og)]
            suffix = "+loo" if others else "+self"
            prior = Prior.from_tokens(others or _segments(tokens, g), k)
        zstd_sizes = None
        for coder, p in [("raw", None), ("zstd", None), ("ctx" + suffix, prior), ("ctx1" + suffix, prior)]:
            bits, enc, dec, coded = bench(tokens, k, g, coder.split("+")[0], p, repeat, literal_increment, workers)
            sizes = (round(bits * tokens.size / 8), coded)
            zstd_sizes = sizes if coder == "zstd" else zstd_sizes
            total = totals.setdefault(coder.replace("self", "loo"), [0, 0])
            total[0], total[1] = total[0] + sizes[0], total[1] + sizes[1]
            name = path.rsplit("/", 1)[-1][:32]
            print(f"{name:<32} {coder:<10} {sizes[0]:>9,} {bits:8.3f} {enc:9.1f} {dec:9.1f}  "
                  f"{_versus(sizes[0], zstd_sizes, 0, coder)}  {coded:>9,} {_versus(coded, zstd_sizes, 1, coder)}",
                  flush=True)
    if len(files) > 1:
        for coder, (size, coded) in totals.items():
            print(f"{'total':<32} {coder:<10} {size:>9,} {'':>8} {'':>9} {'':>9}  "
                  f"{_versus(size, totals['zstd'], 0, coder)}  {coded:>9,} {_versus(coded, totals['zstd'], 1, coder)}")


def _versus(size: int, zstd: list[int] | tuple[int, int] | None, which: int, coder: str) -> str:
    """size against zstd's (whole files: which 0; coded steps: which 1), or blanks."""
    return f"{size / zstd[which] - 1:+7.1%}" if zstd and zstd[which] and coder != "zstd" else " " * 7


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", nargs="+", metavar="FILE",
                    help="real token grids: .otok files, or .npy int (S, h, w) / (1, S, h, w)")
    ap.add_argument("--codebook", type=int, default=None,
                    help="codebook size K (synthetic default 8192; .npy default max + 1)")
    ap.add_argument("--gop", type=int, default=5, help="segment length in steps (synthetic and .npy)")
    ap.add_argument("--steps", type=int, default=50, help="synthetic steps per stream")
    ap.add_argument("--repeat", type=int, default=3, help="timing runs (the median is kept)")
    ap.add_argument("--workers", type=int, default=1,
                    help="code segments in this many processes (OtokWriter/OtokReader workers=; default 1)")
    ap.add_argument("--literal-increment", type=int, default=None,
                    help="ctx literal_increment (default: 1 synthetic, what `otok encode` writes for --tokens)")
    ap.add_argument("--prior", metavar="FILE", help="--tokens: code ctx with this prior table (e.g. a model's "
                                                    ".prior) instead of a leave-one-out one")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error(f"--workers must be at least 1, got {args.workers}")
    if args.workers > 1:
        parallel.warm_up(args.workers)  # start the worker processes before anything is timed
    if args.tokens:
        from otok.tools.pipeline import TOKEN_LITERAL_INCREMENT  # imports torch: only for real tokens

        increment = TOKEN_LITERAL_INCREMENT if args.literal_increment is None else args.literal_increment
        real_tokens(args.tokens, args.gop, args.codebook, args.repeat, increment,
                    Prior.load(args.prior) if args.prior else None, args.workers)
        return 0
    increment = 1 if args.literal_increment is None else args.literal_increment
    k = args.codebook or 8192
    print(f"{'stream':<16} {'coder':<10} {'bits/tok':>8} {'enc Mt/s':>9} {'dec Mt/s':>9}   {'bound':>8} {'gap':>7}")
    for grid_name, grid in GRIDS.items():
        for stream, rep in STREAMS.items():
            tokens = repetition_grids(args.steps, grid, k, rep, args.gop, seed=1)
            sample = repetition_grids(2 * args.gop, grid, k, rep, args.gop, seed=2)
            prior = Prior.from_tokens([sample[i:i + args.gop] for i in range(0, len(sample), args.gop)], k)
            bound = entropy_bound(args.steps, k, rep, args.gop)
            _rows(f"{grid_name}/{stream}", tokens, k, args.gop, prior, bound, args.repeat, increment, args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
