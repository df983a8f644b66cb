"""Encode and decode speed of one model on each backend: PyTorch eager, ONNX Runtime, TensorRT.

    python tools/bench/backends.py                          # otok-s at 256x256 and 512x512, CPU
    python tools/bench/backends.py --sizes 256 --steps 20 --backends torch onnx
    python tools/bench/backends.py --device cuda --backends torch onnx trt --precision fp16

Prints, per size and backend, the median video-step throughput (frames/s: 4 frames per step) of the
encoder and the decoder over `--steps` steps of one stream (after `--warmup` steps), and the ratio to
PyTorch eager on the same device. Random-init weights: speed does not depend on their values. Steps of
the backends are interleaved, so that noise from other work on the machine falls on all alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from otok.codec import load
from otok.tools.bench.stream import StreamPair


def build_backends(args, tok, workdir: Path) -> dict:
    backends = {}
    if "torch" in args.backends:
        backends["torch"] = tok
    if {"onnx", "trt"} & set(args.backends):
        from otok.export import export_onnx, load_engine

        onnx_dir = workdir / "onnx"
        export_onnx(tok.cpu(), onnx_dir)
        tok.to(args.device)
        if "onnx" in args.backends:
            backends["onnx"] = load_engine(onnx_dir, backend="onnx", device=args.device)
        if "trt" in args.backends:
            from otok.export import build_trt_engines

            top = max(args.sizes)
            build_trt_engines(onnx_dir, workdir / "trt", precision=args.precision, min_shape=(1, 64, 64),
                              opt_shape=(1, top, top), max_shape=(1, top, top))
            backends["trt"] = load_engine(workdir / "trt", backend="trt", device=args.device)
    return backends


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="otok-s")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx", "trt"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "bf16"], help="TensorRT only")
    parser.add_argument("--steps", type=int, default=10, help="timed video steps per size")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    tok = load(args.model, pretrained=False, seed=0).to(args.device)
    print(f"model {args.model} ({tok.num_parameters() / 1e6:.1f}M params), device {args.device}, "
          f"torch threads {torch.get_num_threads()}, {args.steps} timed steps, medians")
    with tempfile.TemporaryDirectory(prefix="otok-bench-") as tmp, torch.inference_mode():
        backends = build_backends(args, tok, Path(tmp))
        print(f"{'size':>7} {'backend':>8} {'encode fps':>11} {'decode fps':>11} {'enc x eager':>12} {'dec x eager':>12}")
        for size in args.sizes:
            group = torch.rand(1, 3, tok.config.tubelet, size, size, generator=torch.Generator().manual_seed(0))
            group = (group * 2 - 1).to(args.device)
            pairs = {name: StreamPair(b, size, group, args.warmup + args.steps, sync) for name, b in backends.items()}
            for i in range(args.warmup + args.steps):
                for pair in pairs.values():
                    pair.advance(record=i >= args.warmup)
            fps = {name: tuple(tok.config.tubelet / statistics.median(t) for t in pair.times)
                   for name, pair in pairs.items()}
            base = fps.get("torch")
            for name, (enc, dec) in fps.items():
                ratio = f"{enc / base[0]:11.2f}x {dec / base[1]:11.2f}x" if base else f"{'-':>12} {'-':>12}"
                print(f"{size:>4}x{size:<3}{name:>7} {enc:11.2f} {dec:11.2f} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
