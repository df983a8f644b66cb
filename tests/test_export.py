"""Export: the ONNX graphs pass the TensorRT allowlist, and ONNX Runtime streams what PyTorch streams.

Tokens must agree except at near-ties of the nearest-code search (>= 99.9% identical), decoded frames
within 1e-3, for VQ, FSQ and KL models, frame sizes with and without shifted windows, batch 1 and 3, and
1 to 30 steps (several segments, and one long segment that slides the temporal window). GPU tests
(TensorRT, ONNX Runtime CUDA) are marked `gpu`.
"""

from __future__ import annotations

import json
import shutil
from fractions import Fraction

import numpy as np
import pytest
import torch

from codec_helpers import random_video, tiny
from otok.codec import TokenizerConfig, num_steps
from otok.codec.layers import shifted_window_mask

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from otok.export import EngineError, UnsupportedOpError, check_graph, export_onnx, load_engine  # noqa: E402
from otok.export.ops import SUPPORTED, find_problems  # noqa: E402

# name -> (quantizer, config changes). "deep" is a second size: more heads and layers, a short window.
MODELS = {
    "vq": ("vq", {}),
    "fsq": ("fsq", {}),
    "kl": ("kl", {}),
    "deep": ("vq", {"dim": 48, "heads": 4, "spatial_layers": 3, "temporal_layers": 2, "temporal_window": 3}),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """model name -> (PyTorch tokenizer, ONNX Runtime tokenizer, export folder), exported once."""
    cache = {}

    def get(name):
        if name not in cache:
            quantizer, changes = MODELS[name]
            tok = tiny(quantizer, **changes)
            folder = tmp_path_factory.mktemp(f"onnx-{name}")
            export_onnx(tok, folder)
            cache[name] = (tok, load_engine(folder, backend="onnx"), folder)
        return cache[name]

    return get


def assert_tokens_agree(ours, reference, discrete):
    assert ours.shape == reference.shape and ours.dtype == reference.dtype
    if discrete:
        same = (ours == reference).double().mean().item()
        assert same >= 0.999, f"only {same:.4%} of tokens agree"
    else:
        torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)


# ----- graphs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vq", "fsq", "kl"])
def test_graphs_pass_the_tensorrt_allowlist(exported, name):
    tok, _, folder = exported(name)
    manifest = json.loads((folder / "manifest.json").read_text())
    for graph, entry in manifest["graphs"].items():
        model = onnx.load(str(folder / entry["file"]))
        check_graph(model)
        assert {n.op_type for n in model.graph.node} <= SUPPORTED
        assert "If" not in {n.op_type for n in model.graph.node}  # nothing shape-dependent left
        assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 17
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["otok_weights_sha256"] == tok.weights_sha256() == manifest["weights_sha256"]
        assert meta["otok_model"] == "otok-tiny" and meta["otok_graph"] == graph and meta["otok_version"]
        assert [i.name for i in model.graph.input] == entry["inputs"]
        assert [o.name for o in model.graph.output] == entry["outputs"]
        state = model.graph.input[1].type.tensor_type.shape.dim if graph.endswith("video") else None
        if state is not None:  # (L, batch, grid_h, grid_w, heads, W-1, hd): only batch and grid vary
            assert [d.dim_param for d in state][1:4] == ["batch", "grid_h", "grid_w"]
            assert all(d.dim_value > 0 for i, d in enumerate(state) if i not in (1, 2, 3))
    assert TokenizerConfig.from_dict(manifest["config"]) == tok.config


def _graph(nodes, inputs, outputs, initializers=(), opset=17):
    from onnx import helper

    graph = helper.make_graph(nodes, "probe", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_allowlist_rejects_an_unsupported_op():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = _graph([helper.make_node("Unique", ["x"], ["y"])], [x], [y])
    assert [p.op for p in find_problems(model)] == ["Unique"]
    with pytest.raises(UnsupportedOpError, match="Unique"):
        check_graph(model)


def test_allowlist_checks_restrictions_types_and_opset():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    starts = helper.make_tensor("starts", TensorProto.INT64, [1], [0])
    ends = helper.make_tensor("ends", TensorProto.INT64, [1], [2])
    dynamic_axes = helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"])
    model = _graph([dynamic_axes], [x, axes], [y], [starts, ends])
    with pytest.raises(UnsupportedOpError, match="axes"):
        check_graph(model)

    d = helper.make_tensor_value_info("d", TensorProto.DOUBLE, [2])
    out = helper.make_tensor_value_info("out", TensorProto.DOUBLE, None)
    with pytest.raises(UnsupportedOpError, match="DOUBLE"):
        check_graph(_graph([helper.make_node("Relu", ["d"], ["out"])], [d], [out]))
    f = helper.make_tensor_value_info("f", TensorProto.FLOAT, [2])
    g = helper.make_tensor_value_info("g", TensorProto.FLOAT, None)
    with pytest.raises(UnsupportedOpError, match="opset 8"):
        check_graph(_graph([helper.make_node("Relu", ["f"], ["g"])], [f], [g], opset=8))
    check_graph(_graph([helper.make_node("Relu", ["f"], ["g"])], [f], [g]))  # and a clean graph passes


@pytest.mark.parametrize("h, w", [(4, 4), (8, 4), (8, 12), (16, 8)])
def test_window_mask_takes_traced_shifts(h, w):
    """The export passes shifts as tensors (0 where an axis holds one window): same mask as ints."""
    window, shift, cpu = 4, 2, torch.device("cpu")
    shift_h, shift_w = (shift if h > window else 0), (shift if w > window else 0)
    expected = shifted_window_mask(h, w, window, shift_h, shift_w, cpu)
    traced = shifted_window_mask(h, w, window, torch.tensor(shift_h), torch.tensor(shift_w), cpu)
    assert torch.equal(traced, expected)
    assert not shifted_window_mask(h, w, window, 0, 0, cpu).any()  # no shift: no mask


# ----- ONNX Runtime against PyTorch ----------------------------------------------------------------
CASES = [  # model, batch, height, width, frames, gop
    ("vq", 1, 40, 72, 1, None),  # an image
    ("vq", 3, 40, 72, 23, None),  # padded last group, two segments
    ("vq", 2, 32, 32, 9, None),  # one window per axis: shifted blocks do not shift
    ("fsq", 2, 72, 40, 23, None),
    ("kl", 3, 40, 72, 23, None),
    ("kl", 1, 32, 32, 1, None),
    ("deep", 1, 32, 64, 117, 30),  # 30 steps in one segment: the window slides 27 times
    ("deep", 1, 64, 32, 13, 2),  # a segment every 2 steps
]


@pytest.mark.parametrize("name, batch, height, width, frames, gop", CASES)
def test_onnxruntime_streams_what_pytorch_streams(exported, name, batch, height, width, frames, gop):
    tok, eng, _ = exported(name)
    video = random_video(batch, frames, height, width)
    reference = tok.encode(video, gop=gop)
    ours = eng.encode(video, gop=gop)
    assert ours.shape[1] == num_steps(frames, 4, gop or tok.config.gop)
    assert_tokens_agree(ours, reference, tok.config.discrete)

    kwargs = {"frames": frames, "height": height, "width": width, "gop": gop}
    decoded = eng.decode(reference, **kwargs)
    expected = tok.decode(reference, **kwargs)
    assert decoded.shape == video.shape
    torch.testing.assert_close(decoded, expected, atol=1e-3, rtol=0)


def test_uneven_pushes_and_state_bytes(exported):
    tok, eng, _ = exported("vq")
    video = random_video(2, 14, 40, 72)
    stream = eng.stream_encoder(2, 40, 72)
    grids, start = [], 0
    for n in [3, 0, 1, 5, 2, 3]:
        grids += stream.push(video[:, :, start : start + n])
        start += n
    grids += stream.flush()
    assert_tokens_agree(torch.stack(grids, 1), tok.encode(video), True)

    dec, torch_dec = eng.stream_decoder(2, 40, 72), tok.stream_decoder(2, 40, 72)
    for s, grid in enumerate(grids[:3]):
        frames = dec.push(grid)
        assert frames.shape == (2, 3, 1 if s == 0 else 4, 40, 72)
        torch.testing.assert_close(frames, torch_dec.push(grid), atol=1e-3, rtol=0)
    assert dec.state_nbytes() == torch_dec.state_nbytes()  # the same bounded state, stacked


@pytest.mark.parametrize("name", ["vq", "fsq"])
def test_engines_choose_the_tokens_pytorch_chooses(exported, name, tmp_path):
    tok, eng, folder = exported(name)
    video = random_video(1, 9, 40, 72)
    tau = 0.3 if name == "vq" else 0.1
    reference = tok.encode(video, rdo=tau)
    assert (reference != tok.encode(video)).any()
    assert_tokens_agree(eng.encode(video, rdo=tau), reference, True)
    if name == "vq":  # an engine folder without its code table (an older export) says what to do
        manifest = json.loads((folder / "manifest.json").read_text())
        old = tmp_path / "old"
        shutil.copytree(folder, old)
        del manifest["codes"]
        (old / "manifest.json").write_text(json.dumps(manifest))
        (old / "codes.safetensors").unlink()
        with pytest.raises(EngineError, match="re-export it"):
            load_engine(old, backend="onnx").encode(video, rdo=tau)


def test_stand_in_has_what_the_pipeline_uses(exported):
    tok, eng, _ = exported("kl")
    assert eng.config == tok.config and eng.weights_sha256() == tok.weights_sha256()
    assert eng.grid_size(46, 70) == tok.grid_size(46, 70)
    assert eng.device == torch.device("cpu") and eng.quantizer.code_dim == tok.quantizer.code_dim
    with pytest.raises(ValueError, match="float latents"):
        eng.stream_decoder(1, 40, 72).push(torch.zeros(1, 8, 8, dtype=torch.int64))


def test_pipeline_encodes_with_the_engine(exported, tmp_path):
    av = pytest.importorskip("av")  # noqa: F841
    from otok.bitstream import OtokReader
    from otok.tools.pipeline import encode_file
    from otok.tools.video_io import VideoWriter

    tok, eng, _ = exported("vq")
    src = tmp_path / "clip.mp4"
    writer = VideoWriter(src, 70, 46, Fraction(25), codec="h264")
    yy, xx = np.mgrid[0:46, 0:70]
    for t in range(6):
        writer.write(np.stack([(xx * 3 + 7 * t) % 256, (yy * 5) % 256, (xx + yy + t) % 256], -1).astype(np.uint8))
    writer.close()
    grids = {}
    for label, model in (("torch", tok), ("onnx", eng)):
        encode_file(src, tmp_path / f"{label}.otok", coder="raw", tokenizer=model)
        reader = OtokReader(tmp_path / f"{label}.otok")
        assert reader.header.weights_sha256.hex() == tok.weights_sha256()
        grids[label] = np.stack(list(reader))
        reader.close()
    assert (grids["torch"] == grids["onnx"]).mean() >= 0.999


# ----- errors ---------------------------------------------------------------------------------------
def test_hash_mismatch_is_a_clear_error(exported, tmp_path):
    tok, _, folder = exported("vq")
    other = tiny("vq", seed=1).weights_sha256()
    with pytest.raises(EngineError, match=f"weights {tok.weights_sha256()[:12]}.*the file has weights {other[:12]}"):
        load_engine(folder, expect_sha256=other, expect_source="the file")
    load_engine(folder, expect_sha256=tok.weights_sha256())

    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for path in folder.iterdir():
        (tampered / path.name).write_bytes(path.read_bytes())
    manifest = json.loads((tampered / "manifest.json").read_text())
    manifest["weights_sha256"] = other
    (tampered / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EngineError, match="re-export"):
        load_engine(tampered)


def test_missing_or_broken_engine_folders(tmp_path):
    with pytest.raises(EngineError, match="does not exist"):
        load_engine(tmp_path / "nowhere")
    with pytest.raises(EngineError, match="manifest.json"):
        load_engine(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(EngineError, match="not a valid"):
        load_engine(tmp_path)
    with pytest.raises(ValueError, match="backend"):
        load_engine(tmp_path, backend="tflite")


def test_opset_outside_the_supported_range(tmp_path):
    with pytest.raises(ValueError, match="17-20"):
        export_onnx(tiny(), tmp_path, opset=21)


def test_tensorrt_missing_says_how_to_install(exported):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is installed")
    from otok.export import build_trt_engines

    _, _, folder = exported("vq")
    with pytest.raises(ImportError, match=r"pip install 'otok-codec\[gpu\]'"):
        build_trt_engines(folder, folder / "trt")
