"""BiasGeluFusion (extended level): a bias Add feeding a GELU becomes one node.

Pattern: ``Gelu(Add(x, bias))`` (Add operands in either order) where the Gelu is ai.onnx
Gelu or the com.microsoft (or ortgpu) ``Gelu`` / ``FastGelu`` (without bias) that GeluFusion
creates.

Rules: bias is a 1-D constant and x is not a constant; the Add's output is read only by the
Gelu.  The erf form becomes onnxruntime's ``com.microsoft::BiasGelu(x, bias)``, the tanh form
``com.microsoft::FastGelu(x, bias)``, for float32 x when the bias spans x's last axis (as
onnxruntime requires) and the provider has those kernels; otherwise the ortgpu ops of the same
names (function bodies; float32 only below opset 15, where their constants are float32).  Both
add in x's type first, as the Add did.  The provider that
would run the Gelu must have a kernel for the result.
"""
from __future__ import annotations

from ortgpu.fused_ops import DOMAIN, MS_DOMAIN, body_supports, ms_takes
from ortgpu.graph import Graph, Node
from ortgpu.graph_query import elem_type
from ortgpu.optimizer.graph_tools.matching import GraphView, apply, first_runnable, make_node


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
        if x is None or not view.is_float(x):
            continue
        op = "BiasGelu" if approximate == "none" else "FastGelu"
        body_ok = body_supports(elem_type(view.graph, x), opset)
        x_shape = view.shape(x)
        ms_ok = (ms_takes(elem_type(view.graph, x)) and bool(x_shape)
                 and x_shape[-1] == view.const(bias).shape[0])  # onnxruntime: bias (hidden,)
        fused = first_runnable(
            graph, providers, gelu,
            lambda: make_node(op, MS_DOMAIN, graph, [x, bias], gelu.outputs, {}, gelu) if ms_ok else None,
            lambda: make_node(op, DOMAIN, graph, [x, bias], gelu.outputs, {}, gelu) if body_ok else None)
        if fused is None:
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
    if node.domain in (DOMAIN, MS_DOMAIN) and node.op_type == "Gelu":
        return "none"
    if node.domain in (DOMAIN, MS_DOMAIN) and node.op_type == "FastGelu" \
            and len([i for i in node.inputs if i]) == 1:
        return "tanh"
    return None


def _x_and_bias(view: GraphView, add: Node):
    for i in (0, 1):
        c = view.const(add.inputs[i])
        if c is not None and c.ndim == 1 and view.const(add.inputs[1 - i]) is None:
            return add.inputs[1 - i], add.inputs[i]
    return None, None
