"""ONNX Runtime backend: runs the four step graphs with I/O bound to torch tensors (no copies).

CPU by default; `device="cuda"` uses the CUDA execution provider of onnxruntime-gpu, with inputs, outputs
and the streaming state left on the GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from otok.codec import TokenizerConfig

from .onnx_export import GRAPHS
from .runtime import allocate_outputs

_NUMPY = {torch.float32: np.float32, torch.int32: np.int32, torch.int64: np.int64, torch.float16: np.float16}


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(
            "the ONNX Runtime backend needs onnxruntime: pip install onnx onnxruntime (onnxruntime-gpu for "
            "--device cuda; in a checkout of otok: pip install -e '.[onnx]')"
        ) from None
    return onnxruntime


class OrtRunner:
    """One InferenceSession per graph; `run` binds torch tensors as inputs and outputs."""

    def __init__(self, engine_dir: Path, manifest: dict, device: torch.device, threads: int | None = None) -> None:
        from .runtime import EngineError

        ort = import_onnxruntime()
        self.device = device
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise EngineError("--device cuda with the onnx backend needs onnxruntime-gpu "
                                  "(pip uninstall onnxruntime && pip install onnxruntime-gpu)")
            providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
        elif device.type == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise EngineError(f"the onnx backend runs on cpu or cuda, not {device}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The CPU arena keeps every size of buffer a step ever needed: about twice the peak memory of running
        # without it, at no measured cost in speed (docs/BENCHMARKS.md).
        options.enable_cpu_mem_arena = False
        if threads:
            options.intra_op_num_threads = threads
        self.config = TokenizerConfig.from_dict(manifest["config"])
        self.sessions = {}
        self.outputs: dict[str, list[str]] = {}
        for graph in GRAPHS:
            path = engine_dir / manifest["graphs"][graph]["file"]
            if not path.is_file():
                raise EngineError(f"{path} is missing; re-run `otok export onnx`")
            session = ort.InferenceSession(str(path), options, providers=providers)
            meta = session.get_modelmeta().custom_metadata_map
            if meta.get("otok_weights_sha256") != manifest["weights_sha256"]:
                raise EngineError(
                    f"{path} was exported from weights {meta.get('otok_weights_sha256', '?')[:12]}, but "
                    f"{engine_dir / 'manifest.json'} says {manifest['weights_sha256'][:12]}; re-export the folder"
                )
            self.sessions[graph] = session
            self.outputs[graph] = [o.name for o in session.get_outputs()]
        self._device_type = device.type
        self._device_id = (device.index or 0) if device.type == "cuda" else 0

    def run(self, graph: str, feeds: dict[str, Tensor]) -> dict[str, Tensor]:
        session = self.sessions[graph]
        binding = session.io_binding()
        for name, tensor in feeds.items():
            tensor = tensor.contiguous()
            binding.bind_input(name, self._device_type, self._device_id, _NUMPY[tensor.dtype],
                               tuple(tensor.shape), tensor.data_ptr())
        outputs = allocate_outputs(self.config, graph, feeds, self.outputs[graph], self.device)
        for name, tensor in outputs.items():
            binding.bind_output(name, self._device_type, self._device_id, _NUMPY[tensor.dtype],
                                tuple(tensor.shape), tensor.data_ptr())
        if self._device_type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()  # torch's writes land before ORT's stream reads
        session.run_with_iobinding(binding)
        if self._device_type == "cuda":
            binding.synchronize_outputs()
        return outputs
