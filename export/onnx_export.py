"""ONNX export of the four step graphs and their manifest.

    from otok.codec import load
    from otok.export import export_onnx
    manifest = export_onnx(load("otok-s"), "engines/otok-s")   # encoder_image.onnx ... + manifest.json

Each graph carries the model name, the SHA-256 of the weights it was exported from, the otok version and
the graph's role in its metadata (`metadata_props`); `manifest.json` repeats them with the config, the
file names and the input/output names. Batch, height and width are dynamic.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from otok.codec import Tokenizer
from otok.codec.priors import copy_prior_files, prior_files

from .wrappers import STATE_IN, STATE_OUT, TOKEN_DTYPE, graph_io, step_modules

MANIFEST = "manifest.json"
CODES = "codes.safetensors"  # VQ models: the normalized codebook (K, C) float32 under the key "codes"
MANIFEST_FORMAT = 1
GRAPHS = ("encoder_image", "encoder_video", "decoder_image", "decoder_video")
OPSETS = range(17, 21)  # TensorRT 10.0 parses opsets 9-20 (11.x: 9-25); LayerNormalization needs 17


def otok_version() -> str:
    import otok

    return otok.__version__


def _dynamic_axes(discrete: bool) -> dict[str, dict[int, str]]:
    grid = {0: "batch", 1: "grid_h", 2: "grid_w"} if discrete else {0: "batch", 2: "grid_h", 3: "grid_w"}
    state = {1: "batch", 2: "grid_h", 3: "grid_w"}
    axes = {"pixels": {0: "batch", 3: "height", 4: "width"}, "tokens" if discrete else "latents": grid}
    axes.update({name: state for name in ("keys", "values", "keys_out", "values_out")})
    return axes


def example_inputs(tokenizer: Tokenizer, graph: str, batch: int = 2, grid: tuple[int, int] | None = None):
    """Inputs of `graph` for a (batch, grid) step, as a tuple in the graph's input order."""
    c = tokenizer.config
    h, w = grid or (2 * c.window, 3 * c.window)  # distinct, > one window: nothing coincides by accident
    device = tokenizer.device
    frames = 1 if graph.endswith("image") else c.tubelet
    heads, hd = c.heads, c.dim // c.heads
    if graph.startswith("encoder"):
        first = torch.rand(batch, 3, frames, h * c.patch, w * c.patch, device=device) * 2 - 1
    elif c.discrete:
        first = torch.randint(0, c.codebook_size, (batch, h, w), device=device, dtype=TOKEN_DTYPE)
    else:
        first = torch.randn(batch, tokenizer.quantizer.code_dim, h, w, device=device)
    if graph.endswith("image"):
        return (first,)
    state = (c.temporal_layers, batch, h, w, heads, c.temporal_window - 1, hd)
    valid = torch.ones(c.temporal_window - 1, device=device)
    valid[0] = 0.0
    return first, torch.randn(state, device=device), torch.randn(state, device=device), valid


def _metadata(tokenizer: Tokenizer, graph: str, sha: str) -> dict[str, str]:
    return {
        "otok_model": tokenizer.config.name,
        "otok_weights_sha256": sha,
        "otok_version": otok_version(),
        "otok_graph": graph,
        "otok_config": json.dumps(tokenizer.config.to_dict()),
    }


def export_graph(tokenizer: Tokenizer, graph: str, path: str | os.PathLike, opset: int = 17,
                 sha: str | None = None) -> None:
    """Export one step graph to `path` (TorchScript exporter: it traces our shape arithmetic generically)."""
    import onnx

    module = step_modules(tokenizer)[graph]
    inputs, outputs = graph_io(tokenizer.config.discrete)[graph]
    axes = {k: v for k, v in _dynamic_axes(tokenizer.config.discrete).items() if k in inputs + outputs}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notices
        torch.onnx.export(
            module, example_inputs(tokenizer, graph), str(path), input_names=inputs, output_names=outputs,
            dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False,
        )
    model = onnx.load(str(path))
    for key, value in _metadata(tokenizer, graph, sha or tokenizer.weights_sha256()).items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "otok"
    model.producer_version = otok_version()
    onnx.checker.check_model(model)
    tmp = Path(str(path) + ".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)


def write_codes(tokenizer: Tokenizer, path: Path) -> None:
    """The codes of every token, (K, C) float32, as safetensors (written under a temporary name)."""
    from safetensors.torch import save_file

    with torch.no_grad():
        codes = tokenizer.quantizer.codes_from_indices(torch.arange(tokenizer.config.codebook_size))
    tmp = path.with_name(path.name + ".tmp")
    save_file({"codes": codes.float().cpu().contiguous()}, str(tmp))
    os.replace(tmp, path)


def export_onnx(tokenizer: Tokenizer, out_dir: str | os.PathLike, opset: int = 17, check: bool = True) -> dict:
    """Write encoder_image/encoder_video/decoder_image/decoder_video.onnx and manifest.json to out_dir,
    with the model's prior tables (`otok.codec.priors`: model.prior and those of earlier releases).

    check: run the TensorRT op allowlist over every graph (raises `UnsupportedOpError`).
    Returns the manifest (a dict, as written).
    """
    if opset not in OPSETS:
        raise ValueError(f"opset must lie in 17-20 (every TensorRT 10 and 11 parses up to 20), got {opset}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer.eval()
    sha = tokenizer.weights_sha256()
    c = tokenizer.config
    io = graph_io(c.discrete)
    graphs = {}
    for graph in GRAPHS:
        path = out / f"{graph}.onnx"
        export_graph(tokenizer, graph, path, opset, sha)
        if check:
            from .ops import check_graph

            check_graph(path)
        graphs[graph] = {"file": path.name, "inputs": io[graph][0], "outputs": io[graph][1]}
    manifest = {
        "format": MANIFEST_FORMAT,
        "model": c.name,
        "weights_sha256": sha,
        "otok_version": otok_version(),
        "config": c.to_dict(),
        "opset": opset,
        "token_dtype": "int32",
        "state": {
            "layout": "(layers, batch, grid_h, grid_w, heads, temporal_window-1, head_dim); slot j holds the "
                      "step at distance temporal_window-1-j; valid (temporal_window-1,) marks real slots",
            "inputs": STATE_IN,
            "outputs": STATE_OUT,
            "shape": [c.temporal_layers, "batch", "grid_h", "grid_w", c.heads, c.temporal_window - 1,
                      c.dim // c.heads],
        },
        "graphs": graphs,
    }
    if c.quantizer == "vq":  # the code table, for rate-distortion token choice outside the graphs (codec.rdo)
        write_codes(tokenizer, out / CODES)
        manifest["codes"] = CODES
    copy_prior_files(prior_files(tokenizer), out)  # the ctx coder's tables travel with the weights
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / MANIFEST)
    return manifest
