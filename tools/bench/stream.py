"""Streaming speed and memory of the tokenizer on this machine.

    python tools/bench/stream.py                       # otok-s and otok-b at 256x256
    python tools/bench/stream.py --models otok-tiny --size 128 --steps 60
    python tools/bench/stream.py --models --rdo-grids 32x32 45x80 135x240   # only the rdo token choice

For each model: encode and decode frames/s (median video step), the stream's state bytes, and the median
step time over steps 5-25 against steps 140-160 (the temporal window slides over the whole run: the
segment holds the whole run, so a flat ratio shows that per-step cost does not grow). The two
windows are timed interleaved, a step of each in turn, so that noise from other work on the machine
falls on both alike.
Random-init weights: speed does not depend on their values.

Then the cost of rate-distortion token choice (`otok.codec.rdo.choose_tokens`, what `otok encode --rdo`
adds to each step, on the CPU whatever the model's device) per grid of --rdo-grids: the median over 20
steps of random nearest tokens, half of them equal to the previous step's, at the CLI's default tolerance.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from otok.codec import load


def median_ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times)


class StreamPair:
    """An encoder and a decoder stream of one model or engine, past their image step, stepped together.
    Their segment holds `steps` video steps, so the temporal window slides the whole run. Used by this
    bench and by tools/bench/backends.py."""

    def __init__(self, tok, size: int, group: torch.Tensor, steps: int, sync=lambda: None) -> None:
        self.encoder = tok.stream_encoder(1, size, size, gop=steps + 1)
        self.decoder = tok.stream_decoder(1, size, size, gop=steps + 1)
        self.group, self.sync = group, sync
        self.decoder.push(self.encoder.push(group[:, :, :1])[0])  # the image step
        self.step = 0
        self.times: tuple[list[float], list[float]] = ([], [])  # encode, decode seconds of recorded steps

    def advance(self, record: bool = True) -> tuple[float, float]:
        """One video step; returns (encode seconds, decode seconds), also kept in `times` if `record`."""
        start = time.perf_counter()
        (grid,) = self.encoder.push(self.group)
        self.sync()
        mid = time.perf_counter()
        self.decoder.push(grid)
        self.sync()
        self.step += 1
        seconds = mid - start, time.perf_counter() - mid
        if record:
            self.times[0].append(seconds[0])
            self.times[1].append(seconds[1])
        return seconds

    def state_nbytes(self) -> int:
        return self.encoder.state_nbytes() + self.decoder.state_nbytes()


def bench(name: str, size: int, late: int, threads: int) -> dict:
    """Times steps 5-25 of a young stream interleaved with steps late-20..late of an old one, so that
    machine noise hits both windows alike."""
    torch.set_num_threads(threads)
    tok = load(name, pretrained=False, seed=0)
    t = tok.config.tubelet
    group = torch.rand(1, 3, t, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    times = {"young": ([], []), "old": ([], [])}
    with torch.inference_mode():
        old = StreamPair(tok, size, group, late)
        while old.step < 10:
            old.advance()
        state_10 = old.state_nbytes()
        while old.step < late - 21:
            old.advance()
        young = StreamPair(tok, size, group, late)
        for _ in range(4):
            young.advance()
        for _ in range(21):  # young steps 5..25, old steps late-20..late
            for label, pair in (("young", young), ("old", old)):
                enc, dec = pair.advance()
                times[label][0].append(enc)
                times[label][1].append(dec)
    result = {
        "model": name,
        "params_M": tok.num_parameters() / 1e6,
        "encode_fps": t / statistics.median(times["young"][0] + times["old"][0]),
        "decode_fps": t / statistics.median(times["young"][1] + times["old"][1]),
        "state_bytes": old.state_nbytes(),
        "state_bytes_step10": state_10,
    }
    for i, kind in enumerate(("encode", "decode")):
        early, late_ms = median_ms(times["young"][i]), median_ms(times["old"][i])
        result[f"{kind}_early_ms"], result[f"{kind}_late_ms"], result[f"{kind}_ratio"] = early, late_ms, late_ms / early
    return result


def bench_rdo(grid: tuple[int, int], repeat: int = 20) -> float:
    """Median milliseconds of one step's rdo token choice on a (h, w) grid with otok-s's codebook size."""
    from otok.codec.rdo import choose_tokens
    from otok.tools.options import DEFAULTS

    tok = load("otok-s", pretrained=False, seed=0)
    g = torch.Generator().manual_seed(0)
    k = tok.config.codebook_size
    times = []
    with torch.inference_mode():
        for _ in range(repeat):
            previous = torch.randint(0, k, (1, *grid), generator=g)
            nearest = torch.where(torch.rand(1, *grid, generator=g) < 0.5, previous,
                                  torch.randint(0, k, (1, *grid), generator=g))
            start = time.perf_counter()
            choose_tokens(nearest, previous, tok.quantizer.codes_from_indices, DEFAULTS.rdo)
            times.append(time.perf_counter() - start)
    return median_ms(times)


def bench_models(args: argparse.Namespace) -> None:
    print(f"# {args.size}x{args.size}, {args.steps} video steps after an image step, {args.threads} threads, "
          f"torch {torch.__version__}")
    header = (f"{'model':<10} {'params':>7} {'enc f/s':>8} {'dec f/s':>8} {'state B':>10} "
              f"{'enc ms early/late':>18} {'ratio':>6} {'dec ms early/late':>18} {'ratio':>6}")
    print(header)
    for name in args.models:
        r = bench(name, args.size, max(args.steps, 47), args.threads)
        assert r["state_bytes"] == r["state_bytes_step10"], "stream state grew"
        print(f"{r['model']:<10} {r['params_M']:>6.1f}M {r['encode_fps']:>8.1f} {r['decode_fps']:>8.1f} "
              f"{r['state_bytes']:>10,} {r['encode_early_ms']:>8.1f}/{r['encode_late_ms']:<9.1f} "
              f"{r['encode_ratio']:>6.3f} {r['decode_early_ms']:>8.1f}/{r['decode_late_ms']:<9.1f} "
              f"{r['decode_ratio']:>6.3f}", flush=True)
    print(f"# early = steps 5-25 of a fresh stream, late = steps {args.steps - 20}-{args.steps} of an old one, "
          "timed interleaved; medians; state bytes equal at step 10 and at the end")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["otok-s", "otok-b"])
    parser.add_argument("--rdo-grids", nargs="*", default=["32x32", "45x80", "135x240"], metavar="HxW",
                        help="token grids to time rdo token choice on (256x256, 360p and 1080p at patch 8)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=160, help="last step of the late window")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    if args.models:
        bench_models(args)
    for text in args.rdo_grids:
        try:
            grid = tuple(int(v) for v in text.lower().split("x"))
        except ValueError:
            grid = ()
        if len(grid) != 2 or min(grid) < 1:
            parser.error(f"--rdo-grids takes HxW token grids, got {text!r}")
        print(f"rdo token choice, {grid[0]}x{grid[1]} grid: {bench_rdo(grid):.1f} ms/step (median of 20)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
