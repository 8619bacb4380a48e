"""GeluFusion and FastGeluFusion (extended level): the exported forms of GELU become one node.

GeluFusion, the erf form: ``x * 0.5 * (1 + Erf(x / sqrt(2)))`` with ``x / sqrt(2)`` written
as Div by ~1.41421 or Mul by ~0.70711 and the three factors x, 0.5 and (1 + erf) multiplied
in any of the arrangements exporters write: ``(x * a) * 0.5``, ``x * (a * 0.5)``,
``(x * 0.5) * a`` (operands of Mul and Add in either order).

FastGeluFusion, the tanh form: ``x * 0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))``
with ``x^3`` as Pow(x, 3) or Mul(x, Mul(x, x)), constants within 1e-4 relative, and the
same arrangements of the final product.

Both: every intermediate value is read only inside the pattern; x is a float tensor.  The
result is ai.onnx Gelu (approximate 'none' / 'tanh') when the model imports opset 20 or
later, else, for float32, onnxruntime's ``com.microsoft::Gelu`` / ``com.microsoft::FastGelu``;
for other types (or where the provider has no kernel of those), ``ortgpu::Gelu`` / ``ortgpu::FastGelu``
(for float32 only below opset 15, where their function bodies cannot type their constants).  The provider that would run the Erf
(or Tanh) must have a kernel for the result.
"""
from __future__ import annotations

import math

from ortgpu.fused_ops import DOMAIN, MS_DOMAIN, body_supports, ms_takes
from ortgpu.graph import Graph, Node
from ortgpu.graph_query import elem_type
from ortgpu.optimizer.graph_tools.matching import GraphView, Rewrite, make_node, provider_runs

GELU_OPSET = 20


def fuse_gelu(graph: Graph, providers, overridable: set[str]) -> int:
    """Fuse the erf form; returns the number of fusions."""
    return _fuse(graph, providers, overridable, "Erf", _erf_input, "none")


def fuse_fast_gelu(graph: Graph, providers, overridable: set[str]) -> int:
    """Fuse the tanh form; returns the number of fusions."""
    return _fuse(graph, providers, overridable, "Tanh", _tanh_input, "tanh")


def _fuse(graph, providers, overridable, core_op, match_input, approximate) -> int:
    view = GraphView(graph, overridable)
    rewrite = Rewrite()
    for core in graph.nodes:
        if core.op_type != core_op or core.domain != "":
            continue
        head = match_input(view, core)
        if head is None:
            continue
        x, inner = head
        tail = _one_plus_times_half_x(view, core.outputs[0], x)
        if tail is None or not view.is_float(x):
            continue
        out_node, outer = tail
        nodes = inner + [core] + outer
        if rewrite.claimed(*nodes):
            continue
        fused = _gelu_node(graph, providers, view, x, out_node.outputs[0], approximate, core)
        if fused is None or not provider_runs(graph, providers, core, fused):
            continue
        rewrite.replace(nodes, fused)
    return rewrite.finish(graph)


def _gelu_node(graph, providers, view, x, out, approximate, anchor) -> Node | None:
    """ai.onnx Gelu from opset 20; below it onnxruntime's com.microsoft Gelu / FastGelu, or
    ortgpu's (function bodies) where the provider has no kernel for those (bfloat16)."""
    opset = graph.opsets.get("", 1)
    if opset >= GELU_OPSET:
        return make_node("Gelu", "", graph, [x], [out], {"approximate": approximate}, anchor)
    op = "Gelu" if approximate == "none" else "FastGelu"
    elem = elem_type(view.graph, x)
    if ms_takes(elem):
        ms = make_node(op, MS_DOMAIN, graph, [x], [out], {}, anchor)
        if provider_runs(graph, providers, anchor, ms):
            return ms
    if not body_supports(elem, opset):
        return None
    return make_node(op, DOMAIN, graph, [x], [out], {}, anchor)


def _mul_by(view: GraphView, node: Node | None, value: float) -> str | None:
    """For Mul(v, c) or Mul(c, v) with scalar c close to `value`: v, else None."""
    if node is None or node.op_type != "Mul" or node.domain != "" or len(node.inputs) != 2:
        return None
    for i in (0, 1):
        if view.scalar_near(node.inputs[1 - i], value) and view.scalar(node.inputs[i]) is None:
            return node.inputs[i]
    return None


def _erf_input(view: GraphView, erf: Node):
    """x and the scaling node when the Erf reads x / sqrt(2)."""
    scaled = erf.inputs[0]
    node = view.producer.get(scaled)
    if node is None or not view.private(scaled) or node.domain != "":
        return None
    if node.op_type == "Div" and view.scalar_near(node.inputs[1], math.sqrt(2)):
        return node.inputs[0], [node]
    x = _mul_by(view, node, 1 / math.sqrt(2))
    return (x, [node]) if x is not None else None


def _tanh_input(view: GraphView, tanh: Node):
    """x and the nodes of sqrt(2/pi) * (x + 0.044715 * x^3) when the Tanh reads that."""
    scaled = tanh.inputs[0]
    mul = view.producer.get(scaled)
    u = _mul_by(view, mul, math.sqrt(2 / math.pi)) if view.private(scaled) else None
    add = view.op(u, "Add") if u is not None and view.private(u) else None
    if add is None or len(add.inputs) != 2:
        return None
    for x, w in (add.inputs, add.inputs[::-1]):
        w_node = view.producer.get(w)
        cube = _mul_by(view, w_node, 0.044715) if view.private(w) else None
        cube_nodes = _cube_of(view, cube, x) if cube is not None else None
        if cube_nodes is not None:
            return x, cube_nodes + [w_node, add, mul]
    return None


def _cube_of(view: GraphView, name: str, x: str) -> list[Node] | None:
    """The nodes computing `name` = x^3 (Pow(x, 3) or x * (x * x)), else None."""
    node = view.producer.get(name)
    if node is None or node.domain != "" or not view.private(name):
        return None
    if node.op_type == "Pow" and node.inputs[0] == x and view.scalar_near(node.inputs[1], 3.0):
        return [node]
    if node.op_type == "Mul" and x in node.inputs:
        sq = view.other_input(node, x)
        sq_node = view.op(sq, "Mul") if sq is not None and view.private(sq) else None
        if sq_node is not None and sq_node.inputs == [x, x]:
            return [sq_node, node]
    return None


def _one_plus_times_half_x(view: GraphView, core_out: str, x: str):
    """From the Erf/Tanh output t: the node computing x * 0.5 * (1 + t) and the nodes of that
    product, else None."""
    add = view.only_reader(core_out)
    if add is None or add.op_type != "Add" or add.domain != "":
        return None
    one = view.other_input(add, core_out)
    if one is None or not view.scalar_near(one, 1.0):
        return None
    a = add.outputs[0]
    m1 = view.only_reader(a)
    if m1 is None or m1.op_type != "Mul" or m1.domain != "":
        return None
    other = view.other_input(m1, a)
    if other is None:
        return None
    if other == x:                                   # (x * a) * 0.5
        m2 = view.only_reader(m1.outputs[0])
        return (m2, [add, m1, m2]) if _mul_by(view, m2, 0.5) == m1.outputs[0] else None
    if view.scalar_near(other, 0.5):                 # x * (a * 0.5)
        m2 = view.only_reader(m1.outputs[0])
        if m2 is not None and m2.op_type == "Mul" and view.other_input(m2, m1.outputs[0]) == x:
            return m2, [add, m1, m2]
        return None
    half = view.producer.get(other)                  # (x * 0.5) * a
    if view.private(other) and _mul_by(view, half, 0.5) == x:
        return m1, [half, add, m1]
    return None
