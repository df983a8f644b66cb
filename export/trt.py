"""TensorRT 10 and 11: build serialized engines from the ONNX step graphs, and run them with device state.

    from otok.export import build_trt_engines, load_engine
    build_trt_engines("engines/otok-s", "engines/otok-s-trt", precision="fp16",
                      min_shape=(1, 64, 64), opt_shape=(1, 256, 256), max_shape=(4, 1088, 1920))
    tok = load_engine("engines/otok-s-trt", backend="trt", device="cuda")

Shapes are (batch, padded height, padded width) in pixels; every other input (tokens, state) follows from
them, so one optimization profile per graph covers them all. At run time each step binds torch CUDA
tensors by address and enqueues on the current torch CUDA stream (`execute_async_v3`): no host copy and
no synchronization per step; the state a step writes is the next step's input, swapped by reference.
`tensorrt` is imported lazily (install: pip install tensorrt, or in a checkout pip install -e '.[gpu]').

Majors (the sources are named in export/README.md). What differs between them is kept in the few
functions below keyed on the major version (`build_plan`); the rest is the API both share: Builder,
create_network, OnnxParser.parse_from_file, create_builder_config, set_memory_pool_limit(WORKSPACE),
optimization profiles, build_serialized_network, Runtime.deserialize_cuda_engine, and the name-based
tensor API (num_io_tensors, get_tensor_name/mode/dtype, set_input_shape, set_tensor_address,
execute_async_v3), which replaced bindings in 10 and is not on the part of 11's removed-API list read.
- 10: weakly typed network (flags 0: explicit batch is the only mode, and EXPLICIT_BATCH is deprecated
  and ignored); fp16/bf16 by BuilderFlag.FP16/BF16 over the fp32 graph, with layer norms and the
  quantizer pinned to fp32 (PREFER_PRECISION_CONSTRAINTS, layer.precision).
- 11: every network is strongly typed: the precision flags, PREFER/OBEY_PRECISION_CONSTRAINTS and
  per-layer precision are removed. The network is requested STRONGLY_TYPED (11.0 documents the flag as
  accepted and ignored, strong typing being always on), and fp16/bf16 engines are built from an fp16/bf16
  copy of each graph (`precision.cast_graph`: same fp32 layer norms and quantizer, same I/O types).
A newer major than 11 is tried as 11, with a warning.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from otok.codec import TokenizerConfig
from otok.codec.priors import copy_prior_files, engine_prior_files

from .onnx_export import GRAPHS, MANIFEST
from .runtime import EngineError, allocate_outputs, io_shapes, read_manifest

PRECISIONS = ("fp32", "fp16", "bf16")
ENGINE_SUFFIX = ".engine"
MAJORS = (10, 11)  # the TensorRT majors this module is written for


def tensorrt_major(trt) -> int:
    """The major version of an imported tensorrt module (from `tensorrt.__version__`, e.g. "11.3.0.99")."""
    return int(str(trt.__version__).split(".")[0])


def import_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise ImportError(
            "the TensorRT backend needs the tensorrt package (TensorRT 10 or 11) and a CUDA GPU: "
            "pip install tensorrt (in a checkout of otok: pip install -e '.[gpu]')"
        ) from None
    major = tensorrt_major(tensorrt)
    if major < MAJORS[0]:
        raise ImportError(f"otok needs TensorRT 10 or 11, found {tensorrt.__version__}")
    if major > MAJORS[-1]:
        warnings.warn(f"otok's TensorRT backend is written for TensorRT 10 and 11; trying {tensorrt.__version__} "
                      "as TensorRT 11", RuntimeWarning, stacklevel=2)
    return tensorrt


# ----- what differs between majors ------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildPlan:
    """How one major builds an engine of a given precision."""

    major: int
    strongly_typed: bool  # request a strongly typed network (precision comes from the graph's types)
    cast_graph: bool  # build from an fp16/bf16 copy of the fp32 graph (precision.cast_graph)
    precision_flag: str | None  # the BuilderFlag that allows reduced precision (weak typing), or None
    pin_fp32_layers: bool  # pin layer norms and the quantizer to fp32 by layer precision (weak typing)


def build_plan(major: int, precision: str, fp32_quantizer: bool = True) -> BuildPlan:
    reduced = precision != "fp32"
    if major <= 10:  # TensorRT 10: weak typing, precision by builder flag
        flag = {"fp16": "FP16", "bf16": "BF16"}.get(precision)
        return BuildPlan(major, strongly_typed=False, cast_graph=False, precision_flag=flag,
                         pin_fp32_layers=reduced and fp32_quantizer)
    # TensorRT 11 (and, untested, later): strong typing only, precision from the graph
    return BuildPlan(major, strongly_typed=True, cast_graph=reduced, precision_flag=None, pin_fp32_layers=False)


def network_flags(trt, plan: BuildPlan) -> int:
    """The `create_network` flags: 0 on 10 (explicit batch is implicit there), STRONGLY_TYPED on 11."""
    if plan.strongly_typed:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def configure_precision(trt, plan: BuildPlan, network, builder_config) -> None:
    """Weak typing (10): allow the reduced precision, and pin what must stay fp32. Strong typing (11):
    nothing to set; the parsed graph's types are the precision."""
    if plan.precision_flag is not None:
        builder_config.set_flag(getattr(trt.BuilderFlag, plan.precision_flag))
    if plan.pin_fp32_layers:
        _keep_fp32(trt, network, builder_config)


def graph_to_parse(onnx_path: Path, out: Path, precision: str, plan: BuildPlan, fp32_quantizer: bool) -> Path:
    """The ONNX file the parser reads: the exported fp32 graph, or (strong typing, fp16/bf16) a cast copy
    of it written beside the engines as `<graph>.<precision>.onnx`."""
    if not plan.cast_graph:
        return onnx_path
    import onnx

    from .precision import cast_graph

    path = out / f"{onnx_path.stem}.{precision}.onnx"
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(cast_graph(onnx.load(str(onnx_path)), precision, fp32_quantizer), str(tmp))
    os.replace(tmp, path)
    return path


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

    precision: fp32, fp16 or bf16. TensorRT 10 allows the reduced precision (not forced: it keeps fp32 where
    faster or required); TensorRT 11 builds it from an fp16/bf16 copy of each graph (strong typing).
    fp32_quantizer: keep the layer norms and the quantizer (the nearest-code search that picks tokens) in
    fp32 under fp16/bf16, so tokens flip only at true near-ties (on 11 the layer norms stay fp32 either way).
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
    plan = build_plan(tensorrt_major(trt), precision, fp32_quantizer)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    engines = {}
    for graph in GRAPHS:
        network = builder.create_network(network_flags(trt, plan))
        parser = trt.OnnxParser(network, logger)
        source = graph_to_parse(onnx_dir / manifest["graphs"][graph]["file"], out, precision, plan, fp32_quantizer)
        if not parser.parse_from_file(str(source)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f"TensorRT {trt.__version__} cannot parse {source.name}: {errors}")
        builder_config = builder.create_builder_config()
        builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
        configure_precision(trt, plan, network, builder_config)
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
        if source.name != manifest["graphs"][graph]["file"]:
            engines[graph]["built_from"] = source.name
    trt_manifest = {
        **manifest,
        "graphs": engines,
        "tensorrt": {
            "version": trt.__version__, "major": plan.major, "typing": "strong" if plan.strongly_typed else "weak",
            "precision": precision, "fp32_quantizer": fp32_quantizer,
            "min_shape": list(min_shape), "opt_shape": list(opt_shape), "max_shape": list(max_shape),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
    }
    # keep the ONNX graphs beside the engines, for rebuilding on another GPU, the code table, and the ctx
    # coder's prior tables (model.prior and those kept from earlier releases), which the files reference
    for name in [manifest["graphs"][g]["file"] for g in GRAPHS] + ([manifest["codes"]] if "codes" in manifest else []):
        source = onnx_dir / name
        if not source.is_file():
            raise EngineError(f"{source} is missing; re-export {onnx_dir} with `otok export onnx`")
        if source.resolve() != (out / source.name).resolve():
            shutil.copyfile(source, out / source.name)
    copy_prior_files(engine_prior_files(onnx_dir), out)
    (out / MANIFEST).write_text(json.dumps(trt_manifest, indent=2) + "\n")
    return trt_manifest


def _keep_fp32(trt, network, builder_config) -> None:
    """TensorRT 10 only (11 removed these calls): pin normalization layers and the quantizer's layers to
    fp32 (precision constraints are preferred, not obeyed, so TensorRT can still fall back where no fp32
    kernel exists)."""
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
        if "tensorrt" not in manifest:
            raise EngineError(f"{engine_dir} holds no TensorRT engines; build them with `otok export trt`")
        built = str(manifest["tensorrt"].get("version", "?"))
        if built.split(".")[0] != str(tensorrt_major(trt)):  # a plan file does not cross majors
            raise EngineError(f"{engine_dir} holds engines built by TensorRT {built}, but TensorRT {trt.__version__} "
                              "is installed; rebuild them with `otok export trt`")
        if device.type != "cuda" or not torch.cuda.is_available():
            raise EngineError("the TensorRT backend needs --device cuda and a CUDA GPU that PyTorch sees")
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
                bound = {trt.float32: "float32", trt.int32: "int32"}  # what allocate_outputs and the feeds use
                odd = {n: str(engine.get_tensor_dtype(n)) for n in names if engine.get_tensor_dtype(n) not in bound}
                if odd:
                    raise EngineError(f"{path} has I/O types otok does not bind ({odd}); rebuild it with "
                                      "`otok export trt`")

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
