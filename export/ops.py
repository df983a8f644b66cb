"""The TensorRT op allowlist: every node of an exported graph must be one the ONNX parsers of TensorRT 10
and 11 both import.

Sources: the operator support matrix of the ONNX-TensorRT parser, `docs/operators.md` in
https://github.com/onnx/onnx-tensorrt, as read for 10.0/10.1 ("TensorRT 10.0 supports operators in the
inclusive range of opset 9 to opset 20") and for 10.15 ("opset 9 to opset 24", the newest table read);
for 11, the parser's release notes (11.0: Swish and the custom TRT_Attention/TRT_MoE/TRT_KVCacheUpdate
added, nothing removed; 11.5: opset 25) and NVIDIA's ONNX opset guide (11.x: opsets 9 to 25, operator list
= that operators.md). The release/11 table itself was not read. `SUPPORTED` keeps the "Y" rows of the 10.0
table (a subset of the later ones); `RESTRICTIONS` the restriction column, the strictest wording across the
tables read, for the operators an otok graph can contain. Operators absent here are treated as
unsupported: a false "unsupported" costs a rewrite, a false "supported" a failed engine build on the
user's machine. Checked beyond the table: opset range (the range every supported major parses), data
types, tensor rank (TensorRT's Dims hold at most 8), and that shape-like inputs the parser needs at build
time are constants.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TABLE_SOURCE = "https://github.com/onnx/onnx-tensorrt/blob/main/docs/operators.md"
TABLE_VERSIONS = "TensorRT 10.0 (opsets 9-20) and 10.15 (9-24); 11.x parses opsets 9-25"
OPSET_RANGE = (9, 20)  # parsed by every TensorRT 10.x and 11.x
MAX_RANK = 8  # nvinfer1::Dims::MAX_DIMS

# "Y" rows of the support matrix.
SUPPORTED = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu
Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div
Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GRU HardSigmoid HardSwish
Identity If ImageScaler InstanceNormalization IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod
Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2
ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu
Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu
Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub
Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

# The restriction column, for operators whose restriction can bite a transformer step graph.
RESTRICTIONS = {
    "Slice": "`axes` must be an initializer",
    "Squeeze": "`axes` must be an initializer",
    "Unsqueeze": "`axes` must be a constant tensor",
    "TopK": "`K` input must be an initializer",
    "CumSum": "`axis` must be an initializer",
    "Range": "floating-point inputs are supported only if `start`, `limit` and `delta` are initializers",
    "ReverseSequence": "dynamic input shapes are unsupported",
    "If": "the two branches' outputs must have broadcastable shapes and different names",
    "ReduceSum": "`axes` must be an initializer (10.15 table)",
    "ReduceMean": "`axes` must be an initializer (10.15 table)",
    "ReduceMax": "`axes` must be an initializer (10.15 table)",
    "ReduceL2": "`axes` must be an initializer (10.15 table)",
}

# (op, input index) that must be a constant (an initializer or a Constant node's output).
_CONSTANT_INPUTS = {("Slice", 3), ("Squeeze", 1), ("Unsqueeze", 1), ("TopK", 1), ("CumSum", 1),
                    ("ReduceSum", 1), ("ReduceMean", 1), ("ReduceMax", 1), ("ReduceL2", 1)}

# ONNX TensorProto element types TensorRT 10 and 11 accept (DOUBLE only by casting down, so refused here).
_TRT_TYPES = {
    1: "FLOAT", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FLOAT16", 16: "BFLOAT16",
    17: "FLOAT8E4M3FN", 22: "INT4",
}


class UnsupportedOpError(ValueError):
    """A graph holds an operator, type or pattern that TensorRT's ONNX parser (10 or 11) rejects."""


@dataclass
class Finding:
    node: str
    op: str
    problem: str

    def __str__(self) -> str:
        return f"{self.op} ({self.node}): {self.problem}"


def find_problems(model) -> list[Finding]:
    """Everything in `model` (an onnx.ModelProto) that TensorRT 10 or 11 would refuse; empty when it parses."""
    import onnx

    problems: list[Finding] = []
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and not OPSET_RANGE[0] <= opset.version <= OPSET_RANGE[1]:
            problems.append(Finding("<model>", "opset", f"opset {opset.version} is outside "
                                                        f"{OPSET_RANGE[0]}-{OPSET_RANGE[1]}"))
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    constants = {init.name for init in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    for node in graph.node:
        name = node.name or (node.output[0] if node.output else "?")
        if node.domain not in ("", "ai.onnx"):
            problems.append(Finding(name, node.op_type, f"custom-domain op ({node.domain}) needs a plugin"))
            continue
        if node.op_type not in SUPPORTED:
            problems.append(Finding(name, node.op_type, "not in TensorRT's ONNX operator table"))
            continue
        for op, index in _CONSTANT_INPUTS:
            if node.op_type == op and len(node.input) > index and node.input[index] and \
                    node.input[index] not in constants:
                problems.append(Finding(name, op, RESTRICTIONS[op]))
        if node.op_type in ("ArgMax", "ArgMin"):
            last = next((a.i for a in node.attribute if a.name == "select_last_index"), 0)
            if last:
                problems.append(Finding(name, node.op_type, "select_last_index=1 is not supported"))
    types = {v.name: v.type.tensor_type for v in [*graph.value_info, *graph.input, *graph.output]}
    types.update({init.name: None for init in graph.initializer})
    range_inputs = {i for n in graph.node if n.op_type == "Range" for i in n.input}
    for tensor_name, tensor_type in types.items():
        if tensor_type is None:
            continue
        if tensor_type.elem_type and tensor_type.elem_type not in _TRT_TYPES:
            dtype = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
            problems.append(Finding(tensor_name, "type", f"element type {dtype} is not a TensorRT type"))
        if tensor_type.HasField("shape") and len(tensor_type.shape.dim) > MAX_RANK:
            problems.append(Finding(tensor_name, "rank", f"rank {len(tensor_type.shape.dim)} > {MAX_RANK}"))
        if tensor_name in range_inputs and tensor_type.elem_type in (1, 10, 16) and tensor_name not in constants:
            problems.append(Finding(tensor_name, "Range", RESTRICTIONS["Range"]))
    for init in graph.initializer:
        if init.data_type not in _TRT_TYPES:
            dtype = onnx.TensorProto.DataType.Name(init.data_type)
            problems.append(Finding(init.name, "type", f"initializer of type {dtype} is not a TensorRT type"))
    return problems


def check_graph(path_or_model) -> None:
    """Raise UnsupportedOpError listing every problem TensorRT 10 or 11 would have with the graph."""
    model = _load(path_or_model)
    problems = find_problems(model)
    if problems:
        where = path_or_model if isinstance(path_or_model, (str, os.PathLike)) else model.graph.name
        listed = "; ".join(str(p) for p in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise UnsupportedOpError(f"{where}: TensorRT cannot parse this graph: {listed}{more} "
                                 f"(operator table: {TABLE_SOURCE}, {TABLE_VERSIONS})")


def _load(path_or_model):
    import onnx

    if isinstance(path_or_model, (str, os.PathLike)):
        return onnx.load(str(path_or_model))
    return path_or_model
