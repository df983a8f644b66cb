"""Reduced-precision copies of the fp32 step graphs, for strongly typed TensorRT builds.

    from otok.export.precision import cast_graph
    half = cast_graph(onnx.load("encoder_video.onnx"), "fp16")     # an onnx.ModelProto

TensorRT 11 builds every network strongly typed and has no precision builder flags (BuilderFlag.FP16 and
BF16 are removed; see export/README.md for the sources), so an fp16 or bf16 engine must come from a graph
whose tensors are fp16 or bf16. `cast_graph` makes that graph from the exported fp32 one:

- float initializers and Constant values become `dtype`, except where an fp32 node reads them
  (a Cast feeds the reduced-precision readers then);
- nodes run in `dtype`, except the ones kept in fp32: every LayerNormalization, every Cast, integer
  arithmetic done in float (shapes, window ids and masks computed from integers and constants alone, so
  they stay exact: fp16 holds integers exactly only up to 2048, bf16 up to 256), every ConstantOfShape (its output types
  include bf16 only from opset 20) and, with `fp32_quantizer`, every node of the
  quantizer (named `/quantize/...` by the exporter: the nearest-code search, so tokens flip only at true
  near-ties, as the TensorRT 10 path pins them);
- a Cast is inserted wherever a tensor crosses between the two, and the graph's inputs and outputs keep
  their types (fp32 pixels, latents and state; int32 tokens), so the runtime binds the same buffers.

Only float32 tensors are touched; integer and bool tensors are left as they are.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

LOW_TYPES = {"fp16": 10, "bf16": 16}  # onnx.TensorProto.FLOAT16, BFLOAT16
FLOAT = 1  # onnx.TensorProto.FLOAT
_KEPT_OPS = {"LayerNormalization", "Cast", "ConstantOfShape"}  # ConstantOfShape: bf16 fills need opset 20


def _low_tensor(tensor, low: int):
    """A float32 TensorProto converted to FLOAT16 or BFLOAT16 (same name and shape)."""
    import onnx
    import torch
    from onnx import numpy_helper

    values = numpy_helper.to_array(tensor).astype(np.float32)
    if low == onnx.TensorProto.FLOAT16:
        out = numpy_helper.from_array(values.astype(np.float16), tensor.name)
    else:  # bfloat16: round to nearest even through torch, store the raw 16-bit patterns
        bits = torch.from_numpy(np.ascontiguousarray(values)).to(torch.bfloat16).view(torch.int16).numpy()
        out = onnx.TensorProto(name=tensor.name, data_type=low, dims=list(values.shape))
        out.raw_data = bits.tobytes()
    return out


def _is_kept(node, fp32_quantizer: bool) -> bool:
    if node.op_type in _KEPT_OPS:
        return True
    if node.op_type == "Constant" and not any(a.name == "value" for a in node.attribute):
        return True  # value_float(s) and other forms: left in fp32
    return fp32_quantizer and "/quantize/" in node.name


def cast_graph(model, precision: str = "fp16", fp32_quantizer: bool = True):
    """A copy of `model` (an fp32 onnx.ModelProto) that computes in fp16 or bf16; see the module doc."""
    import onnx

    if precision not in LOW_TYPES:
        raise ValueError(f"precision must be one of {tuple(LOW_TYPES)}, got {precision!r}")
    low = LOW_TYPES[precision]
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        raise ValueError("cast_graph handles flat graphs only (this one has If/Loop/Scan subgraphs)")

    inferred = onnx.shape_inference.infer_shapes(model).graph
    elem = {v.name: v.type.tensor_type.elem_type for v in [*inferred.value_info, *inferred.input, *inferred.output]}
    elem.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                elem[node.output[0]] = value.data_type
    is_float = lambda name: bool(name) and elem.get(name) == FLOAT  # noqa: E731

    nodes = list(graph.node)  # one Python object per node: protobuf makes a new wrapper on every access
    kept = {k for k, n in enumerate(nodes) if _is_kept(n, fp32_quantizer)}
    # Integer arithmetic done in float (shapes, window ids, masks: float tensors cast from integers, and
    # what is computed from them and constants alone) stays fp32, where integers up to 2^24 are exact.
    constant = {t.name for t in graph.initializer} | {o for n in nodes if n.op_type == "Constant" for o in n.output}
    integral: set[str] = set()
    for k, node in enumerate(nodes):
        floats = [i for i in node.input if is_float(i)]
        if node.op_type == "Cast":
            if node.input and (not is_float(node.input[0]) or node.input[0] in integral):
                integral.update(node.output)
        elif floats and all(i in integral or i in constant for i in floats) and any(i in integral for i in floats):
            kept.add(k)
            integral.update(o for o in node.output if is_float(o))
    consumers = defaultdict(list)
    for k, node in enumerate(nodes):
        for name in node.input:
            if name:
                consumers[name].append(k)
    # Where each float tensor lives: "low" or "fp32". Inputs stay fp32; node outputs follow their node;
    # initializers and Constant values follow their readers (fp32 if any fp32 node reads them).
    home: dict[str, str] = {v.name: "fp32" for v in graph.input}
    read_only_by_low = lambda name: all(k not in kept for k in consumers[name])  # noqa: E731
    for init in graph.initializer:
        if init.data_type == FLOAT:
            home[init.name] = "low" if consumers[init.name] and read_only_by_low(init.name) else "fp32"
    for k, node in enumerate(nodes):
        for name in node.output:
            if not is_float(name):
                continue
            if node.op_type == "Constant":
                home[name] = "low" if k not in kept and read_only_by_low(name) else "fp32"
            else:
                home[name] = "fp32" if k in kept else "low"

    # convert the stored values that now live in low precision
    for i, init in enumerate(graph.initializer):
        if home.get(init.name) == "low":
            graph.initializer[i].CopyFrom(_low_tensor(init, low))
    for node in nodes:
        if node.op_type in ("Constant", "ConstantOfShape") and node.output and home.get(node.output[0]) == "low":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == FLOAT:
                    attr.t.CopyFrom(_low_tensor(attr.t, low))

    # casts where a tensor crosses between the two precisions
    casts: dict[tuple[str, int], str] = {}
    new_nodes = []

    def converted(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            casts[key] = f"{name}__as_{'fp32' if to == FLOAT else precision}"
            new_nodes.append(onnx.helper.make_node("Cast", [name], [casts[key]], to=to,
                                                   name=f"{casts[key]}/Cast"))
        return casts[key]

    for k, node in enumerate(nodes):
        want = "fp32" if k in kept else "low"
        if node.op_type == "Cast":
            want = None  # a Cast reads any type: leave its input alone
        for j, name in enumerate(node.input):
            if want and is_float(name) and home.get(name) not in (None, want):
                node.input[j] = converted(name, FLOAT if want == "fp32" else low)
        new_nodes.append(node)
    # graph outputs keep fp32: a low output is renamed inside the graph and cast back under its own name
    for out in graph.output:
        if home.get(out.name) == "low":
            inner = f"{out.name}__{precision}"
            for node in new_nodes:
                node.output[:] = [inner if o == out.name else o for o in node.output]
                node.input[:] = [inner if i == out.name else i for i in node.input]
            new_nodes.append(onnx.helper.make_node("Cast", [inner], [out.name], to=FLOAT, name=f"{out.name}/Cast"))
    ordered = _topological(new_nodes, {v.name for v in graph.input} | {t.name for t in graph.initializer})
    ordered = [onnx.NodeProto.FromString(n.SerializeToString()) for n in ordered]  # detach before clearing
    del graph.node[:]
    graph.node.extend(ordered)
    del graph.value_info[:]  # stale float annotations; shape inference rebuilds them
    return model


def _topological(nodes, available: set[str]):
    """`nodes` in an order where every input is produced before it is read (the inserted casts move)."""
    produced = {o for n in nodes for o in n.output}
    ready = set(available)
    ordered, pending = [], list(nodes)
    while pending:
        rest = []
        for node in pending:
            if all(not i or i in ready or i not in produced for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError("cast_graph: the graph has a cycle")
        pending = rest
    return ordered
