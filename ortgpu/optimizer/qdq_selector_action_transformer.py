"""QDQSelectorActionTransformer (extended level): DequantizeLinear -> op -> QuantizeLinear
groups of a QDQ model become one quantized op, as onnxruntime's QDQ selectors and actions do,
so that the integer kernels run instead of dequantize / float op / quantize.

Groups (the float op in the middle, its DQ inputs, its Q output):

* Conv: DQ(x), DQ(w) [, DQ(bias, int32)] -> Conv -> Q  =>  ai.onnx QLinearConv;
* MatMul: DQ(a), DQ(b) -> MatMul -> Q  =>  ai.onnx QLinearMatMul; without the Q (a float
  result) => com.microsoft MatMulIntegerToFloat;
* Gemm: DQ(a), DQ(b) [, DQ(c, int32)] -> Gemm [-> Q]  =>  com.microsoft QGemm (requantized
  with the Q, float without it);
* Add, Mul: DQ(a), DQ(b) -> op -> Q  =>  com.microsoft QLinearAdd / QLinearMul;
* AveragePool, GlobalAveragePool, Sigmoid, LeakyRelu, Softmax: DQ -> op -> Q  =>
  com.microsoft QLinear<op>;
* Concat: DQ of every input -> Concat -> Q  =>  com.microsoft QLinearConcat;
* pass-through ops (Reshape, Transpose, Flatten, Squeeze, Unsqueeze, MaxPool, Slice, Gather's
  data, Expand, DepthToSpace, SpaceToDepth): DQ -> op -> Q with the same type, scale and zero
  point on both sides  =>  the op on the quantized tensor (the DQ and Q leave).  Exact: these
  ops move or select values (MaxPool picks a maximum, which quantization keeps), and Q(DQ(q))
  is q.

Rules (onnxruntime's selectors'): every Q/DQ has constant parameters (qdq_patterns.py);
activations (and a, b of Add/Mul/MatMul's a) are per tensor; a weight may be per channel on
the axis the fused op takes (Conv: output channels; MatMul and Gemm: B's columns); the op's
output is read by the Q alone and is no graph output; the quantized types are int8 / uint8,
and where onnxruntime's kernel asks it, input and output have one type (Conv, Add, Mul, the
unary and Concat groups); a bias is int32 with zero point 0 and scale x_scale * w_scale (the
tool writes it so; another scale would change the result), Gemm's C alpha / beta times that
(QGemm's definition).
The fused op keeps the Q's output name (or the op's, without a Q) and replaces the op and the
Q; DQ nodes left without readers go with them.  The fusion happens only where the provider
that would run the op also runs the fused op (ortgpu.placement, :func:`provider_runs`).

The fused result equals the unfused one up to float rounding in the requantization (the
integer products are exact, the unfused float op rounds): at most one quantization step
apart on a rare tie (tests/optimizer/test_qdq_selector_action_transformer.py).
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ortgpu.graph import Graph, Node
from ortgpu.graph_query import elem_type
from ortgpu.optimizer.graph_tools.matching import GraphView, Rewrite, make_node, provider_runs
from ortgpu.optimizer.graph_tools.qdq_patterns import (INT8_TYPES, MS_DOMAIN, QParams, dq_input, q_output,
                                                       same_params)

PASS_THROUGH = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "MaxPool", "Slice",
                          "Gather", "Expand", "DepthToSpace", "SpaceToDepth"})
UNARY = {"AveragePool": "QLinearAveragePool", "GlobalAveragePool": "QLinearGlobalAveragePool",
         "Sigmoid": "QLinearSigmoid", "LeakyRelu": "QLinearLeakyRelu", "Softmax": "QLinearSoftmax"}
BINARY = {"Add": "QLinearAdd", "Mul": "QLinearMul"}


def _io(dq: QParams) -> list[str]:
    return [dq.quantized, dq.scale, dq.zero_point]


def _int8(*params: QParams | None) -> bool:
    return all(p is not None and p.qtype in INT8_TYPES for p in params)


def _per_tensor(*params: QParams | None) -> bool:
    return all(p is not None and p.per_tensor for p in params)


def _bias_ok(view: GraphView, bias: QParams | None, x: QParams, w: QParams, factor: float = 1.0) -> bool:
    """An int32 bias whose scale is factor * x_scale * w_scale (per channel like w) and zero point 0."""
    if bias is None or bias.qtype != TensorProto.INT32 or np.any(bias.zp_value != 0):
        return False
    want = (np.float32(factor) * x.scale_value.astype(np.float32).reshape(())
            * w.scale_value.astype(np.float32)).reshape(-1)
    got = bias.scale_value.astype(np.float32).reshape(-1)
    return (got.size in (1, want.size) and want.size in (1, got.size)
            and bool(np.allclose(got, want, rtol=1e-6, atol=0)))


def _conv(view: GraphView, node: Node, graph: Graph):
    x, w = dq_input(view, node.inputs[0]), dq_input(view, node.inputs[1])
    q = q_output(view, node)
    if not _int8(x, w, q) or not _per_tensor(x, q) or x.qtype != q.qtype:
        return None
    if not w.per_tensor and (w.axis != 0 or w.scale_value.size != (view.shape(w.quantized) or [0])[0]):
        return None
    inputs = _io(x) + _io(w) + [q.scale, q.zero_point]
    if len(node.inputs) > 2 and node.inputs[2]:
        b = dq_input(view, node.inputs[2])
        if not _bias_ok(view, b, x, w):
            return None
        inputs.append(b.quantized)
    return make_node("QLinearConv", "", graph, inputs, [q.quantized], node.attrs, node), q


def _columns_ok(view: GraphView, b: QParams, column_axis: int) -> bool:
    """B per tensor, or per column of a 2-D B (`column_axis`: 1, or 0 when Gemm transposes B)."""
    if b.per_tensor:
        return True
    shape = view.shape(b.quantized)
    return shape is not None and len(shape) == 2 and b.axis == column_axis and b.scale_value.size == shape[column_axis]


def _matmul(view: GraphView, node: Node, graph: Graph):
    a, b = dq_input(view, node.inputs[0]), dq_input(view, node.inputs[1])
    if not _int8(a, b) or not _per_tensor(a) or not _columns_ok(view, b, 1):
        return None
    q = q_output(view, node)
    if q is not None and _int8(q) and q.per_tensor:
        inputs = _io(a) + _io(b) + [q.scale, q.zero_point]
        return make_node("QLinearMatMul", "", graph, inputs, [q.quantized], {}, node), q
    if elem_type(graph, node.outputs[0]) != TensorProto.FLOAT or a.scale_value.dtype != np.float32:
        return None
    inputs = [a.quantized, b.quantized, a.scale, b.scale, a.zero_point, b.zero_point]
    return make_node("MatMulIntegerToFloat", MS_DOMAIN, graph, inputs, node.outputs, {}, node), None


def _gemm(view: GraphView, node: Node, graph: Graph):
    if "broadcast" in node.attrs:   # Gemm before opset 7: legacy broadcasting
        return None
    a, b = dq_input(view, node.inputs[0]), dq_input(view, node.inputs[1])
    trans_b = int(node.attrs.get("transB", 0))
    if not _int8(a, b) or not _per_tensor(a) or not _columns_ok(view, b, 0 if trans_b else 1):
        return None
    inputs = _io(a) + _io(b)
    if len(node.inputs) > 2 and node.inputs[2]:
        c = dq_input(view, node.inputs[2])
        alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
        if beta == 0 or not _bias_ok(view, c, a, b, alpha / beta):   # QGemm scales C by alpha / beta
            return None
        inputs.append(c.quantized)
    else:
        inputs.append("")
    attrs = {k: node.attrs[k] for k in ("alpha", "transA", "transB") if k in node.attrs}
    q = q_output(view, node)
    if q is not None and _int8(q) and q.per_tensor:
        return make_node("QGemm", MS_DOMAIN, graph, inputs + [q.scale, q.zero_point], [q.quantized], attrs, node), q
    if elem_type(graph, node.outputs[0]) != TensorProto.FLOAT:
        return None
    while inputs[-1] == "":
        inputs.pop()
    return make_node("QGemm", MS_DOMAIN, graph, inputs, node.outputs, attrs, node), None


def _binary(view: GraphView, node: Node, graph: Graph):
    a, b, q = dq_input(view, node.inputs[0]), dq_input(view, node.inputs[1]), q_output(view, node)
    if not _int8(a, b, q) or not _per_tensor(a, b, q) or not a.qtype == b.qtype == q.qtype:
        return None
    inputs = _io(a) + _io(b) + [q.scale, q.zero_point]
    return make_node(BINARY[node.op_type], MS_DOMAIN, graph, inputs, [q.quantized], {}, node), q


def _unary(view: GraphView, node: Node, graph: Graph):
    x, q = dq_input(view, node.inputs[0]), q_output(view, node)
    if not _int8(x, q) or not _per_tensor(x, q) or x.qtype != q.qtype:
        return None
    attrs = dict(node.attrs)
    if node.op_type == "AveragePool" and any(d != 1 for d in attrs.get("dilations", ())):
        return None
    attrs.pop("dilations", None)
    if node.op_type == "Softmax":   # QLinearSoftmax takes the opset that fixes Softmax's meaning
        attrs = {"axis": int(attrs.get("axis", -1 if node.opset >= 13 else 1)), "opset": node.opset}
    return make_node(UNARY[node.op_type], MS_DOMAIN, graph, _io(x) + [q.scale, q.zero_point], [q.quantized],
                     attrs, node), q


def _concat(view: GraphView, node: Node, graph: Graph):
    q = q_output(view, node)
    ins = [dq_input(view, x) for x in node.inputs]
    if not ins or not _int8(q, *ins) or not _per_tensor(q, *ins) or any(p.qtype != q.qtype for p in ins):
        return None
    inputs = [q.scale, q.zero_point] + [v for p in ins for v in _io(p)]
    return make_node("QLinearConcat", MS_DOMAIN, graph, inputs, [q.quantized], {"axis": node.attrs["axis"]}, node), q


def _pass_through(view: GraphView, node: Node, graph: Graph):
    x, q = dq_input(view, node.inputs[0]) if node.inputs else None, q_output(view, node)
    if x is None or q is None or not same_params(x, q) or not x.per_tensor:
        return None
    inputs = [x.quantized] + list(node.inputs[1:])
    return make_node(node.op_type, "", graph, inputs, [q.quantized], node.attrs, node), q


SELECTORS = {"Conv": _conv, "MatMul": _matmul, "Gemm": _gemm, "Concat": _concat,
             **{op: _binary for op in BINARY}, **{op: _unary for op in UNARY},
             **{op: _pass_through for op in PASS_THROUGH}}


def fuse_qdq_groups(graph: Graph, providers, overridable: set[str]) -> int:
    view = GraphView(graph, overridable)
    rewrite = Rewrite()
    for node in graph.nodes:
        select = SELECTORS.get(node.op_type) if node.domain == "" else None
        if select is None or len(node.outputs) != 1 or "" in node.inputs[:1]:
            continue
        found = select(view, node, graph)
        if found is None:
            continue
        fused, q = found
        if node.op_type in PASS_THROUGH:
            fused.name = node.name or fused.name
        group = [node] + ([q.node] if q is not None else [])
        if rewrite.claimed(*group) or not provider_runs(graph, providers, node, fused):
            continue
        rewrite.replace(group, fused)
    return rewrite.finish(graph)
