"""The training configuration: one frozen dataclass, built from the command line and an optional JSON file.

Precedence: dataclass defaults < `--config FILE.json` < flags given on the command line. A checkpoint
stores `TrainConfig.to_dict()`, never an argparse namespace.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from dataclasses import dataclass

STAGES = ("image", "joint", "kl")
DEFAULT_RES = {"image": (256,), "joint": (128, 192, 256, 320, 384), "kl": (128, 192, 256, 320, 384)}


@dataclass(frozen=True)
class TrainConfig:
    stage: str
    model: str
    data: tuple[str, ...]
    steps: int
    batch: int  # per rank
    out: str
    init: str | None = None
    refine: int = -1  # decoder pixel-refinement channels to give the model (codec PixelRefine); -1: keep the model's
    upsample: int = -1  # decoder upsampling-branch channels to give the model (codec UpsampleHead); -1: keep
    tube_refine: int = -1  # decoder tube-refinement channels to give the model (codec TubeRefine); -1: keep
    resume: bool = False
    lr: float = 1e-4
    res: tuple[int, ...] = ()  # each batch draws one; empty: image 256 (the paper), joint/kl 128..384
    clip_frames: int = 17
    fps: float | None = None  # None: the source's own frame rate
    device: str | None = None  # None: cuda when available
    precision: str | None = None  # None: bf16 on cuda, fp32 on cpu
    seed: int = 0
    # Optimization (Adam with beta1 0.9, beta2 0.99; linear warm-up then cosine decay to 0).
    beta1: float = 0.9
    beta2: float = 0.99
    warmup: int = -1  # -1: 5% of the steps, at most 1000
    grad_clip: float = 1.0
    ema: float = 0.0  # EMA decay of the weights; 0 disables; final.safetensors holds the EMA weights
    # Losses.
    recon_loss: str = "l2"  # "l2" (the paper) or "l1" (the released code used l1 x 4)
    recon_weight: float = 1.0
    kl_weight: float = 1e-6
    perceptual_weights: str | None = None  # an LPIPS-VGG safetensors file; nothing is downloaded
    perceptual_weight: float = 1.0
    gan_start: int = -1  # step at which the GAN losses start; -1: no discriminators at all
    gan_weight: float = 0.1  # times the adaptive (VQGAN) weight
    disc_lr: float | None = None  # None: same as lr
    disc_channels: int = 64
    # Codebook health (VQ).
    restart_every: int = 50  # steps between dead-code restarts; 0 disables
    restart_threshold: float = 0.03
    # Data and bookkeeping.
    min_crop: float = 0.8  # a random square crop covers this fraction of the short side, or more
    rdo: float = 0.0  # decode the tokens `otok encode --rdo` would choose (VQ, FSQ, LFQ); 0: the nearest codes
    workers: int = 0  # DataLoader worker processes per rank
    threads: int = 0  # torch CPU threads; 0: cores / local ranks
    log_every: int = 10
    stop_at: int = 0  # stop (with a checkpoint) after this step; 0: run to --steps. Resume later.
    max_minutes: float = 0.0  # stop (with a checkpoint) after this much wall time; 0: no limit
    ckpt_every: int = 500
    progress: bool = True

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"--stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if not self.data:
            raise ValueError("give at least one --data DIR")
        if self.steps < 1 or self.batch < 1:
            raise ValueError("--steps and --batch must be >= 1")
        if self.stage in ("joint", "kl") and not self.init and not self.resume:
            previous = "image" if self.stage == "joint" else "joint"
            raise ValueError(f"the {self.stage} stage starts from the {previous} stage's weights: give --init FILE")
        if self.recon_loss not in ("l1", "l2"):
            raise ValueError(f"--recon-loss must be l1 or l2, got {self.recon_loss!r}")
        if self.precision not in (None, "fp32", "bf16"):
            raise ValueError(f"--precision must be fp32 or bf16, got {self.precision!r}")
        if self.clip_frames < 1:
            raise ValueError("--clip-frames must be >= 1")
        if self.fps is not None and self.fps <= 0:
            raise ValueError("--fps must be positive")
        if not 0.0 < self.min_crop <= 1.0:
            raise ValueError(f"--min-crop must be in (0, 1], got {self.min_crop}")
        if not 0.0 <= self.rdo < float("inf"):  # also refuses nan
            raise ValueError(f"--rdo must be a number >= 0, got {self.rdo}")
        if self.rdo and self.stage == "kl":
            raise ValueError("--rdo chooses discrete tokens; the kl stage trains continuous latents")
        res = tuple(int(r) for r in (self.res or DEFAULT_RES[self.stage]))
        if min(res) < 8:
            raise ValueError(f"resolutions must be >= 8 pixels, got {res}")
        object.__setattr__(self, "res", res)
        object.__setattr__(self, "data", tuple(str(d) for d in self.data))

    @property
    def warmup_steps(self) -> int:
        return self.warmup if self.warmup >= 0 else min(1000, self.steps // 20)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training options {unknown}")
        data = dict(data)
        for key in ("data", "res"):
            if key in data and data[key] is not None:
                data[key] = tuple(data[key]) if not isinstance(data[key], str) else (data[key],)
        return cls(**data)


def _resolutions(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 128,256, got {text!r}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, through main's error path (argparse prints the usage too)
        raise ValueError(message)


EXAMPLES = """examples:
  python train/run.py --stage image --model otok-s --data photos/ --steps 20000 --batch 8 --out runs/image
  python train/run.py --stage joint --model otok-s --data videos/ --init codec/weights/otok-s.safetensors \\
      --steps 2000 --batch 8 --res 128,192,256 --out runs/mine      # fine-tune the shipped model on your videos
  python train/run.py --stage kl --model otok-s --data videos/ --init runs/mine/final.safetensors \\
      --steps 2000 --batch 8 --out runs/kl                          # continuous latents (otok-s-kl)
  torchrun --nproc_per_node 8 train/run.py ... --device cuda           # DDP; --batch is per rank
"""

# Help of each flag: what it sets and an example; its default is read from TrainConfig and appended.
_FLAGS: list[tuple[str, dict, str]] = [
    ("--stage", {"choices": STAGES}, "image, then joint (images and videos), then kl (continuous latents), e.g. --stage joint"),
    ("--model", {}, "registry name, e.g. --model otok-s (otok-tiny, otok-s, otok-b, otok-s-kl, ...)"),
    ("--data", {"action": "append"}, "folder of images and/or videos, repeatable, e.g. --data videos/"),
    ("--steps", {"type": int}, "optimizer steps, e.g. --steps 2000"),
    ("--batch", {"type": int}, "clips (or images) per step and process, e.g. --batch 8"),
    ("--out", {}, "output folder: final.safetensors, checkpoint.safetensors, log.jsonl, e.g. --out runs/mine"),
    ("--init", {}, "weights to start from, e.g. --init codec/weights/otok-s.safetensors (the shipped model) "
                   "or the previous stage's runs/image/final.safetensors (none: a random init)"),
    ("--resume", {"action": "store_true"}, "continue from OUT/checkpoint.safetensors exactly"),
    ("--upsample", {"type": int}, "the decoder's convolutional upsampling branch: N channels at its widest, 0 "
                                  "removes it, -1 keeps the model's; new layers start as the identity, e.g. --upsample 64"),
    ("--refine", {"type": int}, "the decoder's pixel refinement: N channels, 0 removes it, -1 keeps the model's; "
                                "new layers start as the identity, e.g. --refine 32"),
    ("--tube-refine", {"type": int}, "the decoder's refinement of each tube's frames together: N channels, 0 removes "
                                     "it, -1 keeps the model's; new layers start as the identity, e.g. --tube-refine 32"),
    ("--lr", {"type": float}, "peak learning rate, e.g. --lr 2e-4"),
    ("--res", {"type": _resolutions}, "square training resolutions, each batch draws one, e.g. --res 128,192,256 "
                                      "(empty: image 256, joint and kl 128..384)"),
    ("--clip-frames", {"type": int}, "frames per training clip, 1 + 4k, e.g. --clip-frames 17"),
    ("--fps", {"type": float}, "sample clips at this frame rate, e.g. --fps 8 (none: the source's)"),
    ("--device", {"choices": ("cpu", "cuda")}, "e.g. --device cuda (none: cuda when available)"),
    ("--precision", {"choices": ("fp32", "bf16")}, "e.g. --precision fp32 (none: bf16 on cuda, fp32 on the CPU)"),
    ("--seed", {"type": int}, "data order, crops and init, e.g. --seed 1"),
    ("--warmup", {"type": int}, "linear warm-up steps, e.g. --warmup 200 (-1: 5%% of the steps, at most 1000)"),
    ("--grad-clip", {"type": float}, "gradient norm clip, e.g. --grad-clip 0.5"),
    ("--ema", {"type": float}, "EMA decay of the weights that final.safetensors holds, 0 off, e.g. --ema 0.999"),
    ("--recon-loss", {"choices": ("l1", "l2")}, "reconstruction loss, e.g. --recon-loss l1"),
    ("--recon-weight", {"type": float}, "e.g. --recon-weight 4"),
    ("--kl-weight", {"type": float}, "KL term of the kl stage, e.g. --kl-weight 1e-6"),
    ("--perceptual-weights", {}, "an LPIPS-VGG .safetensors file (nothing is downloaded), e.g. --perceptual-weights lpips.safetensors (none: no perceptual loss)"),
    ("--perceptual-weight", {"type": float}, "e.g. --perceptual-weight 0.5"),
    ("--gan-start", {"type": int}, "step at which the GAN starts, -1 never, e.g. --gan-start 5000"),
    ("--gan-weight", {"type": float}, "times VQGAN's adaptive weight, e.g. --gan-weight 0.1"),
    ("--disc-channels", {"type": int}, "discriminator width, e.g. --disc-channels 32"),
    ("--restart-every", {"type": int}, "steps between dead-code restarts, 0 off, e.g. --restart-every 100"),
    ("--min-crop", {"type": float}, "smallest random square crop, a fraction of the short side, e.g. --min-crop 0.5"),
    ("--rdo", {"type": float}, "decode the tokens `otok encode --rdo TAU` chooses, 0 the nearest, e.g. --rdo 0.01"),
    ("--workers", {"type": int}, "data-loading processes per rank, e.g. --workers 2"),
    ("--threads", {"type": int}, "torch CPU threads, 0: cores / local ranks, e.g. --threads 2"),
    ("--log-every", {"type": int}, "steps per log.jsonl record, e.g. --log-every 50"),
    ("--ckpt-every", {"type": int}, "steps between checkpoints, e.g. --ckpt-every 1000"),
    ("--stop-at", {"type": int}, "stop with a checkpoint after this step, 0: run to --steps, e.g. --stop-at 500"),
    ("--max-minutes", {"type": float}, "stop with a checkpoint after this wall time, 0: no limit, e.g. --max-minutes 60"),
]


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="train/run.py", description="Train an otok tokenizer (stages: image -> joint -> kl).",
        argument_default=argparse.SUPPRESS,  # only flags the user gives override the config file
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="JSON file with any TrainConfig field; flags override it, e.g. --config run.json (default: none)")
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for flag, kwargs, text in _FLAGS:
        dest = flag[2:].replace("-", "_")
        default = defaults.get(dest, dataclasses.MISSING)
        if default is dataclasses.MISSING:
            text += " (required)"
        elif default not in (None, ()) and "(none:" not in text and "(empty:" not in text:
            text += f" (default: {default})"
        p.add_argument(flag, dest=dest, help=text, **kwargs)
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (default: a bar only when stderr is a terminal, so logs get no \\r)")
    return p


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Command line (and `--config FILE`) -> TrainConfig. Raises ValueError with a one-line message."""
    args = vars(build_parser().parse_args(argv))
    values: dict = {}
    if "config" in args:
        path = args.pop("config")
        try:
            with open(path) as f:
                values.update(json.load(f))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read config file {path}: {exc}") from None
    values.update(args)
    if "progress" not in values:  # a bar redraws with \r: only for a person at a terminal, never into a log
        values["progress"] = sys.stderr.isatty()
    missing = [k for k in ("stage", "model", "data", "steps", "batch", "out") if k not in values]
    if missing:
        raise ValueError("missing " + ", ".join("--" + k for k in missing))
    values["out"] = os.fspath(values["out"])
    return TrainConfig.from_dict(values)
