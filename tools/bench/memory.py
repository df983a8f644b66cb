"""Peak memory of `otok encode` and `otok decode` on a 6-second and a 60-second clip.

    python tools/bench/memory.py                  # otok-s, 256x144 at 25 fps
    python tools/bench/memory.py --model otok-tiny --seconds 2 20

Each run is a fresh child process; its peak resident set size comes from the kernel (wait4 rusage).
The clips loop the shipped Big Buck Bunny sample. Streaming means the long clip should need no more than
the short one (target: within 15%). Random-init weights unless --model is a weights path: memory does
not depend on their values.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SAMPLE = Path(__file__).parent / "samples" / "bigbuckbunny_2s.mp4"


def make_clip(path: Path, seconds: float) -> int:
    from otok.tools.video_io import VideoReader, VideoWriter

    with VideoReader(SAMPLE) as reader:
        frames, info = list(reader), reader.info
    total = round(seconds * float(info.fps))
    writer = VideoWriter(path, info.width, info.height, info.fps, codec="h264", crf=18)
    for i in range(total):
        cycle, k = divmod(i, len(frames))
        writer.write(frames[k if cycle % 2 == 0 else len(frames) - 1 - k])  # ping-pong: no jump cut
    writer.close()
    return total


def child(mode: str, model: str, src: str, dst: str) -> None:
    import torch

    from otok.codec import load
    from otok.tools.decode import decode_file
    from otok.tools.encode import encode_file

    torch.set_num_threads(max(1, torch.get_num_threads()))
    pretrained = model.endswith(".safetensors")
    tok = load(model, pretrained=pretrained, seed=0) if not pretrained else load(model)
    if mode == "encode":
        encode_file(src, dst, tokenizer=tok)
    else:
        decode_file(src, dst, tokenizer=tok)


def peak_rss_mb(args: list[str]) -> float:
    proc = subprocess.Popen([sys.executable, __file__, "--child", *args])
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child {' '.join(args)} failed")
    return usage.ru_maxrss / 1024  # kilobytes on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="otok-s")
    parser.add_argument("--seconds", type=float, nargs=2, default=(6.0, 60.0), metavar=("SHORT", "LONG"))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    with tempfile.TemporaryDirectory(prefix="otok-mem-") as tmp:
        rows = []
        for seconds in args.seconds:
            clip = Path(tmp) / f"clip_{seconds:g}s.mp4"
            frames = make_clip(clip, seconds)
            coded = clip.with_suffix(".otok")
            enc = peak_rss_mb(["encode", args.model, str(clip), str(coded)])
            dec = peak_rss_mb(["decode", args.model, str(coded), str(clip.with_name(clip.stem + "_out.mp4"))])
            rows.append((seconds, frames, enc, dec))
            print(f"{seconds:>6g} s {frames:>6} frames  encode peak {enc:8.1f} MB  decode peak {dec:8.1f} MB",
                  flush=True)
        (_, _, enc_s, dec_s), (_, _, enc_l, dec_l) = rows
        print(f"long/short peak ratio: encode {enc_l / enc_s:.3f}, decode {dec_l / dec_s:.3f} (target <= 1.15)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
