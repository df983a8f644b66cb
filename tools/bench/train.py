"""Training speed: steps/s, clips/s and achieved FLOP/s of a training step, against the machine's dense matmul rate.

    python tools/bench/train.py                                # this machine's device, otok-s, the job's shapes
    python tools/bench/train.py --models otok-s,otok-b --res 128 --tokens 2560 --passes stepwise,parallel
    python tools/bench/train.py --device cuda --compile --json

A step is what the trainer does per batch without its extras: the forward pass, an L1 + quantizer loss,
backward and an AdamW step (fused on CUDA), under bf16 autocast on CUDA and in fp32 on the CPU; EMA, GAN and
codebook restarts are left out. FLOPs are PyTorch's `FlopCounterMode` count of one real step (matrix products
and attention; elementwise work is not counted). The ceiling is a dense matrix product measured in the same
run (bf16 8192^3 on CUDA, fp32 2048^3 on the CPU). `--passes` sets the training passes to compare: `parallel`
(`Tokenizer.forward`, every step of a clip at once) and `stepwise` (`Tokenizer.forward_stepwise`, the step
path one step after another, as training ran before); `--compile` adds the parallel pass under torch.compile,
its first step (the compilation) reported apart. Batches hold about `--tokens` tokens, as in `train/gpu_job.py`.
Random weights and random clips: speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from otok.codec import load
from otok.train.gpu_checks import matmul_tflops

JOB_TOKENS = 2**17  # train/gpu_job.py's default batch budget
PASSES = ("parallel", "stepwise")


class CountOps(TorchDispatchMode):
    """Counts the aten ops a region dispatches (each a kernel launch on a GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device) -> dict:
    """The dense matrix-product rate this run reads its figures against: bf16 8192^3 on CUDA, fp32 2048^3 on a CPU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    return {"matmul": f"{str(dtype).removeprefix('torch.')} {n}^3",
            "tflops": matmul_tflops(device, n, repeat=5, dtype=dtype, digits=None)}


def batch_for(tokens: int, res: int, frames: int, patch: int, tubelet: int) -> int:
    """Clips per batch so that a batch holds about `tokens` tokens (as `train.gpu_data.turns_for_budget`)."""
    steps = 1 + -(-(frames - 1) // tubelet)
    return max(1, tokens // (steps * (res // patch) ** 2))


def measure(model: str, passes: list[str], compiled: bool, res: int, frames: int, tokens: int,
            device: torch.device, steps: int) -> list[dict]:
    """Rows of a model's training step at one shape, one per pass (and with `compiled` one more: the parallel
    pass under torch.compile), their steps interleaved (so a busy machine slows each alike)."""
    tok = load(model, pretrained=False, seed=0).to(device).train()
    c = tok.config
    batch = batch_for(tokens, res, frames, c.patch, c.tubelet)
    plain = {"parallel": tok.forward, "stepwise": tok.forward_stepwise}
    runs = [(name, plain[name]) for name in passes] + ([("parallel compiled", torch.compile(tok.forward))] if compiled else [])
    optimizer = torch.optim.AdamW(tok.parameters(), lr=1e-4, fused=device.type == "cuda")
    video = torch.rand(batch, 3, frames, res, res, device=device) * 2 - 1

    def loss(forward) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = forward(video)
            return F.l1_loss(out.reconstruction.float(), video) + out.quantizer_loss.float()

    def step(forward) -> float:
        start = time.perf_counter()
        value = loss(forward)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        _sync(device)
        return time.perf_counter() - start

    first = {name: step(forward) for name, forward in runs}  # warm-up: compilation, allocator, kernel choice
    times: dict[str, list[float]] = {name: [] for name, _ in runs}
    for i in range(steps + 1):
        for name, forward in runs:
            seconds = step(forward)
            if i:  # the second warm-up step
                times[name].append(seconds)
    rows = []
    for name, _ in runs:
        counter, counted = FlopCounterMode(display=False), CountOps()
        eager = plain[name.split()[0]]  # the counts of the eager pass: compiled code runs the same work in fused kernels
        with counter:
            loss(eager).backward()
        with counted:
            loss(eager).backward()
        seconds, flops = statistics.median(times[name]), float(counter.get_total_flops())
        row = {"model": model, "pass": name, "shape": f"{batch}x{frames}x{res}x{res}",
               "steps_per_s": 1 / seconds, "clips_per_s": batch / seconds, "tflop_per_step": flops / 1e12,
               "achieved_tflops": flops / seconds / 1e12, "aten_ops_per_step": counted.count}
        if name.endswith("compiled"):
            row["first_step_s"] = first[name]
        rows.append(row)
    if device.type == "cuda":
        for row in rows:
            row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    return rows


def _table(rows: list[dict], rate: dict) -> str:
    head = ("model", "pass", "B x T x H x W", "steps/s", "clips/s", "TFLOP/step", "TFLOP/s", "of matmul", "aten ops")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['pass']} | {r.get('shape', '')} | {r['error']} |")
            continue
        lines.append(f"| {r['model']} | {r['pass']} | {r['shape']} | {r['steps_per_s']:.3g} | {r['clips_per_s']:.3g} | "
                     f"{r['tflop_per_step']:.3g} | {r['achieved_tflops']:.3g} | {r['of_matmul']:.1%} | {r['aten_ops_per_step']} |")
    lines.append(f"\nceiling: {rate['matmul']} matrix product, {rate['tflops']:.3g} TFLOP/s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools/bench/train.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    p.add_argument("--models", default="otok-s", help="comma-separated registry models, e.g. otok-s,otok-b")
    p.add_argument("--res", default=None, help="comma-separated clip sizes (default: the job's 128,192,256 on "
                                                "CUDA, 128 on a CPU)")
    p.add_argument("--frames", type=int, default=17, help="frames per clip (the job's default)")
    p.add_argument("--tokens", type=int, default=None, help=f"tokens per batch (default: the job's {JOB_TOKENS} on "
                                                             "CUDA, 2560 on a CPU: two 17-frame 128 px clips)")
    p.add_argument("--passes", default="parallel,stepwise", help="training passes to time: parallel, stepwise")
    p.add_argument("--compile", action="store_true", help="also the parallel pass under torch.compile")
    p.add_argument("--steps", type=int, default=5, help="timed steps per row (after two warm-up steps)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    passes = [s.strip() for s in args.passes.split(",") if s.strip()]
    if not passes or set(passes) - set(PASSES):
        p.error(f"--passes takes {', '.join(PASSES)}, got {args.passes!r}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    cuda = device.type == "cuda"
    res = [int(r) for r in (args.res or ("128,192,256" if cuda else "128")).split(",")]
    tokens = args.tokens or (JOB_TOKENS if cuda else 2560)
    rate = matmul_rate(device)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    rows = []
    for r in res:
        for model in models:
            try:
                measured = measure(model, passes, args.compile, r, args.frames, tokens, device, args.steps)
                rows += [row | {"of_matmul": row["achieved_tflops"] / rate["tflops"]} for row in measured]
            except Exception as exc:  # noqa: BLE001 - one failed row (e.g. out of memory) must not lose the rest
                rows += [{"model": model, "pass": ", ".join(passes), "error": f"{type(exc).__name__}: {exc}"[:200]}]
            if cuda:
                torch.cuda.empty_cache()
    device_name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    if args.json:
        print(json.dumps({"device": device_name, "torch": torch.__version__, "ceiling": rate, "rows": rows}, indent=1))
    else:
        print(f"{device_name}, torch {torch.__version__}\n")
        print(_table(rows, rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
