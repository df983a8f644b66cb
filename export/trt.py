"""TensorRT 10: build serialized engines from the ONNX step graphs, and run them with device-resident state.

    from otok.export import build_trt_engines, load_engine
    build_trt_engines("engines/otok-s", "engines/otok-s-trt", precision="fp16",
                      min_shape=(1, 64, 64), opt_shape=(1, 256, 256), max_shape=(4, 1088, 1920))
    tok = load_engine("engines/otok-s-trt", backend="trt", device="cuda")

Shapes are (batch, padded height, padded width) in pixels; every other input (tokens, state) follows from
them, so one optimization profile per graph covers them all. At run time each step binds torch CUDA
tensors by address and enqueues on the current torch CUDA stream (`execute_async_v3`): no host copy and
no synchronization per step; the state a step writes is the next step's input, swapped by reference.
`tensorrt` is imported lazily (install: pip install 'otok-codec[gpu]').
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from torch import Tensor

from otok.codec import TokenizerConfig

from .onnx_export import GRAPHS, MANIFEST
from .runtime import EngineError, allocate_outputs, io_shapes, read_manifest

PRECISIONS = ("fp32", "fp16", "bf16")
ENGINE_SUFFIX = ".engine"


def import_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise ImportError(
            "the TensorRT backend needs the tensorrt package (TensorRT 10) and a CUDA GPU: "
            "pip install 'otok-codec[gpu]'  (or: pip install tensorrt)"
        ) from None
    if int(tensorrt.__version__.split(".")[0]) < 10:
        raise ImportError(f"otok needs TensorRT 10 or newer, found {tensorrt.__version__}")
    return tensorrt


def profile_shapes(config: TokenizerConfig, graph: str, batch: int, height: int, width: int) -> dict[str, tuple]:
    """Input shapes of `graph` for frames of (batch, height, width), padded as the streams pad them."""
    m = config.pad_multiple
    h, w = -(-height // m) * m // config.patch, -(-width // m) * m // config.patch
    shapes = io_shapes(config, graph, batch, h, w)
    code = "tokens" if config.discrete else "latents"
    names = {"encoder_image": ["pixels"], "encoder_video": ["pixels", "keys", "values", "valid"],
             "decoder_image": [code], "decoder_video": [code, "keys", "values", "valid"]}[graph]
    return {name: shapes[name] for name in names}


def build_trt_engines(
    onnx_dir: str | os.PathLike, out_dir: str | os.PathLike, precision: str = "fp32",
    min_shape: tuple[int, int, int] = (1, 64, 64), opt_shape: tuple[int, int, int] = (1, 256, 256),
    max_shape: tuple[int, int, int] = (4, 1088, 1920), workspace_gib: float = 4.0,
    fp32_quantizer: bool = True,
) -> dict:
    """Build one serialized engine per step graph of an `export_onnx` folder into out_dir.

    precision: fp32, fp16 or bf16 (reduced precision is allowed, not forced, so TensorRT keeps fp32 where
    it is faster or required). fp32_quantizer: keep the layer norms and the quantizer (the nearest-code
    search that picks tokens) in fp32 under fp16/bf16, so tokens flip only at true near-ties.
    Shapes: (batch, height, width) in pixels, any size; they are padded like the streams pad frames.
    Returns the manifest written to out_dir (the ONNX manifest plus a "tensorrt" section).
    """
    trt = import_tensorrt()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    onnx_dir, out = Path(onnx_dir), Path(out_dir)
    manifest = read_manifest(onnx_dir)
    config = TokenizerConfig.from_dict(manifest["config"])
    out.mkdir(parents=True, exist_ok=True)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    engines = {}
    for graph in GRAPHS:
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_dir / manifest["graphs"][graph]["file"])):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f"TensorRT cannot parse {graph}: {errors}")
        builder_config = builder.create_builder_config()
        builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
        if precision != "fp32":
            builder_config.set_flag(trt.BuilderFlag.FP16 if precision == "fp16" else trt.BuilderFlag.BF16)
            if fp32_quantizer:
                _keep_fp32(trt, network, builder_config)
        profile = builder.create_optimization_profile()
        lows, opts, highs = (profile_shapes(config, graph, *s) for s in (min_shape, opt_shape, max_shape))
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            if -1 in tuple(tensor.shape):  # static inputs (valid) take no profile
                name = tensor.name
                profile.set_shape(name, lows[name], opts[name], highs[name])
        builder_config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, builder_config)
        if serialized is None:
            raise EngineError(f"TensorRT failed to build the {graph} engine (see the log above)")
        path = out / f"{graph}{ENGINE_SUFFIX}"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(bytes(serialized))
        os.replace(tmp, path)
        engines[graph] = {**manifest["graphs"][graph], "engine": path.name}
    trt_manifest = {
        **manifest,
        "graphs": engines,
        "tensorrt": {
            "version": trt.__version__, "precision": precision, "fp32_quantizer": fp32_quantizer,
            "min_shape": list(min_shape), "opt_shape": list(opt_shape), "max_shape": list(max_shape),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
    }
    # keep the ONNX graphs beside the engines, for rebuilding on another GPU, the code table, and the ctx
    # coder's prior tables (model.prior and those kept from earlier releases), which the files reference
    priors = sorted(p.name for p in onnx_dir.glob("*.prior"))
    for name in ([manifest["graphs"][g]["file"] for g in GRAPHS] + ([manifest["codes"]] if "codes" in manifest else [])
                 + priors):
        source = onnx_dir / name
        if not source.is_file():
            raise EngineError(f"{source} is missing; re-export {onnx_dir} with `otok export onnx`")
        if source.resolve() != (out / source.name).resolve():
            shutil.copyfile(source, out / source.name)
    (out / MANIFEST).write_text(json.dumps(trt_manifest, indent=2) + "\n")
    return trt_manifest


def _keep_fp32(trt, network, builder_config) -> None:
    """Pin normalization layers and the quantizer's layers to fp32 (precision constraints are preferred,
    not obeyed, so TensorRT can still fall back where no fp32 kernel exists)."""
    builder_config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.NORMALIZATION or "/quantize/" in layer.name:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                if layer.get_output_type(j) in (trt.float16, trt.bfloat16):
                    layer.set_output_type(j, trt.float32)


class TrtRunner:
    """The four engines, one execution context each, enqueued on torch's current CUDA stream."""

    def __init__(self, engine_dir: Path, manifest: dict, device: torch.device) -> None:
        trt = import_tensorrt()
        if device.type != "cuda" or not torch.cuda.is_available():
            raise EngineError("the TensorRT backend needs --device cuda and a CUDA GPU that PyTorch sees")
        if "tensorrt" not in manifest:
            raise EngineError(f"{engine_dir} holds no TensorRT engines; build them with `otok export trt`")
        self.device = device
        self.config = TokenizerConfig.from_dict(manifest["config"])
        self._trt = trt
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engines, self.contexts, self.inputs, self.outputs = {}, {}, {}, {}
        with torch.cuda.device(device):
            for graph in GRAPHS:
                path = engine_dir / manifest["graphs"][graph]["engine"]
                if not path.is_file():
                    raise EngineError(f"{path} is missing; re-run `otok export trt`")
                engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
                if engine is None:
                    raise EngineError(f"{path} does not deserialize: built by another TensorRT version or "
                                      "for another GPU? Rebuild it with `otok export trt`")
                names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
                is_input = lambda n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT  # noqa: E731
                self.engines[graph] = engine
                self.contexts[graph] = engine.create_execution_context()
                self.inputs[graph] = [n for n in names if is_input(n)]
                self.outputs[graph] = [n for n in names if not is_input(n)]

    def run(self, graph: str, feeds: dict[str, Tensor]) -> dict[str, Tensor]:
        context = self.contexts[graph]
        for name in self.inputs[graph]:
            tensor = feeds[name]
            if not tensor.is_contiguous() or tensor.device != self.device:
                tensor = feeds[name] = tensor.to(self.device).contiguous()
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        outputs = allocate_outputs(self.config, graph, feeds, self.outputs[graph], self.device)
        for name, tensor in outputs.items():
            context.set_tensor_address(name, tensor.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not context.execute_async_v3(stream.cuda_stream):
            raise EngineError(f"TensorRT failed to enqueue {graph} for inputs "
                              f"{ {n: tuple(t.shape) for n, t in feeds.items()} } (outside the engine's profile?)")
        return outputs  # ordered on `stream`: torch work queued after this sees the engine's results
