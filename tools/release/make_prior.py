"""Build the `ctx` coder's prior table for a model from sample footage, and save it beside the weights.

    python tools/release/make_prior.py --model codec/weights/otok-s.safetensors --data DIR [--data DIR ...]

Every video and image under the folders is encoded (scaled so the longer side is at most --max-side, at
most --frames frames each); the token grids, cut into segments, give the mode-context, literal and group
counts (`otok.bitstream.Prior.from_tokens`); a VQ model's codebook gives the code order of the grouped
literal model (`otok.bitstream.prior.code_order`; FSQ and LFQ indices keep their own order). The table is
written to WEIGHTS.prior, where `otok encode` finds it: files then reference it by hash instead of
carrying it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from otok.bitstream import Prior
from otok.bitstream.prior import code_order
from otok.codec.priors import earlier_name
from otok.codec import load
from otok.tools.options import DEFAULTS
from otok.tools.video_io import VideoReader, frames_to_video, media_files


def token_segments(tok, path: Path, max_side: int, frames: int, rdo: float = 0.0) -> list:
    with VideoReader(path, max_side=max_side, max_frames=frames) as reader:
        clip = list(reader)
    if not clip:
        return []
    with torch.inference_mode():
        tokens = tok.encode(frames_to_video(clip, tok.device), rdo=rdo)[0].numpy()  # (S, h, w)
    gop = tok.config.gop
    return [tokens[i : i + gop] for i in range(0, len(tokens), gop)]


def model_code_order(tok):
    """Ranks that put similar codes together (a VQ codebook), or None (the identity: FSQ / LFQ indices)."""
    codebook = getattr(tok.quantizer, "normalized_codebook", None)
    if codebook is None:
        return None
    with torch.no_grad():
        return code_order(codebook().float().cpu().numpy())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="weights path (the prior is written beside it)")
    parser.add_argument("--data", action="append", type=Path, required=True)
    parser.add_argument("--max-side", type=int, default=256)
    parser.add_argument("--frames", type=int, default=85)
    parser.add_argument("--rdo", type=float, default=DEFAULTS.rdo,
                        help=f"the tokens' rate-distortion tolerance: what `otok encode` codes (default {DEFAULTS.rdo})")
    args = parser.parse_args(argv)
    if not 0 <= args.rdo < float("inf"):  # also refuses nan
        parser.error(f"--rdo must be a number >= 0, got {args.rdo}")
    tok = load(args.model)
    files = media_files(args.data)
    segments = []
    for path in files:
        segments += token_segments(tok, path, args.max_side, args.frames, args.rdo if tok.config.discrete else 0.0)
        print(f"{path.name}: {len(segments)} segments so far", flush=True)
    prior = Prior.from_tokens(segments, tok.config.codebook_size, order=model_code_order(tok))
    out = Path(args.model).with_suffix(".prior")
    if out.is_file():  # the table it replaces stays, for the files that name it (`otok.codec.priors`)
        replaced = Prior.load(out)
        if replaced != prior:
            replaced.save(out.with_name(earlier_name(out.stem, replaced.sha256.hex())))
            print(f"kept the table it replaces as {out.with_name(earlier_name(out.stem, replaced.sha256.hex()))}")
    prior.save(out)
    print(f"wrote {out} ({out.stat().st_size:,} bytes, sha256 {prior.sha256.hex()[:16]}...) from "
          f"{len(files)} files, {len(segments)} segments")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
