"""train/run.py on otok-tiny with footage the tests write (PNG stills and H.264 clips of moving shapes):
each stage trains and lowers the loss, the chain image -> joint -> kl loads each stage's output, resume is
exact, checkpoints are atomic, data is seeded and sharded, DDP runs on two gloo processes (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from otok.codec import load
from otok.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from otok.train.cli import main
from otok.train.config import TrainConfig
from otok.train.data import TrainBatches, read_frames, to_model_input
from otok.train.losses import LPIPS
from otok.train.schedule import learning_rate
from otok.train.stages import to_kl

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "train" / "run.py"
FAST = ["--res", "32", "--clip-frames", "5", "--no-progress", "--log-every", "1", "--threads", "1"]


# ----- footage ---------------------------------------------------------------------------------------
def _scene(frames: int, height: int, width: int, seed: int) -> list[np.ndarray]:
    """A textured gradient with a few discs moving across it: real edges, motion and colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width, yy / height, 0.5 + 0.5 * np.sin(xx / 5 + yy / 9)], -1) * 255 * rng.uniform(0.4, 1, 3)
    discs = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-3, 3), rng.uniform(-3, 3),
              rng.uniform(4, width / 4), rng.integers(0, 256, 3)) for _ in range(4)]
    out = []
    for t in range(frames):
        img = base.copy()
        for x, y, vx, vy, r, colour in discs:
            img[(xx - (x + vx * t) % width) ** 2 + (yy - (y + vy * t) % height) ** 2 < r * r] = colour
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def _write(path: Path, frames: list[np.ndarray], codec: str, fps: int = 24) -> None:
    import av

    with av.open(str(path), "w", **({"format": "image2"} if codec == "png" else {})) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "rgb24" if codec == "png" else "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("footage")
    (root / "stills").mkdir()
    (root / "clips").mkdir()
    for i in range(8):
        _write(root / "stills" / f"{i}.png", _scene(1, 48, 64, i), "png")
    for i in range(3):
        _write(root / "clips" / f"{i}.mp4", _scene(30, 40, 56, 100 + i), "libx264")
    (root / "stills" / "broken.png").write_bytes(b"not an image")
    return root


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def _eval_loss(tok, batch: dict) -> float:
    video = to_model_input(batch["pixels"], "cpu")
    with torch.no_grad():
        return float((tok.eval()(video).reconstruction - video).pow(2).mean())


def _run(args: list[str]) -> None:
    assert main([*args, *FAST]) == 0


# ----- the three stages ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_stage(footage, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("image")
    _run(["--stage", "image", "--model", "otok-tiny", "--data", str(footage), "--steps", "24", "--batch", "4",
          "--out", str(out), "--lr", "3e-3"])
    return out


@pytest.fixture(scope="module")
def joint_stage(footage, image_stage, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("joint")
    _run(["--stage", "joint", "--model", "otok-tiny", "--data", str(footage / "stills"),
          "--data", str(footage / "clips"), "--init", str(image_stage / "final.safetensors"),
          "--steps", "12", "--batch", "2", "--out", str(out), "--lr", "3e-3", "--fps", "12"])
    return out


def test_image_stage_trains_and_writes_a_loadable_model(footage, image_stage, capsys):
    records = _records(image_stage)
    assert [r["step"] for r in records] == list(range(1, 25))
    for key in ("loss", "rec", "quant", "lr", "usage", "perplexity", "codes_alive", "steps_per_s"):
        assert key in records[0], key
    tok = load(image_stage / "final.safetensors")
    assert tok.config.name == "otok-tiny" and tok.config.quantizer == "vq"
    batch = TrainBatches([str(footage)], "image", 4, (32,), seed=99)[0]
    start = load("otok-tiny", pretrained=False, seed=0)  # the image stage's init for seed 0
    assert _eval_loss(tok, batch) < 0.7 * _eval_loss(start, batch)
    assert np.mean([r["loss"] for r in records[-4:]]) < np.mean([r["loss"] for r in records[:4]])
    assert (image_stage / "checkpoint.safetensors").is_file()


def test_joint_stage_alternates_and_lowers_the_clip_loss(footage, image_stage, joint_stage):
    records = _records(joint_stage)
    assert len(records) == 12
    tok = load(joint_stage / "final.safetensors")
    clips = TrainBatches([str(footage)], "joint", 2, (32,), clip_frames=5, seed=99)
    assert clips[0]["kind"] == "image" and clips[1]["kind"] == "video"
    assert clips[1]["pixels"].shape == (2, 3, 5, 32, 32)
    before = load(image_stage / "final.safetensors")
    assert _eval_loss(tok, clips[1]) < _eval_loss(before, clips[1])


def test_kl_stage_gives_a_continuous_tokenizer(footage, joint_stage, tmp_path):
    _run(["--stage", "kl", "--model", "otok-tiny", "--data", str(footage), "--steps", "8", "--batch", "2",
          "--init", str(joint_stage / "final.safetensors"), "--out", str(tmp_path), "--lr", "3e-3"])
    tok = load(tmp_path / "final.safetensors")
    assert tok.config.name == "otok-tiny-kl" and tok.config.quantizer == "kl" and tok.config.kl_weight == 1e-6
    assert "kl" in _records(tmp_path)[0]
    video = to_model_input(TrainBatches([str(footage)], "joint", 1, (32,), clip_frames=5, seed=5)[1]["pixels"], "cpu")
    latents = tok.encode(video)
    assert latents.dtype == torch.float32 and latents.shape[:3] == (1, 2, tok.config.latent_dim)
    clips = TrainBatches([str(footage)], "joint", 2, (32,), clip_frames=5, seed=99)
    start = to_kl(load(joint_stage / "final.safetensors"), "otok-tiny-kl")
    assert _eval_loss(tok, clips[1]) < _eval_loss(start, clips[1])


def test_to_kl_keeps_the_trained_weights():
    vq = load("otok-tiny", pretrained=False, seed=3)
    kl = to_kl(vq, "otok-tiny-kl")
    assert torch.equal(kl.decoder.head_tube.weight, vq.decoder.head_tube.weight)
    c = vq.config.latent_dim
    assert torch.equal(kl.encoder.to_latent.weight[:c], vq.encoder.to_latent.weight)
    assert kl.encoder.to_latent.weight.shape[0] == 2 * c


# ----- resume and checkpoints ------------------------------------------------------------------------
def test_resume_continues_exactly(footage, image_stage, tmp_path):
    """20 steps straight == 10 steps, stop, --resume, 10 more: same losses, same weights (GAN, EMA and
    dead-code restarts included)."""
    common = ["--stage", "joint", "--model", "otok-tiny", "--data", str(footage), "--steps", "20", "--batch", "2",
              "--init", str(image_stage / "final.safetensors"), "--lr", "2e-3", "--gan-start", "6",
              "--disc-channels", "8", "--ema", "0.9", "--restart-every", "4", "--ckpt-every", "3"]
    _run([*common, "--out", str(tmp_path / "straight")])
    _run([*common, "--out", str(tmp_path / "split"), "--stop-at", "10"])
    assert not (tmp_path / "split" / "final.safetensors").exists()
    assert load_checkpoint(tmp_path / "split" / "checkpoint.safetensors")["step"] == 10
    _run([*common, "--out", str(tmp_path / "split"), "--resume"])
    strip = lambda rs: [{k: v for k, v in r.items() if k != "steps_per_s"} for r in rs]  # noqa: E731
    straight, split = strip(_records(tmp_path / "straight")), strip(_records(tmp_path / "split"))
    assert len(straight) == 20 and "d" in straight[-1] and "g" in straight[-1]
    assert split == straight
    a, b = (load(tmp_path / d / "final.safetensors") for d in ("straight", "split"))
    assert a.weights_sha256() == b.weights_sha256()
    state = load_checkpoint(tmp_path / "split" / "checkpoint.safetensors")
    assert state["disc"] is not None and state["disc_optimizer"] is not None
    raw = state["model"]["decoder.head_tube.weight"]
    assert not torch.equal(raw, a.decoder.head_tube.weight)  # final.safetensors holds the EMA weights
    assert torch.equal(state["ema"]["decoder.head_tube.weight"], a.decoder.head_tube.weight)


def test_checkpoint_round_trip_and_atomic_write(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    state = {"step": 3, "nested": {0: {"t": torch.arange(4.0), "betas": (0.9, 0.99)}, "x": [None, True, "s"]},
             "scalar": torch.tensor(2.5)}
    save_checkpoint(path, state)
    back = load_checkpoint(path)
    assert back["step"] == 3 and back["nested"][0]["betas"] == [0.9, 0.99] and back["nested"]["x"] == [None, True, "s"]
    assert torch.equal(back["nested"][0]["t"], torch.arange(4.0)) and float(back["scalar"]) == 2.5

    import safetensors.torch

    def crash(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a checkpoi")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, {"step": 4})
    assert load_checkpoint(path)["step"] == 3  # the previous checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors"]  # no temp left behind
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


# ----- data ------------------------------------------------------------------------------------------
def test_batches_are_seeded_sharded_and_skip_bad_files(footage, capsys):
    make = lambda **kw: TrainBatches([str(footage)], "joint", 3, (32, 48), clip_frames=5, **kw)  # noqa: E731
    a, b = make(seed=1)[7], make(seed=1)[7]
    assert torch.equal(a["pixels"], b["pixels"]) and a["kind"] == "video" and a["pixels"].dtype == torch.uint8
    assert not torch.equal(make(seed=2)[7]["pixels"], a["pixels"])
    assert not torch.equal(make(seed=1, rank=1, world=2)[7]["pixels"], make(seed=1, rank=0, world=2)[7]["pixels"])
    images = TrainBatches([str(footage / "stills")], "image", 8, (24,), seed=0)
    seen = [images[s] for s in range(3)]
    assert all(s["pixels"].shape == (8, 3, 1, 24, 24) for s in seen)
    assert any(str(footage / "stills" / "broken.png") in s["skipped"] for s in seen)


def test_clips_follow_the_requested_frame_rate(tmp_path):
    frames = [np.full((16, 16, 3), 8 * i, np.uint8) for i in range(24)]  # frame i has brightness 8 i
    _write(tmp_path / "ramp.mp4", frames, "libx264", fps=24)
    rng = np.random.default_rng(0)
    clip = read_frames(str(tmp_path / "ramp.mp4"), 5, 6.0, 16, 1.0, rng)  # every 4th source frame
    levels = clip.reshape(5, -1).mean(1) / 8
    assert np.allclose(np.diff(levels), 4, atol=0.5), levels
    long = read_frames(str(tmp_path / "ramp.mp4"), 30, None, 16, 1.0, rng)  # longer than the source
    assert long.shape == (30, 16, 16, 3) and np.array_equal(long[-1], long[-7])


# ----- losses, schedule, CLI -------------------------------------------------------------------------
def test_schedule_warms_up_then_decays_to_zero():
    lrs = [learning_rate(s, 1.0, 10, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(x >= y for x, y in zip(lrs[9:], lrs[10:])) and learning_rate(100, 1.0, 10, 100) == pytest.approx(0)


def test_perceptual_loss_reads_a_user_weights_file(tmp_path):
    from safetensors.torch import save_file

    net = LPIPS()
    tensors = {k: torch.randn_like(v) * 0.05 for k, v in net.features.state_dict().items()}
    tensors = {f"features.{k}": v for k, v in tensors.items()}
    tensors.update({f"lin{i}.model.1.weight": torch.rand_like(lin.weight) for i, lin in enumerate(net.lins)})
    save_file(tensors, str(tmp_path / "lpips.safetensors"))
    lpips = LPIPS.from_file(str(tmp_path / "lpips.safetensors"))
    x = torch.rand(2, 3, 1, 32, 32) * 2 - 1
    assert float(lpips.video(x, x)) == 0.0
    assert float(lpips.video(x, x.flip(-1))) > 0.0


@pytest.mark.parametrize("args, message", [
    (["--stage", "joint", "--model", "otok-tiny", "--steps", "1", "--batch", "1"], "--init"),
    (["--stage", "image", "--model", "otok-nope", "--steps", "1", "--batch", "1"], "unknown model"),
    (["--stage", "image", "--model", "otok-tiny", "--steps", "1", "--batch", "1", "--res", "64,x"], "integers"),
    (["--stage", "joint", "--model", "otok-s", "--steps", "1", "--batch", "1", "--init", "nope.safetensors"], "nope"),
    (["--stage", "image", "--model", "otok-tiny", "--batch", "1"], "--steps"),
    (["--stage", "image", "--model", "otok-tiny", "--steps", "1", "--batch", "1", "--min-crop", "0"], "--min-crop"),
    (["--stage", "image", "--model", "otok-tiny", "--steps", "1", "--batch", "1", "--rdo", "-0.1"], "--rdo"),
    (["--stage", "image", "--model", "otok-tiny", "--steps", "1", "--batch", "1", "--rdo", "nan"], "--rdo"),
    (["--stage", "image", "--model", "otok-s-kl", "--steps", "1", "--batch", "1", "--rdo", "0.01"], "continuous"),
])
def test_user_errors_print_one_line(footage, tmp_path, capsys, args, message):
    assert main([*args, "--data", str(footage), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_config_file_then_flags(tmp_path):
    from otok.train.config import parse_args

    (tmp_path / "c.json").write_text(json.dumps({"stage": "image", "model": "otok-tiny", "data": ["d"], "steps": 5,
                                                 "batch": 2, "out": "o", "ema": 0.999, "gan_start": 100}))
    config = parse_args(["--config", str(tmp_path / "c.json"), "--steps", "7", "--res", "64,128"])
    assert (config.steps, config.ema, config.gan_start, config.res, config.data) == (7, 0.999, 100, (64, 128), ("d",))
    assert parse_args(["--stage", "joint", "--model", "m", "--data", "d", "--steps", "1", "--batch", "1",
                       "--out", "o", "--init", "w"]).res == (128, 192, 256, 320, 384)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_run_py_works_as_a_script():
    result = subprocess.run([sys.executable, str(RUN), "--help"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and "--stage" in result.stdout


# ----- scale -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ddp_two_gloo_processes(footage, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(RUN),
           "--stage", "image", "--model", "otok-tiny", "--data", str(footage), "--steps", "6", "--batch", "2",
           "--out", str(out), "--device", "cpu", "--ckpt-every", "3", "--gan-start", "2", "--disc-channels", "8",
           "--restart-every", "2", *FAST[:-2], "--threads", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_checkpoint(out / "checkpoint.safetensors")["step"] == 6
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.safetensors", "final.safetensors", "log.jsonl"]
    assert [r["step"] for r in _records(out)] == list(range(1, 7))
    load(out / "final.safetensors")
