"""What a GPU job checks and measures before it trains: the environment, CUDA/CPU parity, streaming speed.

Each function returns plain numbers for `report.json`; none of them trains or writes files.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import Tensor

from otok.codec import Tokenizer, load
from otok.codec.accelerate import accelerate


class JobEnvironmentError(RuntimeError):
    """The machine lacks what the job needs (one line says what)."""


def check_environment(device: str) -> dict:
    """Fail fast, with one line, when `device` cannot run the job; otherwise describe the machine."""
    info = {"torch": torch.__version__, "device": device}
    if device == "cuda":
        if not torch.cuda.is_available():
            raise JobEnvironmentError("no CUDA device is visible to PyTorch (use --device cpu or --smoke for a CPU run)")
        if not torch.cuda.is_bf16_supported():
            raise JobEnvironmentError(f"{torch.cuda.get_device_name()} does not support bf16")
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count, cuda=torch.version.cuda)
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def token_parity(cpu: Tokenizer, clip: Tensor) -> dict:
    """Tokens of `clip` (float (1, 3, T, H, W) in [-1, 1]) by `cpu` (a model on the CPU) in fp32 against
    CUDA in fp32, with `--precision auto` (the decoder in bf16) and in bf16 autocast throughout: the fraction
    of equal tokens and the reconstructions' max difference."""
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32 here
    try:
        return _parity(cpu, clip)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def _parity(cpu: Tokenizer, clip: Tensor) -> dict:
    reference = cpu.encode(clip)
    gpu = _copy(cpu, "cuda")
    fp32 = gpu.encode(clip.cuda()).cpu()
    auto = accelerate(_copy(cpu, "cuda"), "auto").encode(clip.cuda()).cpu()  # the encoder in fp32: the same tokens
    bf16 = accelerate(_copy(cpu, "cuda"), "bf16").encode(clip.cuda()).cpu()
    recon_cpu = cpu.decode(reference, frames=clip.shape[2])
    recon_gpu = gpu.decode(reference.cuda(), frames=clip.shape[2]).cpu()
    return {
        "tokens_equal_fp32": float((fp32 == reference).float().mean()),
        "tokens_equal_auto": float((auto == reference).float().mean()),
        "tokens_equal_bf16": float((bf16 == reference).float().mean()),
        "decode_max_abs_diff_fp32": float((recon_cpu - recon_gpu).abs().max()),
    }


def _copy(tok: Tokenizer, device: str) -> Tokenizer:
    new = Tokenizer(tok.config)
    new.load_state_dict(tok.state_dict())
    return new.to(device).eval()


@torch.no_grad()
def stream_speed(name: str, height: int, width: int, batch: int, mode: str, device: torch.device,
                 steps: int = 6, tile: int | None = 0) -> dict:
    """Encode and decode frames/s of one model's streams (median video step; random weights: speed does
    not depend on their values) and peak device memory. mode: fp32, bf16 or compiled (bf16 + compile).
    tile: as `stream_encoder`'s (0: whole frames; None: auto, reported as the tile it chose)."""
    tok = load(name, pretrained=False, seed=0).to(device)
    if mode != "fp32":
        accelerate(tok, "bf16", compile=mode == "compiled")
    t = tok.config.tubelet
    group = torch.rand(batch, 3, t, height, width, device=device) * 2 - 1
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    encoder = tok.stream_encoder(batch, height, width, gop=0, tile=tile)  # one segment
    decoder = tok.stream_decoder(batch, height, width, gop=0, tile=tile)  # one segment
    decoder.push(encoder.push(group[:, :, :1])[0])
    enc_times, dec_times = [], []
    for i in range(steps + 2):  # two warm-up steps (compilation, cuDNN/cuBLAS heuristics)
        _sync(device)
        start = time.perf_counter()
        (grid,) = encoder.push(group)
        _sync(device)
        mid = time.perf_counter()
        decoder.push(grid)
        _sync(device)
        if i >= 2:
            enc_times.append(mid - start)
            dec_times.append(time.perf_counter() - mid)
    frames = batch * t
    out = {"model": name, "size": f"{width}x{height}", "batch": batch, "mode": mode,
           "tile": encoder.tiles.size * tok.config.patch if encoder.tiles is not None else 0,
           "encode_fps": round(frames / statistics.median(enc_times), 1),
           "decode_fps": round(frames / statistics.median(dec_times), 1)}
    if device.type == "cuda":
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def matmul_tflops(device: torch.device, n: int = 8192, repeat: int = 10, dtype: torch.dtype = torch.bfloat16,
                  digits: int | None = 1) -> float:
    """TFLOP/s of an n x n x n matrix product of `dtype` on random data (median of `repeat` after warm-up): the
    ceiling that achieved figures are read against."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeat):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - start)
    rate = 2 * n**3 / statistics.median(times) / 1e12
    return rate if digits is None else round(rate, digits)


SPEED_SIZES = ((256, 256), (720, 1280), (1080, 1920))


def speed_table(models: tuple[str, ...], device: torch.device, seconds: float):
    """`stream_speed` rows over models x sizes x batch 1, 8 x fp32 / bf16, then compiled for the first model at
    256x256, yielded as they are measured (so a caller can keep each one); rows past about `seconds` are
    yielded as skipped."""
    plan = [(m, h, w, b, mode) for m in models for (h, w) in SPEED_SIZES for b in (1, 8) for mode in ("fp32", "bf16")]
    plan.append((models[0], 256, 256, 1, "compiled"))
    deadline = time.perf_counter() + seconds
    for name, h, w, b, mode in plan:
        row = {"model": name, "size": f"{w}x{h}", "batch": b, "mode": mode}
        if time.perf_counter() > deadline:
            yield row | {"skipped": "time"}
            continue
        try:
            yield stream_speed(name, h, w, b, mode, device)
        except Exception as exc:  # noqa: BLE001 - one failed measurement must not cost the lease
            yield row | {"error": f"{type(exc).__name__}: {exc}"[:300]}
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
