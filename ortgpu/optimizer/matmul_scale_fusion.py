"""MatMulScaleFusion (extended level): scalar Mul/Div around a MatMul folds into FusedMatMul's alpha.

Pattern: a MatMul (or com.microsoft FusedMatMul) whose inputs come from, or whose output goes
to, a Mul by a scalar constant or a Div by one (the constant the divisor).  Attention as torch
writes it is the case in point: scaled_dot_product_attention scales both the query and the
transposed key by sqrt(1/sqrt(head size)) before their MatMul, and eager attention divides the
scores by sqrt(head size) after it.

Rules: the constant has one element and rank 0 or 1 (so it cannot raise the other operand's
rank) and is not zero for a Div; the scaled value (Mul or Div output) is read only by the
MatMul (input side), or the MatMul's output only by the Mul or Div (output side), and is no
graph output.  The scales multiply into ``alpha`` (a FusedMatMul keeps its transpose
attributes); the fused node takes the MatMul's inputs without the scaling and the output name of
the last node it replaces.  Float32 only (onnxruntime's CPU FusedMatMul is float32, and
ortgpu has no op of its own for it), and only where the provider that runs the MatMul runs
FusedMatMul.
"""
from __future__ import annotations

import onnx

from ortgpu.fused_ops import MS_DOMAIN
from ortgpu.graph import Graph, Node
from ortgpu.graph_query import elem_type
from ortgpu.optimizer.graph_tools.matching import GraphView, Rewrite, first_runnable, make_node


def fuse_matmul_scale(graph: Graph, providers, overridable: set[str]) -> int:
    """Fold every scalar scaling of a MatMul's inputs and output into one FusedMatMul."""
    view = GraphView(graph, overridable)
    rewrite = Rewrite()
    for mm in list(graph.nodes):
        if not _is_matmul(mm) or rewrite.claimed(mm) or elem_type(graph, mm.outputs[0]) != onnx.TensorProto.FLOAT:
            continue
        alpha = float(mm.attrs.get("alpha", 1.0)) if mm.domain == MS_DOMAIN else 1.0
        inputs, replaced = list(mm.inputs[:2]), [mm]
        for i, name in enumerate(inputs):
            scaler = view.producer.get(name)
            found = _scaling(view, scaler, name) if scaler is not None and view.private(name) else None
            if found is not None and not rewrite.claimed(scaler):
                inputs[i], scale = found
                alpha *= scale
                replaced.append(scaler)
        output = mm.outputs[0]
        after = view.only_reader(output)
        found = _scaling(view, after, output) if after is not None else None
        if found is not None and found[0] == output and not rewrite.claimed(after):
            alpha *= found[1]
            output = after.outputs[0]
            replaced.append(after)
        if len(replaced) == 1:
            continue
        attrs = {k: v for k, v in mm.attrs.items() if mm.domain == MS_DOMAIN and k != "alpha"}
        attrs["alpha"] = alpha
        fused = first_runnable(graph, providers, mm,
                               lambda: make_node("FusedMatMul", MS_DOMAIN, graph, inputs, [output], attrs, mm))
        if fused is not None:
            rewrite.replace(replaced, fused)
    return rewrite.finish(graph)


def _is_matmul(node: Node) -> bool:
    return ((node.op_type == "MatMul" and node.domain == "")
            or (node.op_type == "FusedMatMul" and node.domain == MS_DOMAIN)) and len(node.inputs) >= 2


def _scaling(view: GraphView, node: Node, scaled: str) -> tuple[str, float] | None:
    """(the operand, the factor) when `node` is a Mul or Div of `scaled`'s chain by a scalar
    constant: for an input-side node `scaled` is its output, for an output-side node its input."""
    if node.domain != "" or node.op_type not in ("Mul", "Div") or len(node.inputs) != 2:
        return None
    if node.outputs[0] == scaled:          # input side: which operand is the constant
        candidates = (1, 0) if node.op_type == "Mul" else (1,)
    else:                                  # output side: the constant is the operand not read from the MatMul
        if node.inputs.count(scaled) != 1:
            return None
        i = 1 - node.inputs.index(scaled)
        candidates = (i,) if node.op_type == "Mul" or i == 1 else ()
    for i in candidates:
        c = view.const(node.inputs[i])
        if c is None or c.size != 1 or c.ndim > 1 or c.dtype.kind != "f" or view.const(node.inputs[1 - i]) is not None:
            continue
        value = float(c.reshape(-1)[0])
        if node.op_type == "Div":
            if value == 0.0:
                return None
            value = 1.0 / value
        return node.inputs[1 - i], value
    return None
