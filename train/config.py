"""The training configuration: one frozen dataclass, built from the command line and an optional JSON file.

Precedence: dataclass defaults < `--config FILE.json` < flags given on the command line. A checkpoint
stores `TrainConfig.to_dict()`, never an argparse namespace.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
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


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="train/run.py", description="Train an otok tokenizer (stages: image -> joint -> kl).",
        argument_default=argparse.SUPPRESS,  # only flags the user gives override the config file
    )
    p.add_argument("--config", help="JSON file with any TrainConfig field (flags override it)")
    p.add_argument("--stage", choices=STAGES)
    p.add_argument("--model", help="registry name (otok-tiny, otok-s, ...)")
    p.add_argument("--data", action="append", help="folder of images and/or videos (repeatable)")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int, help="batch per process")
    p.add_argument("--out", help="output folder: final.safetensors, checkpoint.safetensors, log.jsonl")
    p.add_argument("--init", help="weights to start from (the previous stage's final.safetensors)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    p.add_argument("--upsample", type=int, help="add (or resize) the decoder's convolutional upsampling branch: N "
                   "channels at its widest, 0 removes it; new layers start as the identity (default: keep the model's)")
    p.add_argument("--refine", type=int, help="add (or resize) the decoder's pixel refinement: N channels, 0 removes it; "
                   "new layers start as the identity (default: keep the model's)")
    p.add_argument("--lr", type=float)
    p.add_argument("--res", type=_resolutions, help="resolutions, e.g. 128,192,256,320,384")
    p.add_argument("--clip-frames", dest="clip_frames", type=int)
    p.add_argument("--fps", type=float, help="sample clips at this frame rate (default: the source's)")
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.add_argument("--precision", choices=("fp32", "bf16"))
    p.add_argument("--seed", type=int)
    # The rest is usually set in a config file; the common ones are flags too.
    p.add_argument("--warmup", type=int)
    p.add_argument("--grad-clip", dest="grad_clip", type=float)
    p.add_argument("--ema", type=float, help="EMA decay (0: off)")
    p.add_argument("--recon-loss", dest="recon_loss", choices=("l1", "l2"))
    p.add_argument("--recon-weight", dest="recon_weight", type=float)
    p.add_argument("--kl-weight", dest="kl_weight", type=float)
    p.add_argument("--perceptual-weights", dest="perceptual_weights", help="LPIPS-VGG .safetensors file")
    p.add_argument("--perceptual-weight", dest="perceptual_weight", type=float)
    p.add_argument("--gan-start", dest="gan_start", type=int, help="step at which the GAN starts (-1: never)")
    p.add_argument("--gan-weight", dest="gan_weight", type=float)
    p.add_argument("--disc-channels", dest="disc_channels", type=int)
    p.add_argument("--restart-every", dest="restart_every", type=int)
    p.add_argument("--min-crop", dest="min_crop", type=float,
                   help="smallest random crop, as a fraction of the short side (default 0.8)")
    p.add_argument("--rdo", type=float, help="decode the tokens `otok encode --rdo TAU` chooses (default 0: nearest)")
    p.add_argument("--workers", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--log-every", dest="log_every", type=int)
    p.add_argument("--ckpt-every", dest="ckpt_every", type=int)
    p.add_argument("--stop-at", dest="stop_at", type=int, help="stop with a checkpoint after this step")
    p.add_argument("--max-minutes", dest="max_minutes", type=float, help="stop with a checkpoint after this time")
    p.add_argument("--no-progress", dest="progress", action="store_false")
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
    missing = [k for k in ("stage", "model", "data", "steps", "batch", "out") if k not in values]
    if missing:
        raise ValueError("missing " + ", ".join("--" + k for k in missing))
    values["out"] = os.fspath(values["out"])
    return TrainConfig.from_dict(values)
