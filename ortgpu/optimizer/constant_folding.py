"""ConstantFolding (basic level).

A node whose inputs are all constants (initializers that are not graph inputs, or no
inputs at all) and whose op is deterministic is run once; its outputs become
initializers and the node leaves the graph.  Outputs larger than FOLD_LIMIT_BYTES stay
computed at run time, so folding never inflates a model's memory without bound.

Shapes fold too, as in onnxruntime: a Shape node, or a chain of Gather/Slice/Unsqueeze/
Concat/Cast over Shape nodes (see shape_values), whose elements are all static dims or
constants becomes an initializer, even though the tensor it measures is computed at run
time.  Static dims come from shape inference and from the inputs' declared dims, which
every run checks.

In a subgraph (an If branch, a Loop body) the constants of the enclosing scopes count as
constants too, as onnxruntime reads outer-scope initializers: a Slice of an outer weight
becomes an initializer of the branch instead of running at every call.

Never folded: random ops and Dropout, nodes with subgraphs, nodes whose output is a graph
output or input, and nodes whose run fails (they fail at run time with the node named).
DequantizeLinear is not folded either, as in onnxruntime: a quantized weight stays quantized
for the QDQ fusions (QDQSelectorActionTransformer) to hand to an integer kernel.
"""
from __future__ import annotations

import numpy as np
import onnx

from ortgpu.dtypes import np_dtype
from ortgpu.graph import Graph, Node
from ortgpu.graph_query import constants, elem_type, set_initializer
from ortgpu.optimizer.graph_tools.shape_values import FOLLOWED_OPS, ShapeValues

FOLD_LIMIT_BYTES = 64 << 20

# Ops whose result changes between runs (or that only make sense at run time).
_NOT_FOLDABLE = {
    ("", "RandomUniform"), ("", "RandomNormal"), ("", "RandomUniformLike"), ("", "RandomNormalLike"),
    ("", "Multinomial"), ("", "Bernoulli"), ("", "Dropout"),
    ("", "DequantizeLinear"), ("com.microsoft", "DequantizeLinear"),   # kept for the QDQ fusions
}


def fold_constants(graph: Graph, providers, overridable: set[str]) -> int:
    """Fold what can be folded in `graph` (not its subgraphs); returns the number of nodes folded.

    `overridable` names the initializers a run may replace (graph inputs from IR 4 on);
    they are not constants."""
    host = [p for p in providers if p.device == "cpu"]  # fold on the host: no device round trip
    pinned = {v.name for v in graph.outputs} | {v.name for v in graph.inputs}
    consts = _visible_constants(graph, overridable)
    shapes = ShapeValues(graph, consts)
    kept, folded = [], 0
    for node in graph.nodes:
        if ((node.domain, node.op_type) in _NOT_FOLDABLE or node.subgraphs()
                or any(o in pinned for o in node.outputs if o)):
            kept.append(node)
            continue
        if all(x in consts for x in node.inputs if x):
            values = _run(node, graph, consts, host)
        else:
            values = _shape_value(node, graph, shapes)
        if values is None:
            kept.append(node)
            continue
        for name, value in zip((o for o in node.outputs if o), values):
            set_initializer(graph, name, value)
            consts[name] = value
        folded += 1
    graph.nodes = kept
    return folded


def _visible_constants(graph: Graph, overridable: set[str]) -> dict:
    """The constants `graph` reads: its own, and in a subgraph those of the enclosing scopes
    (Graph.outer_constants) that it does not define again itself."""
    own = constants(graph, overridable)
    if not graph.outer_constants:
        return own
    local = {v.name for v in graph.inputs} | set(graph.initializers)
    local.update(o for n in graph.nodes for o in n.outputs if o)
    seen = {k: v for k, v in graph.outer_constants.items() if k not in local}
    seen.update(own)
    return seen


def _run(node: Node, graph: Graph, consts: dict, host) -> list | None:
    """The node's outputs computed on the host, or None when it fails or they are too large."""
    from ortgpu.executor import Plan  # noqa: PLC0415  (the executor imports this module's callers)
    from ortgpu.functions import expand_unimplemented  # noqa: PLC0415
    ins = [x for x in node.inputs if x]
    mini = Graph(f"fold_{node.name}", [node], [], [], {x: consts[x] for x in ins}, graph.types, graph.opsets)
    mini.outputs = [onnx.ValueInfoProto(name=o) for o in node.outputs if o]
    try:
        expand_unimplemented(mini, host)
        values = Plan(mini, host).run([])
    except Exception:
        return None  # it will fail (or succeed) at run time, with the node named
    if not all(isinstance(v, np.ndarray) and v.nbytes <= FOLD_LIMIT_BYTES for v in values):
        return None
    return values


def _shape_value(node: Node, graph: Graph, shapes: ShapeValues) -> list | None:
    """[the node's output] when it is a shape whose elements are all known, else None."""
    if len(node.outputs) != 1 or node.domain != "" or node.op_type not in FOLLOWED_OPS:
        return None
    code = elem_type(graph, node.outputs[0])
    value = shapes.of(node.outputs[0])
    ints = value.ints() if value is not None else None
    if ints is None or code not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
        return None
    arr = np.array(ints, dtype=np_dtype(code))
    return [arr.reshape(()) if value.scalar else arr]
