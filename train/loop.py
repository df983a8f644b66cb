"""The training loop: one `Trainer` per process (rank); `train(config)` runs it to the end.

Per step: seed the step's RNG from (seed, step, rank); decode the step's batch; forward; reconstruction +
quantizer (+ perceptual) (+ adaptively weighted hinge GAN) loss; Adam step with the scheduled LR and
clipped gradients; EMA; discriminator step; dead-code restarts (VQ). Everything that resume needs is in
`Trainer.state()`; because the data and the RNG are functions of the step, a resumed run continues
exactly where the checkpoint left it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from otok.codec import Tokenizer, TokenizerConfig, save

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import TrainBatches, make_loader, to_model_input
from .discriminators import Discriminators
from .losses import LPIPS, adaptive_weight, hinge_d_loss, hinge_g_loss, reconstruction_loss
from .schedule import learning_rate, set_lr
from .stages import initial_tokenizer

CHECKPOINT = "checkpoint.safetensors"
FINAL = "final.safetensors"
LOG = "log.jsonl"


@dataclass(frozen=True)
class Process:
    """This process's place in the job (a single process: rank 0 of 1)."""

    rank: int
    world: int
    local_rank: int
    local_world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_process(config: TrainConfig) -> Process:
    """Read torchrun's environment, pick the device, join the process group (NCCL on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    kind = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda but no CUDA device is available")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        device = torch.device("cpu")
    torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 1) // local_world))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if kind == "cuda" else "gloo")
    return Process(rank, world, local_rank, local_world, device)


def step_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


class Trainer:
    """One rank's training state and step. `data`: batches indexed by step (default: `TrainBatches` over
    `config.data`); `train/gpu_job.py` passes batches sampled on the GPU instead."""

    def __init__(self, config: TrainConfig, proc: Process, data=None) -> None:
        self.config, self.proc = config, proc
        self.out = Path(config.out)
        self.device = proc.device
        state = self._resume_state()
        if state is not None:
            model = Tokenizer(TokenizerConfig.from_dict(state["model_config"]))
            model.load_state_dict(state["model"])
        else:
            model = initial_tokenizer(config)
        if config.rdo and not model.config.discrete:
            raise ValueError(f"--rdo chooses discrete tokens; {model.config.name} makes continuous latents")
        self.model = model.to(self.device).train()
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False) if config.ema > 0 else None
        betas = (config.beta1, config.beta2)
        fused = self.device.type == "cuda"  # one kernel for the whole update instead of several per tensor
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=betas, fused=fused)
        self.disc = self.disc_optimizer = None
        if config.gan_start >= 0:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(step_seed(config.seed, 0xD15C))
                self.disc = Discriminators(config.disc_channels).to(self.device).train()
            self.disc_optimizer = torch.optim.Adam(self.disc.parameters(), lr=config.disc_lr or config.lr, betas=betas,
                                                   fused=fused)
        self.lpips = LPIPS.from_file(config.perceptual_weights).to(self.device) if config.perceptual_weights else None
        self.step = 0
        if state is not None:
            self._load_state(state)
        self.net, self.disc_net = self.model, self.disc
        if proc.world > 1:
            ids = [proc.local_rank] if self.device.type == "cuda" else None
            # Unused parameters differ per step: image batches skip the tube layers and the 3D discriminator.
            def wrap(module: nn.Module) -> nn.Module:
                return nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)

            self.net = wrap(self.model)
            self.disc_net = wrap(self.disc) if self.disc is not None else None
        self.data = data if data is not None else TrainBatches(
            config.data, config.stage, config.batch, config.res, config.clip_frames, config.fps, config.seed,
            proc.rank, proc.world, config.min_crop,
        )
        bf16 = (config.precision or ("bf16" if self.device.type == "cuda" else "fp32")) == "bf16"
        self.autocast = lambda: torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)  # noqa: E731
        self.warned: set[str] = set()

    # ----- checkpoints ---------------------------------------------------------------------------
    def _resume_state(self) -> dict | None:
        path = self.out / CHECKPOINT
        if not self.config.resume:
            return None
        if not path.is_file():
            self._say(f"--resume: no {path}; starting from step 0")
            return None
        state = load_checkpoint(path)
        old = state["train_config"]
        if (old["stage"], old["model"]) != (self.config.stage, self.config.model):
            raise ValueError(f"{path} is a {old['stage']} checkpoint of {old['model']}, "
                             f"not {self.config.stage} of {self.config.model}")
        return state

    def state(self) -> dict:
        return {
            "step": self.step,
            "train_config": self.config.to_dict(),
            "model_config": self.model.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "disc": self.disc.state_dict() if self.disc is not None else None,
            "disc_optimizer": self.disc_optimizer.state_dict() if self.disc_optimizer is not None else None,
            # No RNG state: every step reseeds from (seed, step, rank), and batches are functions of the step.
        }

    def _load_state(self, state: dict) -> None:
        self.step = int(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        if self.disc is not None and state["disc"] is not None:
            self.disc.load_state_dict(state["disc"])
            self.disc_optimizer.load_state_dict(state["disc_optimizer"])

    def save_checkpoint(self) -> None:
        if self.proc.main:
            save_checkpoint(self.out / CHECKPOINT, self.state())

    def save_final(self) -> Path | None:
        if not self.proc.main:
            return None
        return save(self.ema if self.ema is not None else self.model, self.out / FINAL)

    # ----- one step ------------------------------------------------------------------------------
    def train_step(self, batch: dict, lr: float | None = None) -> dict[str, Tensor | float]:
        """One optimizer step on `batch` (its step index must be `self.step`); returns the loss terms as
        detached tensors (read only when logged, so a GPU never waits for them) and the LR.
        lr: this step's learning rate (default: the schedule's for the step; a timed job passes its own)."""
        c, step = self.config, self.step
        assert batch["step"] == step, f"data for step {batch['step']} arrived at step {step}"
        torch.manual_seed(step_seed(c.seed, step, self.proc.rank))
        lr = learning_rate(step, c.lr, c.warmup_steps, c.steps) if lr is None else lr
        set_lr(self.optimizer, lr)
        video = to_model_input(batch["pixels"], self.device)  # (B, 3, T, H, W) in [-1, 1]
        gan = self.disc is not None and step >= c.gan_start
        with self.autocast():
            out = self.net(video, rdo=c.rdo)
            recon = out.reconstruction.float()
            rec = c.recon_weight * reconstruction_loss(recon, video, c.recon_loss)
            nll = rec
            parts = {"rec": rec, "quant": out.quantizer_loss.float()}
            if self.lpips is not None:
                parts["perceptual"] = c.perceptual_weight * self.lpips.video(recon, video)
                nll = nll + parts["perceptual"]
            loss = nll + parts["quant"]
            if gan:
                self.disc.requires_grad_(False)
                g_loss = hinge_g_loss(self.disc(recon).float())
                self.disc.requires_grad_(True)
                head = self.model.decoder.head_image if video.shape[2] == 1 else self.model.decoder.head_tube
                weight = c.gan_weight * adaptive_weight(nll, g_loss, head.weight)
                loss = loss + weight * g_loss
                parts.update(g=g_loss, d_weight=weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip if c.grad_clip > 0 else math.inf)
        self.optimizer.step()
        if self.ema is not None:
            self._update_ema()
        if gan:
            parts["d"] = self._disc_step(video, recon.detach(), lr)
        record = {"loss": loss.detach(), **{k: v.detach() for k, v in parts.items()}, "grad_norm": grad_norm}
        record.update({k: v for k, v in out.stats.items()})
        if self.model.config.quantizer == "vq":
            record.update(self._codebook_health(out.latents, step))
        self.step += 1
        return record | {"lr": lr}

    def _disc_step(self, real: Tensor, fake: Tensor, lr: float) -> Tensor:
        c = self.config
        set_lr(self.disc_optimizer, lr * (c.disc_lr or c.lr) / c.lr)
        with self.autocast():
            logits = self.disc_net(torch.cat([real, fake])).float()
            d_loss = hinge_d_loss(*logits.chunk(2))
        self.disc_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        if c.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.disc.parameters(), c.grad_clip)
        self.disc_optimizer.step()
        return d_loss.detach()

    @torch.no_grad()
    def _update_ema(self) -> None:
        # The usual warm-up of the decay: early steps follow the model, so a short run's EMA is not its init.
        decay = min(self.config.ema, (1 + self.step) / (10 + self.step))
        ema, model = dict(self.ema.named_parameters()), dict(self.model.named_parameters())
        torch._foreach_lerp_([ema[k] for k in model], [v.detach() for v in model.values()], 1.0 - decay)
        ema_buffers = dict(self.ema.named_buffers())
        for name, value in self.model.named_buffers():
            ema_buffers[name].copy_(value)

    @torch.no_grad()
    def _codebook_health(self, latents: list[Tensor], step: int) -> dict[str, Tensor]:
        """Codes alive (usage EMA above the restart threshold); every `restart_every` steps, dead codes
        are re-seeded from this batch's encoder outputs (rank 0's choice is broadcast)."""
        c, q = self.config, self.model.quantizer
        restarted = 0
        if c.restart_every > 0 and (step + 1) % c.restart_every == 0:
            z = torch.cat([f.reshape(-1, f.shape[-1]) for f in latents]).float()
            generator = torch.Generator(z.device).manual_seed(step_seed(c.seed, step, 1))
            restarted = q.restart_dead_codes(z, c.restart_threshold, generator)
            if self.proc.world > 1:
                dist.broadcast(q.embedding.data, 0)
                dist.broadcast(q.usage_ema, 0)
        alive = (q.usage_ema >= c.restart_threshold).float().mean()
        return {"codes_alive": alive, "restarted": torch.tensor(float(restarted))}

    # ----- the run -------------------------------------------------------------------------------
    def run(self) -> Path | None:
        c, proc = self.config, self.proc
        if proc.main:
            self.out.mkdir(parents=True, exist_ok=True)
            self._trim_log()
        stop = min(c.steps, c.stop_at) if c.stop_at > 0 else c.steps
        if proc.main:
            self._say(f"{c.stage} stage: {self.model.config.name} ({self.model.num_parameters() / 1e6:.2f}M params), "
                      f"{len(self.data.images)} images, {len(self.data.videos)} videos, steps {self.step}..{stop} "
                      f"of {c.steps}, batch {c.batch} x {proc.world} on {self.device}")
            m = self.model.config.pad_multiple
            for r in (r for r in c.res if r % m):
                self._say(f"note: {r} px frames are padded to {-(-r // m) * m} px for this model; "
                          f"multiples of {m} waste no compute")
        bar = self._progress(stop)
        first = self.step
        started, last_time, last_step = time.perf_counter(), time.perf_counter(), self.step
        deadline = started + c.max_minutes * 60 if c.max_minutes > 0 else math.inf
        pending: list[dict] = []  # records since the last log line
        for batch in make_loader(self.data, self.step, stop, c.workers):
            self._warn_skipped(batch["skipped"])
            pending.append(self.train_step(batch))
            done = self.step
            timed_out = c.max_minutes > 0 and self._agree(time.perf_counter() > deadline)
            if done % c.log_every == 0 or done == stop or timed_out:
                now = time.perf_counter()
                record = self._mean_over_ranks(interval_mean(pending))
                record.update(step=done, steps_per_s=round((done - last_step) / max(now - last_time, 1e-9), 4))
                last_time, last_step, pending = now, done, []
                self._log(record)
            if bar is not None:
                bar.update(1)
                if not pending:
                    bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
            if c.ckpt_every > 0 and done % c.ckpt_every == 0 and done < stop:
                self.save_checkpoint()
            if timed_out:
                self._say(f"--max-minutes reached at step {done}")
                break
        if bar is not None:
            bar.close()
        ran, elapsed = self.step - first, time.perf_counter() - started
        self.save_checkpoint()
        final = self.save_final() if self.step >= c.steps else None
        if proc.main:
            speed = ran / max(elapsed, 1e-9)
            self._say(f"stopped at step {self.step}: {ran} steps in {elapsed:.1f} s ({speed:.3f} steps/s)"
                      + (f"; wrote {final}" if final else f"; resume with --resume to reach {c.steps}"))
        return final

    def _progress(self, stop: int):
        if not (self.proc.main and self.config.progress):
            return None
        from tqdm import tqdm

        return tqdm(total=stop, initial=self.step, unit="step", dynamic_ncols=True, file=sys.stderr)

    def _agree(self, flag: bool) -> bool:
        """Rank 0's decision, on every rank (so all ranks stop at the same step)."""
        if self.proc.world == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.broadcast(t, 0)
        return bool(t.item())

    def _mean_over_ranks(self, record: dict[str, float]) -> dict[str, float]:
        if self.proc.world == 1:
            return record
        keys = sorted(k for k, v in record.items() if isinstance(v, float))
        t = torch.tensor([record[k] for k in keys], device=self.device, dtype=torch.float64)
        dist.all_reduce(t)
        return record | {k: v / self.proc.world for k, v in zip(keys, t.tolist())}

    def _log(self, record: dict) -> None:
        if not self.proc.main:
            return
        with open(self.out / LOG, "a") as f:
            f.write(json.dumps(record) + "\n")

    def _trim_log(self) -> None:
        """Drop log records past the step we (re)start from: a resumed run rewrites them."""
        path = self.out / LOG
        if not path.is_file():
            return
        if self.step == 0:
            path.unlink()
            return
        keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= self.step]
        tmp = path.with_name(LOG + ".tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        os.replace(tmp, path)

    def _warn_skipped(self, paths: list[str]) -> None:
        for path in paths:
            if path not in self.warned:
                self.warned.add(path)
                print(f"warning: skipping unreadable file {path}", file=sys.stderr)

    def _say(self, message: str) -> None:
        if self.proc.main:
            print(message, file=sys.stderr)


def interval_mean(records: list[dict[str, Tensor | float]]) -> dict[str, float]:
    """Each term averaged over the steps that have it (GAN terms start late); `lr` is the last step's."""
    keys = dict.fromkeys(k for r in records for k in r)
    mean = {k: sum(float(r[k]) for r in records if k in r) / sum(k in r for r in records) for k in keys}
    return mean | {"lr": records[-1]["lr"]}


def train(config: TrainConfig) -> Path | None:
    """Run `config` to the end (or to --stop-at / --max-minutes); returns OUT/final.safetensors on rank 0."""
    proc = start_process(config)
    try:
        return Trainer(config, proc).run()
    finally:
        if proc.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
