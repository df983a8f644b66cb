"""Export: the ONNX graphs pass the TensorRT allowlist, and ONNX Runtime streams what PyTorch streams.

Tokens must agree except at near-ties of the nearest-code search (>= 99.9% identical), decoded frames
within 1e-3, for VQ, FSQ and KL models, frame sizes with and without shifted windows, batch 1 and 3, and
1 to 30 steps (several segments, and one long segment that slides the temporal window). GPU tests
(TensorRT, ONNX Runtime CUDA) are marked `gpu`. TensorRT is not installed here: its builder configuration
for majors 10 and 11 is checked against a fake `tensorrt` module, and the fp16 graphs an 11 build parses
are run by ONNX Runtime.
"""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

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
    "parts": ("vq", {"refine": 8, "refine_blocks": 1, "upsample": 16, "tube_refine": 8}),  # the decoder's convolutions, trained
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """model name -> (PyTorch tokenizer, ONNX Runtime tokenizer, export folder), exported once."""
    cache = {}

    def get(name):
        if name not in cache:
            quantizer, changes = MODELS[name]
            tok = tiny(quantizer, **changes)
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                for last in ("refine.conv_out", "refine.wide_out", "upsample.conv_out", "tube_refine.conv_out"):
                    if changes.get(last.split(".")[0]):  # they start at zero (the identity): give them something
                        tok.decoder.get_submodule(last).weight.normal_(std=0.05)
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
@pytest.mark.parametrize("name", ["vq", "fsq", "kl", "parts"])
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
    ("parts", 2, 40, 72, 9, None),
]


@pytest.mark.parametrize("name, batch, height, width, frames, gop", CASES)
def test_onnxruntime_streams_what_pytorch_streams(exported, name, batch, height, width, frames, gop):
    tok, eng, _ = exported(name)
    video = random_video(batch, frames, height, width)
    reference = tok.encode(video, gop=gop)
    ours = eng.encode(video, gop=gop)
    assert ours.shape[1] == num_steps(frames, gop or tok.config.gop, 4)
    assert_tokens_agree(ours, reference, tok.config.discrete)

    kwargs = {"frames": frames, "height": height, "width": width, "gop": gop}
    decoded = eng.decode(reference, **kwargs)
    expected = tok.decode(reference, **kwargs)
    assert decoded.shape == video.shape
    torch.testing.assert_close(decoded, expected, atol=1e-3, rtol=0)


@pytest.mark.parametrize("name, tile", [("vq", 32), ("parts", 64), ("kl", 32)])
def test_engines_at_a_tile_size_stream_what_they_stream_whole(exported, name, tile):
    """Engines tiled (each tile's crop through the step graphs, `otok.codec.tiling.engine_crops`, a state per
    crop) give the whole-frame engine's tokens and, within rounding, its pixels; odd size, two segments."""
    tok, eng, _ = exported(name)
    video = random_video(1, 11, 72, 140)
    whole = eng.encode(video, gop=2)
    tiled = eng.encode(video, gop=2, tile=tile)
    if tok.config.discrete:
        assert torch.equal(tiled, whole)
    else:
        torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)
    assert_tokens_agree(tiled, tok.encode(video, gop=2, tile=tile), tok.config.discrete)
    kwargs = {"frames": 11, "height": 72, "width": 140, "gop": 2}
    torch.testing.assert_close(eng.decode(whole, **kwargs, tile=tile), eng.decode(whole, **kwargs), atol=1e-5, rtol=1e-5)
    stream = eng.stream_encoder(1, 72, 140, tile=tile)
    assert len(stream.cache.states) == len(stream.tiles.rects()) > 1


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
    for s, grid in enumerate(grids[:4]):
        frames = dec.push(grid)
        assert frames.shape == (2, 3, 1 if s == 0 else 4, 40, 72)
        torch.testing.assert_close(frames, torch_dec.push(grid), atol=1e-3, rtol=0)
    # the same bounded state, stacked, once the ring is full (PyTorch stores no slot before a step fills it)
    assert dec.state_nbytes() == torch_dec.state_nbytes()


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
    from otok.tools.encode import encode_file
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
    with pytest.raises(ImportError, match=r"pip install tensorrt \(in a checkout of otok: pip install -e '\.\[gpu\]'\)"):
        build_trt_engines(folder, folder / "trt")


# ----- TensorRT 10 and 11: the builder configuration, against a fake `tensorrt` module -------------------
# TensorRT is not installed where these tests run, so no engine is built here. The fake records what
# build_trt_engines asks of the API and has only the members each major documents: BuilderFlag.FP16/BF16
# and the precision-constraint flags exist on 10 only, EXPLICIT_BATCH on 10 only, and a strongly typed
# network refuses per-layer precision. Enum values follow the headers (10: kEXPLICIT_BATCH 0,
# kSTRONGLY_TYPED 1; 11: kSTRONGLY_TYPED 0).
class _Enum:
    def __init__(self, **members):
        self.__dict__.update(members)


def fake_tensorrt(version: str):
    import types

    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.float32, trt.float16, trt.bfloat16, trt.int32 = "float32", "float16", "bfloat16", "int32"
    if major <= 10:
        trt.NetworkDefinitionCreationFlag = _Enum(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
        trt.BuilderFlag = _Enum(FP16=0, INT8=1, TF32=7, BF16=17, OBEY_PRECISION_CONSTRAINTS=10,
                                PREFER_PRECISION_CONSTRAINTS=11)
    else:
        trt.NetworkDefinitionCreationFlag = _Enum(STRONGLY_TYPED=0, PREFER_AOT_PYTHON_PLUGINS=1,
                                                  PREFER_JIT_PYTHON_PLUGINS=2)
        trt.BuilderFlag = _Enum(TF32=7, REFIT=8)
    trt.MemoryPoolType = _Enum(WORKSPACE="WORKSPACE")
    trt.LayerType = _Enum(NORMALIZATION="NORMALIZATION", OTHER="OTHER")
    trt.record = {"networks": [], "configs": [], "parsed": [], "built": 0}

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    class Layer:
        def __init__(self, network, name, kind):
            self.network, self.name, self.type, self.num_outputs = network, name, kind, 1
            self.pinned, self._precision = {}, trt.float32

        def _settable(self):
            if self.network.strongly_typed:
                raise RuntimeError("setting layer precision is not allowed in a strongly typed network")

        @property
        def precision(self):
            return self._precision

        @precision.setter
        def precision(self, value):
            self._settable()
            self._precision = value

        def get_output_type(self, j):
            return self.pinned.get(j, trt.float16)

        def set_output_type(self, j, value):
            self._settable()
            self.pinned[j] = value

    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class Network:
        def __init__(self, flags):
            self.flags = flags
            strong = 1 << trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED
            self.strongly_typed = major >= 11 or bool(flags & strong)
            self.inputs, self.layers = [], []

        num_inputs = property(lambda self: len(self.inputs))
        num_layers = property(lambda self: len(self.layers))
        get_input = lambda self, i: self.inputs[i]  # noqa: E731
        get_layer = lambda self, i: self.layers[i]  # noqa: E731

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse_from_file(self, path):
            model = onnx.load(path)
            trt.record["parsed"].append((path, model))
            for v in model.graph.input:
                dims = tuple(d.dim_value if d.dim_value else -1 for d in v.type.tensor_type.shape.dim)
                self.network.inputs.append(Tensor(v.name, dims))
            for node in model.graph.node:
                kind = trt.LayerType.NORMALIZATION if node.op_type == "LayerNormalization" else trt.LayerType.OTHER
                self.network.layers.append(Layer(self.network, node.name, kind))
            return True

    class Config:
        def __init__(self):
            self.flags, self.pools, self.profiles = set(), {}, []

        def set_flag(self, flag):
            self.flags.add(flag)

        def set_memory_pool_limit(self, pool, size):
            self.pools[pool] = size

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, low, opt, high):
            self.shapes[name] = (tuple(low), tuple(opt), tuple(high))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            network = Network(flags)
            trt.record["networks"].append(network)
            return network

        def create_builder_config(self):
            config = Config()
            trt.record["configs"].append(config)
            return config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            trt.record["built"] += 1
            return b"fake engine"

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    return trt


def _fake_build(monkeypatch, folder, out, version, precision):
    import sys

    from otok.export.trt import build_trt_engines

    trt = fake_tensorrt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    manifest = build_trt_engines(folder, out, precision=precision, min_shape=(1, 32, 32), opt_shape=(1, 64, 64),
                                 max_shape=(2, 128, 128))
    return trt, manifest


FLOAT, FLOAT16, BFLOAT16 = 1, 10, 16  # onnx.TensorProto element types


def _float_types(model):
    return {t.data_type for t in model.graph.initializer} - {6, 7}  # less INT32, INT64


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_tensorrt_10_builds_weakly_typed_with_precision_flags(exported, tmp_path, monkeypatch, precision):
    _, _, folder = exported("vq")
    trt, manifest = _fake_build(monkeypatch, folder, tmp_path / "trt", "10.13.3.9", precision)
    rec = trt.record
    assert rec["built"] == 4 and [n.flags for n in rec["networks"]] == [0] * 4  # no EXPLICIT_BATCH: deprecated
    assert [Path(p).name for p, _ in rec["parsed"]] == [f"{g}.onnx" for g in
                                                        ("encoder_image", "encoder_video", "decoder_image",
                                                         "decoder_video")]
    assert all(Path(p).parent == folder for p, _ in rec["parsed"])  # the fp32 graphs themselves
    flags = {"fp32": set(), "fp16": {0, 11}, "bf16": {17, 11}}[precision]  # + PREFER_PRECISION_CONSTRAINTS
    assert all(c.flags == flags for c in rec["configs"])
    assert all(c.pools == {"WORKSPACE": 4 << 30} and len(c.profiles) == 1 for c in rec["configs"])
    pinned = [layer for n in rec["networks"] for layer in n.layers if layer.precision == trt.float32
              and (layer.type == "NORMALIZATION" or "/quantize/" in layer.name)]
    layers = [layer for n in rec["networks"] for layer in n.layers]
    if precision == "fp32":
        assert all(not layer.pinned for layer in layers)
    else:  # layer norms and the quantizer pinned to fp32, and nothing else
        assert pinned and all(layer.pinned == {0: trt.float32} for layer in pinned)
        assert all(not layer.pinned for layer in layers if layer not in pinned)
        assert any(layer.type == "NORMALIZATION" for layer in pinned)
        assert any("/quantize/" in layer.name for layer in pinned)
    section = manifest["tensorrt"]
    assert (section["major"], section["typing"], section["precision"]) == (10, "weak", precision)
    assert all("built_from" not in g for g in manifest["graphs"].values())
    assert (tmp_path / "trt" / "encoder_video.engine").read_bytes() == b"fake engine"


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_tensorrt_11_builds_strongly_typed_from_reduced_precision_graphs(exported, tmp_path, monkeypatch, precision):
    _, _, folder = exported("vq")
    out = tmp_path / "trt"
    trt, manifest = _fake_build(monkeypatch, folder, out, "11.3.0.99", precision)
    rec = trt.record
    strongly_typed = 1 << 0  # NetworkDefinitionCreationFlag.STRONGLY_TYPED is 0 on 11
    assert rec["built"] == 4 and [n.flags for n in rec["networks"]] == [strongly_typed] * 4
    assert all(c.flags == set() for c in rec["configs"])  # no precision flag: 11 has none
    assert all(c.pools == {"WORKSPACE": 4 << 30} and len(c.profiles) == 1 for c in rec["configs"])
    assert all(layer._precision == trt.float32 and not layer.pinned for n in rec["networks"] for layer in n.layers)
    section = manifest["tensorrt"]
    assert (section["major"], section["typing"], section["precision"]) == (11, "strong", precision)
    for path, parsed in rec["parsed"]:
        path = Path(path)
        original = onnx.load(str(folder / (path.name.split(".")[0] + ".onnx")))
        io = lambda m: [(v.name, v.type.tensor_type.elem_type) for v in [*m.graph.input, *m.graph.output]]  # noqa: E731
        assert io(parsed) == io(original)  # the runtime binds the same fp32/int32 buffers
        check_graph(parsed)  # the cast graph passes the allowlist too
        if precision == "fp32":
            assert path.parent == folder and _float_types(parsed) == {FLOAT}
            continue
        assert path.parent == out and path.name.endswith(f".{precision}.onnx")
        assert manifest["graphs"][path.name.split(".")[0]]["built_from"] == path.name
        low = FLOAT16 if precision == "fp16" else BFLOAT16
        readers = {i: n for n in parsed.graph.node for i in n.input}
        for init in parsed.graph.initializer:  # weights are low, but layer norms' and the quantizer's stay fp32
            if init.data_type in (FLOAT, low):
                reader = readers[init.name]
                fp32_reader = reader.op_type == "LayerNormalization" or "/quantize/" in reader.name
                assert init.data_type == (FLOAT if fp32_reader else low), (init.name, reader.name)
        assert sum(i.data_type == low for i in parsed.graph.initializer) >= 10
        onnx.checker.check_model(parsed, full_check=True)


def test_tensorrt_versions(exported, tmp_path, monkeypatch):
    import sys

    from otok.export.trt import import_tensorrt

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("8.6.1"))
    with pytest.raises(ImportError, match="TensorRT 10 or 11, found 8.6.1"):
        import_tensorrt()
    _, _, folder = exported("vq")
    with pytest.warns(RuntimeWarning, match="trying 12.0.0 as TensorRT 11"):
        trt, manifest = _fake_build(monkeypatch, folder, tmp_path / "trt12", "12.0.0", "fp16")
    assert manifest["tensorrt"]["typing"] == "strong"

    # an engine folder built by one major does not load under another: a clear error, before any GPU check
    _fake_build(monkeypatch, folder, tmp_path / "trt10", "10.13.3.9", "fp32")
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("11.3.0.99"))
    with pytest.raises(EngineError, match=r"built by TensorRT 10\.13\.3\.9.*TensorRT 11\.3\.0\.99 is installed"):
        load_engine(tmp_path / "trt10", backend="trt", device="cuda")


def test_fp16_cast_graphs_stream_what_pytorch_streams(exported, tmp_path):
    """The fp16 graphs a TensorRT 11 build parses, run here by ONNX Runtime on the CPU."""
    from otok.export.precision import cast_graph

    tok, _, folder = exported("vq")
    half = tmp_path / "fp16"
    shutil.copytree(folder, half)
    for path in half.glob("*.onnx"):
        onnx.save(cast_graph(onnx.load(str(path)), "fp16"), str(path))
    eng = load_engine(half, backend="onnx")
    video = random_video(2, 9, 40, 72)
    reference = tok.encode(video)
    tokens = eng.encode(video)
    assert (tokens == reference).double().mean().item() >= 0.98  # as the GPU tests' fp16 engines
    kwargs = {"frames": 9, "height": 40, "width": 72}
    torch.testing.assert_close(eng.decode(reference, **kwargs), tok.decode(reference, **kwargs), atol=2e-2, rtol=0)
