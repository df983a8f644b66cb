"""Peak memory and time of coding one large frame, tiled and untiled, and whether the tiles are exact.

    python tools/bench/tiling.py                                  # otok-s, a 4000x3000 photo, auto tiles
    python tools/bench/tiling.py --sizes 1000x1000 2000x1500 --tiles 0 auto 512
    python tools/bench/tiling.py --video --sizes 3840x2160 --steps 3   # 4K streaming, step after step
    python tools/bench/tiling.py --exact --sizes 1920x1080 --tiles 0 384   # tokens/pixels equal across tiles

Every run is a fresh child process (the shipped otok-s weights unless --model names another; memory does not
depend on the weights, exactness is checked with the real ones); its peak resident set size comes from the
kernel (wait4 rusage), and "per px" is (peak - the RSS after loading the model) / padded pixels. The photo is
synthetic: smooth colour fields plus grain, the same for every run. A photo is `Tokenizer.encode` of a
1-frame video, then `Tokenizer.decode` of its tokens, in two children; --video pushes 1 + 4 * steps frames
through `stream_encoder` in one child and each grid through `stream_decoder` in another, and reports each
one's peak after each step (it grows while the temporal cache fills, for temporal_window - 1 = 4 steps, then
stays: constant memory). --exact saves each run's tokens and pixels and compares
every tile setting with the first one (tokens bit for bit, pixels by largest difference).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def photo(height: int, width: int, frames: int = 1):
    """A deterministic synthetic photo (1, 3, frames, H, W) in [-1, 1]: smooth colour fields plus grain, made a
    band of rows at a time (the frame itself is the only full-size tensor, as when a decoded frame is read)."""
    import torch

    g = torch.Generator().manual_seed(0)
    freq = torch.rand(3, 4, 2, generator=g) * 0.02  # per channel, four waves of (rows, cols) frequency
    phase = torch.rand(3, 4, generator=g) * 6.3
    cols = torch.arange(width, dtype=torch.float32)
    out = torch.empty(1, 3, frames, height, width)
    for t in range(frames):  # the fields drift a little from frame to frame
        for r0 in range(0, height, 256):
            rows = torch.arange(r0, min(r0 + 256, height), dtype=torch.float32)[:, None] + t
            for ch in range(3):  # sin(a + b) = sin a cos b + cos a sin b: separable, cheap
                a = rows * freq[ch, :, 0] + phase[ch]  # (R, 4)
                b = (cols[:, None] + 2 * t) * freq[ch, :, 1]  # (W, 4)
                sa, ca, sb, cb = a.sin(), a.cos(), b.sin(), b.cos()
                band = sum(sa[:, k, None] * cb[None, :, k] + ca[:, k, None] * sb[None, :, k] for k in range(4)) * 0.2
                band += torch.rand(band.shape, generator=g).mul_(0.2).sub_(0.1)
                out[0, ch, t, r0 : r0 + len(rows)] = band.clamp_(-1, 1)
    return out


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tile_arg(tile: str):
    return None if tile == "auto" else int(tile)


def child(spec: dict) -> dict:
    import torch

    from otok.codec import load

    torch.set_grad_enabled(False)
    model = spec["model"]
    tok = load(model, pretrained=not model.startswith("otok-tiny"), seed=0)
    base = rss_mb()
    height, width, tile = spec["height"], spec["width"], tile_arg(spec["tile"])
    kwargs = {"tile": tile} if _has_tile(tok) else {}  # before tiling existed: the untiled code
    out: dict = {"base_mb": base}
    frame = photo(height, width) if spec["mode"] == "encode" else None
    start = time.perf_counter()
    if spec["mode"] == "encode":
        tokens = tok.encode(frame, **kwargs)
        out["seconds"] = time.perf_counter() - start
        torch.save(tokens, spec["tokens"])
    elif spec["mode"] == "decode":
        tokens = torch.load(spec["tokens"])
        video = tok.decode(tokens, height=height, width=width, **kwargs)
        out["seconds"] = time.perf_counter() - start
        if spec.get("pixels"):
            torch.save(video, spec["pixels"])
    elif spec["mode"] == "video_encode":  # stream step after step
        enc, grids = tok.stream_encoder(1, height, width, **kwargs), []
        for s in range(1 + spec["steps"]):
            grids += enc.push(photo(height, width, 1 if s == 0 else tok.config.tubelet))
            out.setdefault("step_mb", []).append(rss_mb())
        out["seconds"] = time.perf_counter() - start
        torch.save(torch.stack(grids, 1), spec["tokens"])
    else:  # video_decode
        tokens = torch.load(spec["tokens"])
        dec = tok.stream_decoder(1, height, width, **kwargs)
        for s in range(tokens.shape[1]):
            dec.push(tokens[:, s])
            out.setdefault("step_mb", []).append(rss_mb())
        out["seconds"] = time.perf_counter() - start
    out["peak_mb"] = rss_mb()
    return out


def _has_tile(tok) -> bool:
    import inspect

    return "tile" in inspect.signature(tok.encode).parameters


def run_child(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def padded_pixels(model: str, height: int, width: int) -> int:
    from otok.codec import get_config

    m = get_config(model).pad_multiple
    return (-(-height // m) * m) * (-(-width // m) * m)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="otok-s")
    parser.add_argument("--sizes", nargs="+", default=["4000x3000"], help="WxH frames")
    parser.add_argument("--tiles", nargs="+", default=["auto"], help="tile settings: auto, 0 (off) or pixels")
    parser.add_argument("--video", action="store_true", help="stream 1 + 4 * --steps frames instead of a photo")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--exact", action="store_true", help="compare every tile setting with the first")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    print(f"# python tools/bench/tiling.py {' '.join(argv if argv is not None else sys.argv[1:])}", flush=True)
    with tempfile.TemporaryDirectory(prefix="otok-tiling-") as tmp:
        for size in args.sizes:
            width, height = (int(v) for v in size.lower().split("x"))
            pixels = padded_pixels(args.model, height, width)
            first = None
            for tile in args.tiles:
                spec = {"model": args.model, "height": height, "width": width, "tile": tile,
                        "tokens": str(Path(tmp) / f"{size}_{tile}.pt"),
                        "pixels": str(Path(tmp) / f"{size}_{tile}_px.pt") if args.exact else ""}
                if args.video:
                    for mode in ("encode", "decode"):
                        r = run_child({**spec, "mode": f"video_{mode}", "steps": args.steps})
                        steps = " ".join(f"{mb:.0f}" for mb in r["step_mb"])
                        print(f"{args.model} {width}x{height} video tile {tile:>5}: {mode} peak {r['peak_mb']:7.0f} MB "
                              f"{(r['peak_mb'] - r['base_mb']) * 2**20 / pixels:5.0f} B/px, {r['seconds']:6.1f} s for "
                              f"1 + {args.steps} steps; peak after each step: {steps} MB", flush=True)
                else:
                    enc = run_child({**spec, "mode": "encode"})
                    dec = run_child({**spec, "mode": "decode"})
                    print(f"{args.model} {width}x{height} photo tile {tile:>5}: encode peak {enc['peak_mb']:7.0f} MB "
                          f"{enc['seconds']:6.1f} s {(enc['peak_mb'] - enc['base_mb']) * 2**20 / pixels:5.0f} B/px; "
                          f"decode peak {dec['peak_mb']:7.0f} MB {dec['seconds']:6.1f} s "
                          f"{(dec['peak_mb'] - dec['base_mb']) * 2**20 / pixels:5.0f} B/px "
                          f"(model loaded: {enc['base_mb']:.0f} MB)", flush=True)
                if args.exact:
                    first = first or spec
                    if spec is not first:
                        print("  " + compare(first, spec), flush=True)
                        for key in ("tokens", "pixels"):
                            if spec[key] and Path(spec[key]).exists():
                                os.remove(spec[key])
    return 0


def compare(a: dict, b: dict) -> str:
    import torch

    ta, tb = torch.load(a["tokens"]), torch.load(b["tokens"])
    same = int((ta == tb).sum()) if ta.shape == tb.shape else -1
    text = f"tile {b['tile']} vs {a['tile']}: {same} of {ta.numel()} tokens equal"
    if a["pixels"] and Path(a["pixels"]).exists() and Path(b["pixels"]).exists():
        pa, pb = torch.load(a["pixels"]), torch.load(b["pixels"])
        text += f", pixels differ by at most {(pa - pb).abs().max().item():.3g}"
    return text


if __name__ == "__main__":
    raise SystemExit(main())
