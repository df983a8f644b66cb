"""Export on a GPU: TensorRT engines and ONNX Runtime CUDA stream what PyTorch streams.

Marked `gpu` (skipped without CUDA, see conftest.py); TensorRT tests also skip without `tensorrt`, ONNX
Runtime CUDA tests without the CUDA execution provider (onnxruntime-gpu).
"""

from __future__ import annotations

import pytest
import torch

from codec_helpers import random_video, tiny

pytestmark = pytest.mark.gpu
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from otok.export import export_onnx, load_engine  # noqa: E402

HEIGHT, WIDTH = 72, 136  # padded to 96x160: several windows, shifted blocks shift
FP16_FRAMES_ATOL = 2e-2  # fp16 engines: |frame difference| on a [-1, 1] scale
FP16_TOKEN_AGREEMENT = 0.98  # fp16 moves features; tokens flip where two codes are nearly as close


@pytest.fixture(scope="module")
def onnx_dirs(tmp_path_factory):
    cache = {}

    def get(quantizer):
        if quantizer not in cache:
            tok = tiny(quantizer).cuda()
            folder = tmp_path_factory.mktemp(f"onnx-{quantizer}")
            export_onnx(tok, folder)
            cache[quantizer] = (tok, folder)
        return cache[quantizer]

    return get


def compare(tok, eng, token_agreement, frames_atol, batch=2, frames=23):
    video = random_video(batch, frames, HEIGHT, WIDTH).cuda()
    reference = tok.encode(video)
    ours = eng.encode(video)
    assert ours.device.type == "cuda" and ours.shape == reference.shape
    if tok.config.discrete:
        assert (ours == reference).double().mean().item() >= token_agreement
    else:
        torch.testing.assert_close(ours, reference, atol=frames_atol, rtol=frames_atol)
    kwargs = {"frames": frames, "height": HEIGHT, "width": WIDTH}
    torch.testing.assert_close(eng.decode(reference, **kwargs), tok.decode(reference, **kwargs),
                               atol=frames_atol, rtol=0)


@pytest.mark.parametrize("quantizer", ["vq", "fsq", "kl"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_streams_what_pytorch_streams(onnx_dirs, tmp_path, quantizer, precision):
    pytest.importorskip("tensorrt")
    from otok.export import build_trt_engines

    tok, folder = onnx_dirs(quantizer)
    build_trt_engines(folder, tmp_path / "trt", precision=precision, min_shape=(1, 32, 32),
                      opt_shape=(2, HEIGHT, WIDTH), max_shape=(4, 256, 256))
    eng = load_engine(tmp_path / "trt", backend="trt", device="cuda")
    assert eng.weights_sha256() == tok.weights_sha256()
    section = eng.manifest["tensorrt"]
    assert section["typing"] == ("weak" if section["major"] == 10 else "strong")  # 11: built from cast graphs
    if precision == "fp32":
        compare(tok, eng, token_agreement=0.999, frames_atol=1e-3)
    else:
        compare(tok, eng, token_agreement=FP16_TOKEN_AGREEMENT, frames_atol=FP16_FRAMES_ATOL)


def test_tensorrt_state_stays_on_the_device(onnx_dirs, tmp_path):
    pytest.importorskip("tensorrt")
    from otok.export import build_trt_engines

    tok, folder = onnx_dirs("vq")
    build_trt_engines(folder, tmp_path / "trt", min_shape=(1, 32, 32), opt_shape=(1, 64, 64),
                      max_shape=(1, 64, 64))
    eng = load_engine(tmp_path / "trt", backend="trt", device="cuda")
    stream = eng.stream_encoder(1, 64, 64)
    stream.push(random_video(1, 5, 64, 64).cuda())
    state = stream.cache
    assert state.keys.is_cuda and state.values.is_cuda and state.valid.is_cuda


def test_onnxruntime_cuda_streams_what_pytorch_streams(onnx_dirs):
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu (CUDAExecutionProvider) is not installed")
    tok, folder = onnx_dirs("vq")
    compare(tok, load_engine(folder, backend="onnx", device="cuda"), token_agreement=0.999, frames_atol=1e-3)
