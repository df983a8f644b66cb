"""Clips/s and memory per worker of `otok dataset`'s engines on a folder of short clips (docs/BENCHMARKS.md).

    python -m otok.tools.dataset.bench                      # 50 clips of 17 frames at 256x144, otok-s
    python -m otok.tools.dataset.bench --clips 10 --workers 2 --engines ray

The clips are windows of the shipped Big Buck Bunny sample (clip i starts at frame i mod 32). Each engine
runs `otok dataset` as a fresh command; a thread samples the resident memory of its processes every 0.1 s:
the command's own (for --engine local, the one worker) and each Ray actor's (`ray::...RayTokenizer`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SAMPLE = Path(__file__).parents[1] / "samples" / "bigbuckbunny_2s.mp4"


def make_clips(folder: Path, clips: int, frames: int) -> None:
    from otok.tools.video_io import VideoReader, VideoWriter

    with VideoReader(SAMPLE) as reader:
        source, info = list(reader), reader.info
    for i in range(clips):
        writer = VideoWriter(folder / f"clip{i:03d}.mp4", info.width, info.height, info.fps, crf=18)
        for frame in source[i % 32:][:frames]:
            writer.write(frame)
        writer.close()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def rss_mb(pid: int) -> tuple[str, float] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    return (command, int(status.split("VmRSS:")[1].split()[0]) / 1024) if "VmRSS:" in status else None  # a zombie


def run(engine: str, folder: Path, out: Path, model: str, workers: int) -> dict:
    command = [sys.executable, "-m", "otok.tools.cli", "dataset", str(folder), "--out", str(out), "--model", model]
    if engine == "ray":
        command += ["--engine", "ray", "--workers", str(workers)]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, tuple[str, float]] = {}

    def sample() -> None:
        while proc.poll() is None:
            for pid in descendants(proc.pid):
                seen = rss_mb(pid)
                if seen and seen[1] > peaks.get(pid, ("", 0.0))[1]:
                    peaks[pid] = seen
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    printed, err = proc.communicate()
    sampler.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {err.strip()}")
    clips = int(printed.split(": ")[1].split()[0])
    workers_mb = [mb for pid, (cmd, mb) in peaks.items() if "RayTokenizer" in cmd] if engine == "ray" \
        else [peaks[proc.pid][1]]
    return {"engine": engine, "workers": workers if engine == "ray" else 1, "clips": clips, "wall_s": round(wall, 1),
            "clips_per_s": round(clips / wall, 3), "summary": printed.strip(),
            "worker_peak_rss_mb": [round(mb) for mb in sorted(workers_mb)],
            "all_processes_peak_rss_mb": round(sum(mb for _, mb in peaks.values()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=50, help="clips in the folder (default: 50)")
    parser.add_argument("--frames", type=int, default=17, help="frames a clip (default: 17)")
    parser.add_argument("--model", default="otok-s", help="model (default: otok-s)")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors (default: 2)")
    parser.add_argument("--engines", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="otok-bench-dataset-") as tmp:
        make_clips(Path(tmp), args.clips, args.frames)
        for engine in args.engines:
            print(json.dumps(run(engine, Path(tmp), Path(tmp) / f"out-{engine}", args.model, args.workers)), flush=True)


if __name__ == "__main__":
    main()
