"""BiasGeluFusion (extended level): a bias Add feeding a GELU becomes one node.

Pattern: ``Gelu(Add(x, bias))`` (Add operands in either order) where the Gelu is ai.onnx
Gelu or the ``ortgpu::Gelu`` / ``ortgpu::FastGelu`` (without bias) that GeluFusion creates.

Rules: bias is a 1-D constant and x is not a constant; the Add's output is read only by the
Gelu.  The erf form becomes ``ortgpu::BiasGelu(x, bias)``, the tanh form
``ortgpu::FastGelu(x, bias)``; both add in x's type first, as the Add did.  Below opset 15
only float32 fuses (their function bodies' constants are float32 there).  The provider that
would run the Gelu must have a kernel for the result.
"""
from __future__ import annotations

from ortgpu.fused_ops import DOMAIN, body_supports
from ortgpu.graph import Graph, Node
from ortgpu.graph_query import elem_type
from ortgpu.optimizer.graph_tools.matching import GraphView, apply, make_node, provider_runs


def fuse_bias_gelu(graph: Graph, providers, overridable: set[str]) -> int:
    """Fuse every bias Add + Gelu; returns the number of fusions."""
    view = GraphView(graph, overridable)
    removed, added = [], []
    opset = graph.opsets.get("", 1)
    for gelu in graph.nodes:
        approximate = _gelu_form(gelu)
        if approximate is None:
            continue
        a = gelu.inputs[0]
        add = view.op(a, "Add")
        if add is None or not view.private(a) or len(add.inputs) != 2:
            continue
        x, bias = _x_and_bias(view, add)
        if x is None or not view.is_float(x) or not body_supports(elem_type(view.graph, x), opset):
            continue
        op = "BiasGelu" if approximate == "none" else "FastGelu"
        fused = make_node(op, DOMAIN, graph, [x, bias], gelu.outputs, {}, gelu)
        if not provider_runs(graph, providers, gelu, fused):
            continue
        removed += [add, gelu]
        added.append(fused)
    if added:
        apply(graph, removed, added)
    return len(added)


def _gelu_form(node: Node) -> str | None:
    """'none' or 'tanh' for a Gelu this pass can extend, else None."""
    if node.domain == "" and node.op_type == "Gelu":
        return node.attrs.get("approximate", "none")
    if node.domain == DOMAIN and node.op_type == "Gelu":
        return "none"
    if node.domain == DOMAIN and node.op_type == "FastGelu" and len([i for i in node.inputs if i]) == 1:
        return "tanh"
    return None


def _x_and_bias(view: GraphView, add: Node):
    for i in (0, 1):
        c = view.const(add.inputs[i])
        if c is not None and c.ndim == 1 and view.const(add.inputs[1 - i]) is None:
            return add.inputs[1 - i], add.inputs[i]
    return None, None
