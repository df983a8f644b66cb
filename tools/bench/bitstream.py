"""Benchmark the `.otok` coders: bits/token and M tokens/s (encode, decode) per coder.

    python tools/bench/bitstream.py                              # synthetic 360p and 1080p grids (patch 8)
    python tools/bench/bitstream.py --json                       # the same as one JSON object
    python tools/bench/bitstream.py --tokens a.otok b.otok ...   # real token grids: .otok files, or .npy
                                                                 # int (S, h, w) or (1, S, h, w)

Synthetic streams: uniform tokens, and 70/80/90 % "same token as the previous step" (segments of 5 steps,
codebook 8192 by default); the entropy bound of each stream is printed beside the ctx rows. `ctx` is
literal model 0 (format 1.1), `ctx1` literal model 1 (grouped literals, format 1.2: what `otok encode`
writes); both with the coder's default parameters (`CtxParams()`). `+prior` starts from a prior table
built from a separate sample of the same source (referenced by hash, as a model would ship it; not
counted in the file size). Timings are the median of `--repeat` runs through the full writer and reader
on an in-memory file, in this one process (the ctx kernels compiled or loaded from numba's cache first),
in CPU seconds of the process (`time.process_time`: the coders run in one thread, and the figure then holds
on a machine shared with other jobs; on an idle one it equals the wall time).
`cold start` is measured in fresh processes: importing otok.bitstream and the first encode and decode of
a small grid with each literal model, loading the kernels from numba's cache, and compiling them (an
empty cache folder).

Real tokens (`--tokens`): per file raw, zstd, ctx and ctx1 with `--prior FILE` (a model's shipped table,
e.g. codec/weights/otok-s.prior: what `otok encode` codes with), or else with `+loo`: a prior built by
`Prior.from_tokens` from the OTHER files given (leave-one-out, identity code order; with a single file
the prior is in-sample, shown as `+self`, an optimistic stand-in). An .otok file brings its segment length
and codebook size; for .npy, --gop and --codebook (default: max + 1) apply. Sizes are given twice, each
against zstd's: of the whole file, and of the coded steps alone (`OtokReader.coded_bytes`: the coder's data
without the ~300 bytes of container, which differs between coders only by their parameters).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from otok.bitstream import CtxParams, Header, OtokReader, OtokWriter, Prior, read_header, read_tokens
from otok.bitstream.synthetic import entropy_bound, repetition_grids

GRIDS = {"360p": (45, 80), "1080p": (135, 240)}
STREAMS = {"uniform": 0.0, "rep70": 0.7, "rep80": 0.8, "rep90": 0.9}


def _median_time(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        times.append(time.process_time() - t0)
    return statistics.median(times), out


def bench(tokens: np.ndarray, k: int, gop: int, coder: str, prior: Prior | None, repeat: int,
          literal_increment: int | None = None) -> tuple[float, float, float, int]:
    """-> (bits/token, encode M tokens/s, decode M tokens/s, coded bytes: the STEP chunks' coder data,
    without the container) for tokens (S, h, w). coder: raw, zstd, ctx (literal model 0) or ctx1
    (literal model 1)."""
    h, w = tokens.shape[1:]
    params = None
    if coder.startswith("ctx"):
        params = CtxParams(literal_model=int(coder == "ctx1"))
        if literal_increment is not None:
            params = dataclasses.replace(params, literal_increment=literal_increment)
        coder = "ctx"
    header = Header("bench", bytes(32), 8, 4, gop, (h, w), 8 * w, 8 * h, (30, 1), codebook_size=k, coder=coder,
                    coder_params=params)

    def encode() -> bytes:
        buf = io.BytesIO()
        with OtokWriter(buf, header, prior=prior, embed_prior=False) as writer:
            writer.write(tokens)
        return buf.getvalue()

    t_enc, data = _median_time(encode, repeat)
    t_dec, out = _median_time(lambda: read_tokens(io.BytesIO(data), prior=prior), repeat)
    if not np.array_equal(out, tokens):
        raise SystemExit(f"{coder}: round trip failed")
    coded = OtokReader(io.BytesIO(data)).coded_bytes
    return 8 * len(data) / tokens.size, tokens.size / t_enc / 1e6, tokens.size / t_dec / 1e6, coded


def _rows(name: str, tokens: np.ndarray, k: int, gop: int, prior: Prior | None, bound: float | None,
          repeat: int, literal_increment: int | None, out: list[dict], table: bool) -> None:
    for coder, p in [("raw", None), ("zstd", None), ("ctx", None), ("ctx+prior", prior), ("ctx1", None),
                     ("ctx1+prior", prior)]:
        if coder.endswith("+prior") and p is None:
            continue
        bits, enc, dec, _ = bench(tokens, k, gop, coder.split("+")[0], p, repeat, literal_increment)
        row = {"stream": name, "coder": coder, "bits_per_token": round(bits, 4), "encode_mtok_s": round(enc, 2),
               "decode_mtok_s": round(dec, 2)}
        if bound is not None and coder.startswith("ctx"):
            row["entropy_bound"] = round(bound, 4)
        out.append(row)
        if table:
            gap = f"{bound:8.3f} {bits - bound:+7.3f}" if "entropy_bound" in row else ""
            print(f"{name:<16} {coder:<10} {bits:8.3f} {enc:9.1f} {dec:9.1f}   {gap}", flush=True)


COLD_START = """
import time
t0 = time.perf_counter()
import numpy as np
from otok.bitstream import CtxParams, Header, OtokWriter, read_tokens
import io
t1 = time.perf_counter()
tokens = np.arange(2 * 6 * 8).reshape(2, 6, 8) % 50
for model in (0, 1):
    header = Header("cold", bytes(32), 8, 4, 5, (6, 8), 64, 48, (30, 1), codebook_size=50, coder="ctx",
                    coder_params=CtxParams(literal_model=model))
    buf = io.BytesIO()
    with OtokWriter(buf, header) as w:
        w.write(tokens)
    assert (read_tokens(io.BytesIO(buf.getvalue())) == tokens).all()
print(t1 - t0, time.perf_counter() - t1)
"""


def cold_start() -> dict:
    """Seconds in a fresh process: importing otok.bitstream, then a first encode and decode with literal
    models 0 and 1, the kernels loaded from numba's cache (`cached`, after a run that fills it) and
    compiled (`compile`: an empty cache folder)."""
    out = {}
    with tempfile.TemporaryDirectory() as empty:
        for name, env in [("compile", {"NUMBA_CACHE_DIR": empty}), ("fill", {}), ("cached", {})]:
            run = subprocess.run([sys.executable, "-c", COLD_START], capture_output=True, text=True, check=True,
                                 env={**os.environ, **env})
            imported, first = map(float, run.stdout.split())
            if name != "fill":
                out[name] = {"import_s": round(imported, 3), "first_encode_decode_s": round(first, 3)}
    return out


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


def real_tokens(paths: list[str], gop: int, codebook: int | None, repeat: int, literal_increment: int | None,
                model_prior: Prior | None = None, table: bool = True) -> list[dict]:
    """Per file: bytes and bits/token of raw, zstd, and ctx / ctx1 with `model_prior` or a leave-one-out
    prior -> the rows (printed as a table when `table`)."""
    files = [(p, *_load_tokens(p, gop, codebook, model_prior)) for p in paths]
    if table:
        print(f"{'file':<32} {'coder':<10} {'bytes':>9} {'bits/tok':>8} {'enc Mt/s':>9} {'dec Mt/s':>9}  "
              f"{'vs zstd':>7}  {'coded':>9} {'vs zstd':>7}")
    totals: dict[str, list[int]] = {}
    rows = []
    for path, tokens, g, k in files:
        if model_prior is not None:
            suffix, prior = "+prior", model_prior
        else:
            others = [seg for p, t, og, ok in files if p != path and ok == k for seg in _segments(t, og)]
            suffix = "+loo" if others else "+self"
            prior = Prior.from_tokens(others or _segments(tokens, g), k)
        zstd_sizes = None
        for coder, p in [("raw", None), ("zstd", None), ("ctx" + suffix, prior), ("ctx1" + suffix, prior)]:
            bits, enc, dec, coded = bench(tokens, k, g, coder.split("+")[0], p, repeat, literal_increment)
            sizes = (round(bits * tokens.size / 8), coded)
            zstd_sizes = sizes if coder == "zstd" else zstd_sizes
            total = totals.setdefault(coder.replace("self", "loo"), [0, 0])
            total[0], total[1] = total[0] + sizes[0], total[1] + sizes[1]
            name = path.rsplit("/", 1)[-1][:32]
            rows.append({"file": name, "coder": coder, "tokens": int(tokens.size), "bytes": sizes[0],
                         "coded_bytes": coded, "bits_per_token": round(bits, 4), "encode_mtok_s": round(enc, 2),
                         "decode_mtok_s": round(dec, 2)})
            if table:
                print(f"{name:<32} {coder:<10} {sizes[0]:>9,} {bits:8.3f} {enc:9.1f} {dec:9.1f}  "
                      f"{_versus(sizes[0], zstd_sizes, 0, coder)}  {coded:>9,} {_versus(coded, zstd_sizes, 1, coder)}",
                      flush=True)
    if len(files) > 1 and table:
        for coder, (size, coded) in totals.items():
            print(f"{'total':<32} {coder:<10} {size:>9,} {'':>8} {'':>9} {'':>9}  "
                  f"{_versus(size, totals['zstd'], 0, coder)}  {coded:>9,} {_versus(coded, totals['zstd'], 1, coder)}")
    return rows


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
    ap.add_argument("--literal-increment", type=int, default=None,
                    help=f"ctx literal_increment (default: the coder's, {CtxParams().literal_increment})")
    ap.add_argument("--prior", metavar="FILE", help="--tokens: code ctx with this prior table (e.g. a model's "
                                                    ".prior) instead of a leave-one-out one")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    ap.add_argument("--no-cold-start", action="store_true", help="skip the cold-start measurement")
    args = ap.parse_args(argv)
    table = not args.json
    report: dict = {"repeat": args.repeat}
    if not args.no_cold_start:
        report["cold_start"] = cold_start()
        if table:
            for name, t in report["cold_start"].items():
                print(f"cold start ({name}): import {t['import_s']:.2f} s, first encode + decode (literal models "
                      f"0 and 1) {t['first_encode_decode_s']:.2f} s", flush=True)
    if args.tokens:
        report["tokens"] = real_tokens(args.tokens, args.gop, args.codebook, args.repeat, args.literal_increment,
                                       Prior.load(args.prior) if args.prior else None, table)
    else:
        k = args.codebook or 8192
        report["synthetic"] = rows = []
        if table:
            print(f"{'stream':<16} {'coder':<10} {'bits/tok':>8} {'enc Mt/s':>9} {'dec Mt/s':>9}   "
                  f"{'bound':>8} {'gap':>7}")
        bench(repetition_grids(2, (8, 8), k, 0.5, args.gop, seed=0), k, args.gop, "ctx1", None, 1)  # warm the kernels
        for grid_name, grid in GRIDS.items():
            for stream, rep in STREAMS.items():
                tokens = repetition_grids(args.steps, grid, k, rep, args.gop, seed=1)
                sample = repetition_grids(2 * args.gop, grid, k, rep, args.gop, seed=2)
                prior = Prior.from_tokens([sample[i:i + args.gop] for i in range(0, len(sample), args.gop)], k)
                bound = entropy_bound(args.steps, k, rep, args.gop)
                _rows(f"{grid_name}/{stream}", tokens, k, args.gop, prior, bound, args.repeat, args.literal_increment,
                      rows, table)
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
