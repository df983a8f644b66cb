"""Train an otok tokenizer on one GPU for a fixed wall time: the job for a short lease (or a spot instance).

    python train/gpu_job.py --bank BANK.zip --out DIR [--minutes 9] [--model otok-s] [--init WEIGHTS]
    python train/gpu_job.py --bank BANK.zip --out DIR --smoke        # the whole path on the CPU, otok-tiny
    python train/gpu_job.py --bank BANK.zip --out DIR --model otok-s-kl --init codec/weights/otok-s.safetensors
                                                                      # the KL stage from the VQ model's weights

In order, each phase bounded so that the whole job ends within --minutes:
1. checks the machine (CUDA, bf16, torchvision) and fails in seconds with one line if something is missing;
2. loads the data bank (`tools/bank/make_dataset.py --bank`) into device memory as uint8;
3. GPU checks (unless --skip-checks): CPU/CUDA token parity, streaming frames/s and peak memory;
4. evaluates the starting weights on the bank's held-out set;
5. trains with `train/`'s `Trainer` (its losses, quantizer terms, codebook restarts, EMA) on batches sampled
   on the device, image and video turns at several resolutions, bf16 autocast, fused Adam; the learning
   rate warms up and then follows a cosine over the wall time left; fp16 weights are written every
   --snapshot-minutes, so a killed job still leaves weights;
6. evaluates the final (EMA) weights on the held-out set and writes DIR/NAME.safetensors (fp16, split into
   parts of at most 16 MiB if larger), DIR/log.jsonl and DIR/report.json.
The training checkpoint (optimizer state; too large to bring back from a lease) goes to --work.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MAX_FILE_BYTES = 16 * 2**20  # what a lease brings back per file


def _import_otok() -> None:
    """Make `otok.*` importable from this checkout when the package is not installed (a bare GPU machine
    has no network to install it): each top-level folder is mapped to its `otok.` name."""
    try:
        import otok.codec  # noqa: F401
        import otok.train  # noqa: F401
        return
    except ModuleNotFoundError:
        pass
    import types

    package = types.ModuleType("otok")
    package.__path__ = []
    sys.modules["otok"] = package
    for name in ("codec", "train"):
        spec = importlib.util.spec_from_file_location(
            f"otok.{name}", REPO / name / "__init__.py", submodule_search_locations=[str(REPO / name)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"otok.{name}"] = module
        setattr(package, name, module)
        spec.loader.exec_module(module)


def _resolutions(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated pixel sizes such as 128,256, got {text!r}")
    return values


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line (argparse prints the usage too), exit 2
        self.exit(2, f"gpu_job: error: {message}\n")


GPU_TOKENS, CPU_TOKENS = 2**17, 4096  # a batch that fills an H100; one that a CPU machine's memory holds
# Peak memory of a CPU training run, otok-s (docs/BENCHMARKS.md "Training on the CPU: memory"): a base plus a
# cost a token of the batch, rounded up from 2.7 GB at 4,096 tokens and 5.8 GB at 16,384; other models scale
# with their width x depth.
CPU_BASE_BYTES, CPU_BYTES_PER_TOKEN = 2 << 30, 256 << 10


def cpu_training_bytes(model: str, tokens: int) -> int:
    """Estimated peak bytes of a CPU training run of registry model `model` at `tokens` tokens a batch."""
    from otok.codec import get_config

    try:
        c = get_config(model)
    except (KeyError, ValueError):
        c = get_config("otok-s")
    scale = c.dim * (c.spatial_layers + c.temporal_layers) / (256 * 4)
    return int(CPU_BASE_BYTES + tokens * CPU_BYTES_PER_TOKEN * scale)


def check_cpu_memory(args: argparse.Namespace) -> str | None:
    """One line when a CPU run's batches cannot fit in the memory this process can have (else None)."""
    from otok.codec.tiling import available_memory

    need, have = cpu_training_bytes(args.model, args.tokens), available_memory("cpu")
    if have is None or need <= have:
        return None
    per_token = cpu_training_bytes(args.model, 1) - cpu_training_bytes(args.model, 0)
    fit = max(0, (have - cpu_training_bytes(args.model, 0)) // max(per_token, 1))
    return (f"--tokens {args.tokens} needs about {need / 1e9:.1f} GB on the CPU, more than the {have / 1e9:.1f} GB "
            f"this process can have; give --tokens {fit // 512 * 512 or 512} or fewer")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="train/gpu_job.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="folder for the weights, log.jsonl and report.json")
    p.add_argument("--bank", type=Path, default=REPO / "data" / "otok-bank.zip",
                   help="data bank from tools/bank/make_dataset.py --bank")
    p.add_argument("--minutes", type=float, default=9.0, help="wall time of the whole job, checks and evaluation included")
    p.add_argument("--model", default="otok-s", help="registry name of the model to train")
    p.add_argument("--init", help="weights to start from (default: the model's shipped weights, else a random init)")
    p.add_argument("--refine", type=int, default=-1,
                   help="give the decoder a pixel refinement of N channels (new layers start as the identity); -1: keep")
    p.add_argument("--tube-refine", type=int, default=-1,
                   help="give the decoder a refinement of each tube's frames together, N channels (starts as the identity); -1: keep")
    p.add_argument("--upsample", type=int, default=-1,
                   help="give the decoder a convolutional upsampling branch, N channels at its widest; -1: keep")
    p.add_argument("--steps", type=int, default=0,
                   help="stop after this many steps if the time has not run out first (0: the time alone); an A/B "
                        "of arms that share a machine compares at equal steps")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=200, help="warm-up steps")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the weights that are written")
    p.add_argument("--tokens", type=int, default=None,
                   help=f"tokens per batch; sets each turn's batch size (default: {GPU_TOKENS} on cuda, {CPU_TOKENS} on cpu)")
    p.add_argument("--res", default="128,192,256", type=_resolutions, help="video clip resolutions, by turns")
    p.add_argument("--image-res", default="256", type=_resolutions,
                   help="image batch resolutions (one image turn per video turns)")
    p.add_argument("--clip-frames", type=int, default=17, help="frames per training clip")
    p.add_argument("--min-crop", type=float, default=0.5, help="smallest crop, as a fraction of the short side")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=50, help="steps per log.jsonl record")
    p.add_argument("--snapshot-minutes", type=float, default=2.0, help="write the weights this often")
    p.add_argument("--check-seconds", type=float, default=75.0, help="time for the GPU checks")
    p.add_argument("--skip-checks", action="store_true", help="no parity or speed checks")
    p.add_argument("--checks-only", action="store_true", help="the checks and nothing else (no training)")
    p.add_argument("--work", type=Path, default=Path("/tmp/otok-gpu-job"), help="folder for the training checkpoint")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cpu trains too (slowly: fp32, no GPU checks), e.g. on your own machine")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model for training (each batch shape compiles on its first step, inside --minutes)")
    p.add_argument("--smoke", action="store_true",
                   help="CPU, otok-tiny, 32/64 px, about a minute: the whole path, for tests and a dry run")
    args = p.parse_args(argv)
    if args.tokens is None:
        args.tokens = GPU_TOKENS if args.device == "cuda" else CPU_TOKENS
    if args.smoke:
        args.model = "otok-tiny-kl" if args.model.endswith("-kl") else "otok-tiny"
        args.device = "cpu"
        args.res, args.image_res, args.clip_frames, args.tokens = (32, 64), (64,), 9, 2048
        args.minutes, args.warmup, args.log_every, args.check_seconds = min(args.minutes, 1.0), 5, 5, 5.0
        args.snapshot_minutes = min(args.snapshot_minutes, 0.3)
    return args


class Job:
    """One run of the job; `report` grows phase by phase and is written after each."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = time.perf_counter()
        self.deadline = self.started + args.minutes * 60
        self.out: Path = args.out
        self.report: dict = {"command": "python train/gpu_job.py " + " ".join(sys.argv[1:]),
                             "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "phases": {}}

    # ----- bookkeeping ---------------------------------------------------------------------------
    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def say(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)

    def phase(self, name: str, seconds: float) -> None:
        self.report["phases"][name] = round(seconds, 1)
        self.write_report()

    def write_report(self) -> None:
        self.report["elapsed_s"] = round(time.perf_counter() - self.started, 1)
        _write_json(self.out / "report.json", self.report)

    # ----- the phases ----------------------------------------------------------------------------
    def run(self) -> None:
        import torch

        from otok.train.bank import load_bank
        from otok.train.gpu_checks import check_environment

        args = self.args
        self.report["environment"] = check_environment(args.device)
        self.out.mkdir(parents=True, exist_ok=True)
        args.work.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(args.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True

        t = time.perf_counter()
        self.bank = load_bank(args.bank, self.device)
        b = self.bank
        self.report["bank"] = {"file": str(args.bank), "bytes": args.bank.stat().st_size,
                               "frames": int(b.frames.shape[0]), "frame_size": list(b.frames.shape[1:3]),
                               "videos": int(b.videos.shape[0]), "photos": int(b.photos.shape[0]),
                               "heldout": [name for name, _ in b.heldout]}
        self.say(f"bank: {b.frames.shape[0]} frames in {b.videos.shape[0]} videos, {b.photos.shape[0]} photos, "
                 f"{len(b.heldout)} held-out items")
        self.phase("bank", time.perf_counter() - t)

        trainer = self.make_trainer()
        self.describe(trainer)
        if not args.skip_checks:
            t = time.perf_counter()
            self.report["checks"] = self.checks(trainer.model)
            self.phase("checks", time.perf_counter() - t)
        if args.checks_only:
            return

        t = time.perf_counter()
        self.report["heldout_before"] = self.evaluate(trainer.model)
        eval_seconds = time.perf_counter() - t
        self.phase("heldout_before", eval_seconds)
        self.say(f"held-out before: {self.report['heldout_before']['mean_psnr']:.2f} dB")

        t = time.perf_counter()
        try:
            self.train(trainer, reserve=2 * eval_seconds + 15)
        except Exception as exc:  # noqa: BLE001 - what was trained so far is still written and evaluated
            self.report["train_error"] = f"{type(exc).__name__}: {exc}"[:1000]
            self.say(f"training stopped by {self.report['train_error']}")
        self.phase("train", time.perf_counter() - t)

        t = time.perf_counter()
        final = trainer.ema if trainer.ema is not None else trainer.model
        self.report["weights"] = self.write_weights(final)
        self.report["heldout_after"] = self.evaluate(final)
        self.phase("heldout_after", time.perf_counter() - t)
        self.say(f"held-out after: {self.report['heldout_after']['mean_psnr']:.2f} dB "
                 f"(before {self.report['heldout_before']['mean_psnr']:.2f})")
        self.write_report()

    def make_trainer(self, model: str | None = None):
        """A `Trainer` on batches sampled from the bank: of --model from --init (default: its shipped weights,
        else a random init) with --refine/--upsample/--tube-refine; or of another registry `model` as registered, from a
        random init (for a speed measurement)."""
        import torch

        from otok.train.config import TrainConfig
        from otok.train.gpu_data import GpuBatches, turns_for_budget
        from otok.train.loop import Process, Trainer

        args = self.args
        ours = model is None
        model = args.model if ours else model
        init = (args.init or _shipped(model)) if ours else None
        stage = "joint" if init else "image"
        if init and model.endswith("-kl"):
            stage = "kl"  # from a VQ model's weights the KL stage swaps the quantizer (train/stages.py)
        config = TrainConfig(
            stage=stage, model=model, data=(str(args.bank),), steps=10**9, batch=1,
            out=str(args.work), init=init, refine=args.refine if ours else -1,
            upsample=args.upsample if ours else -1, tube_refine=args.tube_refine if ours else -1, lr=args.lr, res=(),
            clip_frames=args.clip_frames, device=args.device, precision="bf16" if args.device == "cuda" else "fp32",
            seed=args.seed, ema=args.ema, min_crop=args.min_crop, log_every=args.log_every, progress=False,
        )
        proc = Process(0, 1, 0, 1, self.device)
        trainer = Trainer(config, proc, data=object())  # the batches need the model's geometry: set below
        c = trainer.model.config
        shapes = [("video", r) for r in args.res] + [("image", r) for r in args.image_res]
        turns = turns_for_budget(shapes, args.clip_frames, args.tokens, c.patch, c.tubelet)
        trainer.data = GpuBatches(self.bank, turns, args.seed, args.min_crop)
        if args.compile:
            trainer.net = torch.compile(trainer.model)
        return trainer

    def describe(self, trainer) -> None:
        c, turns = trainer.model.config, trainer.data.turns
        self.report["model"] = {"name": c.name, "parameters": trainer.model.num_parameters(),
                                "init": trainer.config.init, "config": c.to_dict()}
        self.report["turns"] = [t.__dict__ | {"label": t.label} for t in turns]
        self.say(f"{c.name} ({trainer.model.num_parameters() / 1e6:.2f}M params) from "
                 f"{trainer.config.init or 'a random init'}; turns " + ", ".join(f"{t.label}x{t.batch}" for t in turns))

    def train_speed(self, model: str, steps: int = 6) -> dict:
        """Training throughput of `model` (random init) on its largest video turn: seconds per step,
        clips/s and achieved TFLOP/s (FlopCounterMode's count of a real step)."""
        import torch

        trainer = self.make_trainer(model)
        label = max((t for t in trainer.data.turns if t.kind == "video"), key=lambda t: t.res).label
        trainer.data.turns = [t for t in trainer.data.turns if t.label == label]
        turn = trainer.data.turns[0]
        flops = self._count_step_flops(trainer, 0)
        sync = torch.cuda.synchronize if self.device.type == "cuda" else lambda: None
        trainer.train_step(trainer.data[0], self.args.lr)  # warm-up
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(trainer.data[trainer.step], self.args.lr)
        sync()
        seconds = (time.perf_counter() - start) / steps
        return {"model": model, "turn": label, "batch": turn.batch, "step_s": round(seconds, 4),
                "clips_per_s": round(turn.batch / seconds, 1), "flops_per_step": flops,
                "achieved_tflops": round(flops / seconds / 1e12, 1)}

    def checks(self, model) -> dict:
        """Parity, the bf16 matrix-product ceiling, training and streaming speed; the report is rewritten
        after each figure, so a job stopped in the middle keeps what it measured."""
        import torch

        from otok.codec import Tokenizer, from_uint8
        from otok.train.gpu_checks import matmul_tflops, speed_table, stream_speed, token_parity

        out: dict = self.report.setdefault("checks", {})
        if self.device.type != "cuda":
            out["skipped"] = "no CUDA device"
            return out
        name, clip = self.bank.heldout[0]
        clip = from_uint8(clip[:17, :256, :256].permute(3, 0, 1, 2)[None].cpu())
        cpu = Tokenizer(model.config)
        cpu.load_state_dict(model.state_dict())
        try:
            out["parity"] = token_parity(cpu.eval(), clip) | {"clip": f"{name}, 17 frames, 256x256"}
        except Exception as exc:  # noqa: BLE001 - a failed check is reported, and training still runs
            out["parity"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        self.say(f"parity: {out['parity']}")
        out["matmul_bf16_tflops"] = matmul_tflops(self.device)
        self.say(f"bf16 8192^3 matrix product: {out['matmul_bf16_tflops']} TFLOP/s")
        self.write_report()
        out["training"] = []
        for name in ("otok-s", "otok-b"):
            try:
                out["training"].append(self.train_speed(name))
            except Exception as exc:  # noqa: BLE001
                out["training"].append({"model": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
            self.say(f"training speed: {out['training'][-1]}")
            self.write_report()
            torch.cuda.empty_cache()
        out["speed"] = []
        for row in speed_table(("otok-s", "otok-b"), self.device, self.args.check_seconds):
            out["speed"].append(row)
            self.say(f"speed: {row}")
            self.write_report()
        out["tiled_4k"] = []  # issue 31: a 4K video step's peak memory, tiled (auto) and whole
        for tile in (None, 0):
            try:
                row = stream_speed("otok-s", 2160, 3840, 1, "fp32", self.device, steps=2, tile=tile)
            except Exception as exc:  # noqa: BLE001 - out of memory untiled is a finding too
                row = {"tile": tile, "error": f"{type(exc).__name__}: {exc}"[:300]}
            out["tiled_4k"].append(row)
            self.say(f"4K step: {row}")
            self.write_report()
            torch.cuda.empty_cache()
        return out

    def evaluate(self, model) -> dict:
        """PSNR of every held-out item through the whole tokenizer (nearest codes, fp32): per item the mean
        over frames, the image-step and video-step frames apart, and the worst frame."""
        import torch

        from otok.codec import Tokenizer, from_uint8, to_uint8

        cfg = model.config
        tok = Tokenizer(cfg).to(self.device).eval()
        tok.load_state_dict(model.state_dict())
        per_segment = cfg.frames_per_segment
        items = {}
        with torch.no_grad():
            for name, frames in self.bank.heldout:
                video = from_uint8(frames.to(self.device).permute(3, 0, 1, 2)[None])
                count, height, width = video.shape[2:]
                recon = to_uint8(tok.decode(tok.encode(video), frames=count, height=height, width=width))
                mse = (recon.double() - frames.to(self.device).permute(3, 0, 1, 2)[None].double()).pow(2)
                psnr = (10 * torch.log10(255.0**2 / mse.mean(dim=(0, 1, 3, 4)).clamp(min=1e-10))).cpu()
                image = torch.arange(count) % per_segment == 0
                items[name] = {"frames": count, "psnr": round(float(psnr.mean()), 3),
                               "min_frame_psnr": round(float(psnr.min()), 3)}
                if count > 1:
                    items[name] |= {"image_step_psnr": round(float(psnr[image].mean()), 3),
                                    "video_step_psnr": round(float(psnr[~image].mean()), 3)}
        return {"mean_psnr": round(sum(v["psnr"] for v in items.values()) / len(items), 3), "items": items}

    def train(self, trainer, reserve: float) -> None:
        import torch

        args = self.args
        flops = self.count_flops(trainer)
        self.report["flops_per_step"] = flops
        budget = self.left() - reserve
        if budget <= 0:
            self.say("no time left to train")
            return
        end = time.perf_counter() + budget
        self.say(f"training for {budget:.0f} s")
        cuda = self.device.type == "cuda"
        start, next_snapshot = time.perf_counter(), time.perf_counter() + args.snapshot_minutes * 60
        timings: list[tuple[str, object, object]] = []
        per_turn: dict[str, dict] = {}
        pending: list[dict] = []
        log = self.out / "log.jsonl"
        log.unlink(missing_ok=True)
        first_step = trainer.step
        turns = len(trainer.data.turns)
        profiled = range(first_step + 2 * turns, first_step + 3 * turns)  # one step of each shape, after two
        profiler = None
        while time.perf_counter() < end and not (args.steps and trainer.step - first_step >= args.steps):
            step = trainer.step
            if step == profiled.start:
                profiler = self.start_profiler()
            turn = trainer.data.turn(step)
            progress = max((time.perf_counter() - start) / budget, (step - first_step) / args.steps if args.steps else 0)
            lr = args.lr * min(1.0, (step - first_step + 1) / args.warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
            t0 = torch.cuda.Event(enable_timing=True) if cuda else time.perf_counter()
            if cuda:
                t0.record()
            try:
                pending.append(trainer.train_step(trainer.data[step], lr))
            except torch.OutOfMemoryError:
                self.halve_batches(trainer)
                continue
            if cuda:
                t1 = torch.cuda.Event(enable_timing=True)
                t1.record()
            else:
                t1 = time.perf_counter()
            timings.append((turn.label, t0, t1))
            if profiler is not None and trainer.step == profiled.stop:
                self.report["profile"] = self.stop_profiler(profiler, profiled)
                profiler = None
            if trainer.step % args.log_every == 0:
                self.log_interval(log, trainer, pending, timings, per_turn, cuda)
                pending, timings = [], []
            if time.perf_counter() > next_snapshot:
                self.write_weights(trainer.ema if trainer.ema is not None else trainer.model)
                next_snapshot = time.perf_counter() + args.snapshot_minutes * 60
        if pending:
            self.log_interval(log, trainer, pending, timings, per_turn, cuda)
        trainer.save_checkpoint()
        seconds = time.perf_counter() - start
        for label, row in per_turn.items():
            row["clips_per_s"] = round(row["clips"] / max(row["seconds"], 1e-9), 1)
            row["achieved_tflops"] = round(flops.get(label, 0) * row["steps"] / max(row["seconds"], 1e-9) / 1e12, 2)
        self.report["training"] = {"steps": trainer.step - first_step, "seconds": round(seconds, 1),
                                   "steps_per_s": round((trainer.step - first_step) / seconds, 3), "per_turn": per_turn}
        self.say(f"trained {trainer.step - first_step} steps in {seconds:.0f} s; per turn: {per_turn}")

    def start_profiler(self):
        import torch
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        profiler = profile(activities=activities)
        profiler.start()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return profiler

    def stop_profiler(self, profiler, steps: range) -> dict:
        """torch.profiler's table of the top kernels of the profiled steps (by self time on the device, or
        on the CPU without one): what limits the step."""
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
        profiler.stop()
        key = "self_cuda_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
        table = profiler.key_averages().table(sort_by=key, row_limit=20, max_name_column_width=60)
        self.say(f"profile of steps {steps.start}..{steps.stop - 1}:\n{table}")
        return {"steps": [steps.start, steps.stop - 1], "sort_by": key, "table": table.splitlines()}

    def halve_batches(self, trainer) -> None:
        """After running out of device memory: every turn at half its batch, and the step again."""
        import dataclasses

        import torch

        trainer.optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        data = trainer.data
        if min(t.batch for t in data.turns) < 2:
            raise RuntimeError("out of device memory at batch 1")
        data.turns = [dataclasses.replace(t, batch=t.batch // 2) for t in data.turns]
        self.report["turns"] = [t.__dict__ | {"label": t.label} for t in data.turns]
        self.report.setdefault("events", []).append(f"out of memory at step {trainer.step}: batches halved")
        self.say(self.report["events"][-1])

    def log_interval(self, log: Path, trainer, pending, timings, per_turn, cuda: bool) -> None:
        import torch

        from otok.train.loop import interval_mean

        if cuda:
            torch.cuda.synchronize()
        for label, t0, t1 in timings:
            seconds = t0.elapsed_time(t1) / 1e3 if cuda else t1 - t0
            turn = next(t for t in trainer.data.turns if t.label == label)
            row = per_turn.setdefault(label, {"batch": turn.batch, "steps": 0, "clips": 0, "seconds": 0.0})
            row["steps"] += 1
            row["clips"] += turn.batch
            row["seconds"] += seconds
        record = interval_mean(pending) | {"step": trainer.step, "elapsed_s": round(time.perf_counter() - self.started, 1)}
        with open(log, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.say(f"step {trainer.step}: loss {record['loss']:.4f} rec {record['rec']:.4f} lr {record['lr']:.2e}")

    def count_flops(self, trainer) -> dict[str, float]:
        """FLOPs of one training step (forward and backward) of each turn, counted by PyTorch's
        FlopCounterMode on a real batch (matrix products and attention; elementwise work is not counted)."""
        out = {}
        try:
            for i, turn in enumerate(trainer.data.turns):
                out[turn.label] = self._count_step_flops(trainer, i)
        except Exception as exc:  # noqa: BLE001 - a figure for the report, never a reason to stop
            self.report["flops_error"] = f"{type(exc).__name__}: {exc}"[:300]
        return out

    def _count_step_flops(self, trainer, step: int) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        from otok.train.data import to_model_input

        video = to_model_input(trainer.data[step]["pixels"], self.device)
        counter = FlopCounterMode(display=False)
        with counter, trainer.autocast():
            result = trainer.model(video)
            ((result.reconstruction.float() - video) ** 2).mean().backward()
        trainer.optimizer.zero_grad(set_to_none=True)
        return float(counter.get_total_flops())

    def write_weights(self, model) -> list[dict]:
        import torch

        from otok.codec.weights import save_parts

        paths = save_parts(model, self.out / f"{model.config.name}.safetensors", dtype=torch.float16,
                           max_bytes=MAX_FILE_BYTES)
        return [{"file": p.name, "bytes": p.stat().st_size} for p in paths]


def _shipped(model: str) -> str | None:
    """The weights file that ships for a registry model, if any."""
    from otok.codec.weights import PACKAGED_WEIGHTS

    path = PACKAGED_WEIGHTS / f"{model}.safetensors"
    return str(path) if path.is_file() else None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if not args.bank.is_file():
        print(f"gpu_job: error: no data bank at {args.bank} (build one with tools/bank/make_dataset.py --bank)", file=sys.stderr)
        return 2
    if args.init and not Path(args.init).is_file():
        print(f"gpu_job: error: --init {args.init} is not a file", file=sys.stderr)
        return 2
    _import_otok()
    if args.device == "cpu" and (problem := check_cpu_memory(args)) is not None:
        print(f"gpu_job: error: {problem}", file=sys.stderr)
        return 2
    from otok.codec import WeightsError
    from otok.train.bank import BankError
    from otok.train.gpu_checks import JobEnvironmentError

    job = Job(args)
    try:
        job.run()
    except (JobEnvironmentError, BankError, WeightsError) as exc:
        print(f"gpu_job: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a setting the model or the bank cannot take (as train/run.py reports them)
        print(f"gpu_job: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gpu_job: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    if sys.path and os.path.abspath(sys.path[0] or ".") == str(HERE):
        sys.path.pop(0)  # siblings (config.py, data.py) must not shadow other modules
    sys.exit(main())
