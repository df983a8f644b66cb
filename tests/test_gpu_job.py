"""`train/gpu_job.py`: the GPU lease's job, run end to end on the CPU with `--smoke` (otok-tiny) on a bank the
tests build, and its one-line refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from otok.codec import load
from test_make_dataset import bank_path, sources  # noqa: F401 - fixtures: a tiny bank built from generated footage

REPO = Path(__file__).resolve().parents[1]
JOB = REPO / "train" / "gpu_job.py"
LIMIT = 16 * 2**20  # what a lease brings back per file


def _run(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(JOB), *args], capture_output=True, text=True, env=env, timeout=300)


def test_smoke_run_trains_evaluates_and_writes_what_a_lease_brings_back(bank_path, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    done = _run("--smoke", "--bank", str(bank_path), "--out", str(out), "--work", str(tmp_path / "work"),
                "--minutes", "3", "--steps", "9", "--refine", "4")  # 9 steps: 3 of each turn, however busy the machine
    assert done.returncode == 0, done.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["log.jsonl", "otok-tiny.safetensors", "report.json"]
    assert all((out / f).stat().st_size <= LIMIT for f in files)
    report = json.loads((out / "report.json").read_text())
    assert report["training"]["steps"] == 9 and "train_error" not in report
    assert set(report["training"]["per_turn"]) == {"video32", "video64", "image64"}
    assert all(row["clips_per_s"] > 0 for row in report["training"]["per_turn"].values())
    assert all(v > 0 for v in report["flops_per_step"].values())
    assert report["profile"]["steps"] == [6, 8] and any("aten::" in line for line in report["profile"]["table"])
    before, after = report["heldout_before"], report["heldout_after"]
    assert set(before["items"]) == set(after["items"]) == set(report["bank"]["heldout"])
    assert after["mean_psnr"] > before["mean_psnr"]  # from a random init, even a few steps help
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert records and records[-1]["step"] == report["training"]["steps"]
    model = load(out / "otok-tiny.safetensors")
    assert model.config.refine == 4
    assert torch.count_nonzero(model.decoder.refine.conv_out.weight) > 0  # the refinement trained


def test_without_cuda_the_job_says_so_in_one_line(bank_path, tmp_path):  # noqa: F811
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    done = _run("--bank", str(bank_path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["gpu_job: error: no CUDA device is visible to PyTorch (use --device cpu or --smoke for a CPU run)"]


def test_a_missing_or_broken_bank_is_one_line(tmp_path):
    done = _run("--smoke", "--bank", str(tmp_path / "none.zip"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no data bank" in done.stderr
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    done = _run("--smoke", "--bank", str(broken), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "not an otok data bank" in done.stderr


def test_bad_settings_are_one_line_before_any_work(bank_path, tmp_path):  # noqa: F811
    for args, says in ((["--res", "abc"], "--res"), (["--init", str(tmp_path / "none.safetensors")], "--init"),
                       (["--device", "tpu"], "--device")):
        done = _run("--smoke", "--bank", str(bank_path), "--out", str(tmp_path / "out"), *args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and says in done.stderr, done.stderr
        assert not (tmp_path / "out").exists()


def test_stream_speed_reports_the_tile_it_ran():
    """The GPU checks' 4K row (issue 31) runs through stream_speed with a tile; on the CPU at a small size."""
    import torch

    from otok.train.gpu_checks import stream_speed

    whole = stream_speed("otok-tiny", 64, 96, 1, "fp32", torch.device("cpu"), steps=1, tile=0)
    tiled = stream_speed("otok-tiny", 64, 96, 1, "fp32", torch.device("cpu"), steps=1, tile=32)
    assert whole["tile"] == 0 and 0 < tiled["tile"] <= 32 and tiled["encode_fps"] > 0


def test_a_cpu_run_that_cannot_fit_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    """issue 29 E.20: the README's training command on a CPU took the GPU's 131,072-token batches (24 GB of
    RSS on a 0.7 MB bank, the whole machine). On the CPU the default is now 4,096, and a batch that cannot fit
    is refused before anything loads, naming a --tokens that fits."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_job_module", JOB)
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    bank = tmp_path / "bank.zip"
    bank.write_bytes(b"never read")
    out = ["--out", str(tmp_path / "o")]
    assert job.parse_args(["--bank", str(bank), "--device", "cpu", *out]).tokens == job.CPU_TOKENS
    assert job.parse_args(["--bank", str(bank), *out]).tokens == job.GPU_TOKENS
    from otok.codec import tiling

    monkeypatch.setattr(tiling, "available_memory", lambda device="cpu": 3 << 30)
    status = job.main(["--bank", str(bank), "--device", "cpu", "--tokens", "131072", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "needs about" in err and "give --tokens" in err
    fits = int(err.split("give --tokens ")[1].split()[0])
    assert job.cpu_training_bytes("otok-s", fits) <= 3 << 30 < job.cpu_training_bytes("otok-s", 131072)
