"""The refine stage: train one of the decoder's last filters on a frozen tokenizer — the per-frame pixel
refinement (a learned deblocking filter) or, with `--tube-refine N`, the refinement of each tube's frames
together (`codec.model.TubeRefine`).

Everything before the filter is frozen, so what it sees can be computed once: clips and photos of the data
bank (clips drawn with the bank's per-source shares, `otok.train.bank.sampling_weights`) are encoded with the
default settings (the tokens `otok encode` writes) and decoded up to the filter; the filter then trains on
patch-aligned crops of (decoded, source) pairs — single frames, or whole tubes of a video step — hundreds of
times faster than a full training step. The encoder is untouched, so the tokens, and the prior that codes
them, stay those of `--init`.

    python train/refine.py --init codec/weights/otok-s.safetensors --bank data/otok-bank.zip \\
        --refine 32 --refine-blocks 3 --mean-weight 2 --steps 4000 --out runs/refine/otok-s.safetensors
    python train/refine.py --init codec/weights/otok-s.safetensors --tube-refine 32 --photos 0 \\
        --steps 4000 --out runs/tube/otok-s.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from otok.codec import WeightsError, load, save, with_decoder
from otok.codec.model import Tokenizer
from otok.codec.pixels import from_uint8
from otok.codec.timeline import is_segment_start, num_steps, step_start_frame
from otok.codec.config import DEFAULT_RDO
from otok.train.bank import BankError, load_bank, sampling_weights


@torch.no_grad()
def unrefined(tok: Tokenizer, video: torch.Tensor, rdo: float, part: str = "refine") -> torch.Tensor:
    """uint8 (T, H, W, 3) -> what `tok`'s decoder gives without its `part` ("refine" or "tube_refine"),
    float16 (T, 3, H, W)."""
    clip = from_uint8(video.permute(3, 0, 1, 2).unsqueeze(0))
    tokens = tok.encode(clip, rdo=rdo)
    kept = getattr(tok.decoder, part)
    setattr(tok.decoder, part, None)
    try:
        out = tok.decode(tokens, frames=clip.shape[2], height=clip.shape[3], width=clip.shape[4])
    finally:
        setattr(tok.decoder, part, kept)
    return out[0].transpose(0, 1).half()


def decoded_pairs(tok: Tokenizer, bank, clips: int, clip_frames: int, photos: int, rdo: float,
                  seed: int, part: str = "refine") -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(inputs, targets): per clip or photo, the decode without `part` (T, 3, H, W) float16 and the source uint8."""
    g = torch.Generator().manual_seed(seed)
    weights = torch.from_numpy(sampling_weights(bank.manifest, counts=bank.videos[:, 1].tolist()))
    weights[bank.videos[:, 1] < clip_frames] = 0
    inputs, targets = [], []
    for i in torch.multinomial(weights, clips, replacement=True, generator=g).tolist() if clips else []:
        first, count = bank.videos[i].tolist()
        start = first + int(torch.randint(count - clip_frames + 1, (1,), generator=g))
        video = bank.frames[start:start + clip_frames]
        inputs.append(unrefined(tok, video, rdo, part))
        targets.append(video.permute(0, 3, 1, 2).contiguous())
    for i in torch.randperm(len(bank.photos), generator=g)[:photos].tolist():
        photo = bank.photos[i:i + 1]
        inputs.append(unrefined(tok, photo, rdo, part))
        targets.append(photo.permute(0, 3, 1, 2).contiguous())
    return inputs, targets


def crops(inputs, targets, batch: int, size: int, patch: int, g: torch.Generator):
    """A batch of size x size crops at patch-aligned offsets (the seams keep their place), frames drawn
    uniformly over all frames."""
    frames = torch.tensor([len(t) for t in targets])
    owner = torch.repeat_interleave(torch.arange(len(targets)), frames)
    xs, ys = [], []
    for k in torch.randint(len(owner), (batch,), generator=g).tolist():
        item = int(owner[k])
        t = int(torch.randint(len(targets[item]), (1,), generator=g))
        _, height, width = targets[item].shape[1:]
        top = int(torch.randint((height - size) // patch + 1, (1,), generator=g)) * patch
        left = int(torch.randint((width - size) // patch + 1, (1,), generator=g)) * patch
        xs.append(inputs[item][t, :, top:top + size, left:left + size].float())
        ys.append(from_uint8(targets[item][t, :, top:top + size, left:left + size]))
    return torch.stack(xs), torch.stack(ys)


def tube_crops(inputs, targets, batch: int, size: int, patch: int, tubelet: int, gop: int, g: torch.Generator):
    """A batch of size x size crops (B, 3, t, size, size) of whole tubes: the frames of one video step (no padding
    frame), at patch-aligned offsets, drawn uniformly over all such tubes."""
    tubes = [(item, step_start_frame(step, gop, tubelet)) for item, target in enumerate(targets)
             for step in range(num_steps(len(target), gop, tubelet))
             if not is_segment_start(step, gop) and step_start_frame(step, gop, tubelet) + tubelet <= len(target)]
    if not tubes:
        raise ValueError(f"no clip holds a whole tube of {tubelet} frames: give --clips and --clip-frames > {tubelet}")
    xs, ys = [], []
    for k in torch.randint(len(tubes), (batch,), generator=g).tolist():
        item, first = tubes[k]
        _, height, width = targets[item].shape[1:]
        top = int(torch.randint((height - size) // patch + 1, (1,), generator=g)) * patch
        left = int(torch.randint((width - size) // patch + 1, (1,), generator=g)) * patch
        frames = slice(first, first + tubelet)
        xs.append(inputs[item][frames, :, top:top + size, left:left + size].float().transpose(0, 1))
        ys.append(from_uint8(targets[item][frames, :, top:top + size, left:left + size]).transpose(0, 1))
    return torch.stack(xs), torch.stack(ys)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two [-1, 1] tensors on the 8-bit scale."""
    mse = F.mse_loss(a.clamp(-1, 1), b).item() / 4
    return 10 * math.log10(1 / max(mse, 1e-12))


def train_refine(tok: Tokenizer, inputs, targets, steps: int, batch: int, crop: int, lr: float, seed: int,
                 wide_only: bool = False, mean_weight: float = 0.0, log=print, part: str = "refine") -> Tokenizer:
    """Train `tok.decoder.refine` alone (L1 on crops, Adam, cosine decay), or with `wide_only` its wide pass
    alone, or with part="tube_refine" `tok.decoder.tube_refine` alone on crops of whole tubes; returns `tok` in
    eval mode. `mean_weight` adds an L1 term on what the trained part changes in the means of 2x2-patch squares
    (with `wide_only`, what the wide pass changes in the frozen pair's output): a filter that may not move
    colours (one that learns the training footage's colours, e.g. a saturation boost, then cannot carry them to
    other footage)."""
    c = tok.config
    module = getattr(tok.decoder, part)
    for p in tok.parameters():
        p.requires_grad_(False)
    trained = [p for name, p in module.named_parameters() if name.startswith("wide") or not wide_only]
    if not trained:
        raise ValueError("--wide-only needs a refinement with a wide pass (--refine-blocks N)")
    for p in trained:
        p.requires_grad_(True)
    opt = torch.optim.Adam(trained, lr=lr)
    g = torch.Generator().manual_seed(seed + 1)
    module.train()
    start, losses = time.time(), []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        if part == "tube_refine":
            x, y = tube_crops(inputs, targets, batch, crop, c.patch, c.tubelet, c.gop, g)
            out = module(x)
            change = (out - x).transpose(1, 2).flatten(0, 1)  # per frame
        else:
            x, y = crops(inputs, targets, batch, crop, c.patch, g)
            out = module.filter(x)
            change = out - (module.pair(x).detach() if wide_only else x)  # what the trained part changes
        loss = F.l1_loss(out, y)
        if mean_weight:
            loss = loss + mean_weight * F.avg_pool2d(change, 2 * c.patch).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if (step + 1) % 100 == 0 or step + 1 == steps:
            log(json.dumps({"step": step + 1, "l1": round(sum(losses) / len(losses), 5),
                            "s": round(time.time() - start, 1)}))
            losses = []
    return tok.eval()


@torch.no_grad()
def heldout_psnr(tok: Tokenizer, bank, rdo: float) -> dict[str, float]:
    """PSNR in dB of each held-out item of the bank, encoded and decoded whole with `tok`."""
    out = {}
    for name, video in bank.heldout:
        clip = from_uint8(video.permute(3, 0, 1, 2).unsqueeze(0))
        tokens = tok.encode(clip, rdo=rdo)
        decoded = tok.decode(tokens, frames=clip.shape[2], height=clip.shape[3], width=clip.shape[4])
        out[name] = round(psnr(decoded, clip), 3)
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--init", required=True, help="the weights to start from (a file or a model name)")
    p.add_argument("--bank", default="data/otok-bank.zip", help="the data bank (tools/bank/make_dataset.py --bank)")
    p.add_argument("--out", required=True, help="the weights file to write (float16)")
    p.add_argument("--refine", type=int, default=-1,
                   help="refinement channels (a new refinement starts as the identity); -1 keeps --init's")
    p.add_argument("--refine-blocks", type=int, default=-1,
                   help="blocks of the refinement's wide pass (a new pass starts as the identity); -1 keeps --init's")
    p.add_argument("--tube-refine", type=int, default=-1,
                   help="train the refinement of each tube's frames together instead, of N channels (a new one starts "
                        "as the identity); -1 keeps --init's and trains the per-frame refinement")
    p.add_argument("--wide-only", action="store_true",
                   help="train the wide pass alone: the model without it stays exactly --init (when --init is stored "
                        "in float16, as --out is and shipped weights are), so a release needs no second weights "
                        "file for the files --init wrote")
    p.add_argument("--mean-weight", type=float, default=0.0,
                   help="weight of an L1 term on the filter's change to the means of 2x2-patch squares (keeps colours)")
    p.add_argument("--clips", type=int, default=200, help="training clips decoded once")
    p.add_argument("--clip-frames", type=int, default=17, help="frames per clip (one segment by default)")
    p.add_argument("--photos", type=int, default=128, help="training photos decoded once (image steps)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=96, help="crop side in pixels (a multiple of the patch)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--rdo", type=float, default=DEFAULT_RDO,
                   help="the tokens' rate-distortion tolerance (a KL model's latents: always 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    return p.parse_args(argv)


def prepare(args: argparse.Namespace):
    """(the model to train, the bank), or ValueError (WeightsError, BankError) naming what is wrong."""
    tok = load(args.init).eval()
    changes = {k: v for k, v in (("refine", args.refine), ("refine_blocks", args.refine_blocks),
                                 ("tube_refine", args.tube_refine)) if v >= 0 and v != getattr(tok.config, k)}
    if changes:
        tok = with_decoder(tok, **changes).eval()
    if args.tube_refine >= 0 and not tok.config.tube_refine:
        raise ValueError("--tube-refine 0 leaves no tube refinement to train")
    if args.tube_refine >= 0 and args.clips < 1:
        raise ValueError("--tube-refine trains on tubes of video: give --clips N")
    if args.tube_refine < 0 and not tok.config.refine:
        raise ValueError("the model has no refinement to train: give --refine N")
    if args.wide_only and not tok.config.refine_blocks:
        raise ValueError("--wide-only needs a refinement with a wide pass: give --refine-blocks N")
    if args.mean_weight < 0:
        raise ValueError("--mean-weight must be at least 0")
    if args.crop < 1 or args.crop % tok.config.patch or min(args.steps, args.batch, args.clips + args.photos) < 1:
        raise ValueError(f"--crop must be a positive multiple of the patch ({tok.config.patch}); --steps, --batch "
                         "and --clips + --photos at least 1")
    bank = load_bank(args.bank, workers=4)
    height, width = bank.frames.shape[1:3] if args.clips else bank.photos.shape[1:3]
    if args.crop > min(height, width, *(bank.photos.shape[1:3] if args.photos else ())):
        raise ValueError(f"--crop {args.crop} is larger than the bank's frames ({width}x{height})")
    return tok, bank


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        tok, bank = prepare(args)
    except (WeightsError, BankError, ValueError) as exc:
        print(f"train/refine.py: {exc}", file=sys.stderr)
        return 2
    rdo = args.rdo if tok.config.discrete else 0.0  # KL latents have no token choice
    t0 = time.time()
    before = heldout_psnr(tok, bank, rdo)
    print(json.dumps({"heldout_before": before}), flush=True)
    part = "tube_refine" if args.tube_refine >= 0 else "refine"
    inputs, targets = decoded_pairs(tok, bank, args.clips, args.clip_frames, args.photos, rdo, args.seed, part)
    print(json.dumps({"pairs_frames": sum(len(t) for t in targets), "decode_s": round(time.time() - t0, 1)}),
          flush=True)
    tok = train_refine(tok, inputs, targets, args.steps, args.batch, args.crop, args.lr, args.seed,
                       args.wide_only, args.mean_weight, log=lambda line: print(line, flush=True), part=part)
    after = heldout_psnr(tok, bank, rdo)
    print(json.dumps({"heldout_after": after, "config": tok.config.to_dict()}), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save(tok, args.out, dtype=torch.float16)
    return 0


if __name__ == "__main__":
    sys.exit(main())
