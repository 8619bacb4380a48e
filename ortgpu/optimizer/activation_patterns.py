"""Recognize an activation node that ConvActivationFusion and GemmActivationFusion can fold
into their fused op: its name and parameters as the fused kernels take them
(providers/kernels/fused.py ACTIVATIONS).

Rules: Relu, Sigmoid, Tanh, HardSwish have no parameters; LeakyRelu takes [alpha] and
HardSigmoid [alpha, beta], with the schema defaults when the node leaves them out; Clip
takes [min, max], from attributes before opset 11 and from constant scalar inputs after
(an omitted bound is open: -inf / +inf; a bound that is not a constant is no match).
"""
from __future__ import annotations

import math

from ortgpu.graph import Node
from ortgpu.optimizer.matching import GraphView

_PLAIN = ("Relu", "Sigmoid", "Tanh", "HardSwish")


def activation_of(view: GraphView, node: Node) -> tuple[str, list[float]] | None:
    """(activation name, parameters) when `node` is a foldable activation, else None."""
    if node.domain != "" or len(node.outputs) != 1:
        return None
    op, attrs = node.op_type, node.attrs
    if op in _PLAIN:
        return op, []
    if op == "LeakyRelu":
        return op, [float(attrs.get("alpha", 0.01))]
    if op == "HardSigmoid":
        return op, [float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))]
    if op == "Clip":
        return _clip_bounds(view, node)
    return None


def _clip_bounds(view: GraphView, node: Node):
    if node.opset < 11:
        return "Clip", [float(node.attrs.get("min", -math.inf)), float(node.attrs.get("max", math.inf))]
    bounds = []
    for i, open_value in ((1, -math.inf), (2, math.inf)):
        name = node.inputs[i] if i < len(node.inputs) else ""
        if not name:
            bounds.append(open_value)
            continue
        v = view.scalar(name)
        if v is None:
            return None
        bounds.append(v)
    return "Clip", bounds


def fuse_with_activation(graph, providers, overridable, op_type: str, fused_op: str) -> int:
    """Fold the activation that alone reads a float `op_type` node's output into one
    ``ortgpu::fused_op`` node (the op's attributes plus ``activation``/``activation_params``);
    returns the number of fusions."""
    from ortgpu.optimizer.fused_bodies import body_supports  # noqa: PLC0415
    from ortgpu.optimizer.fused_functions import DOMAIN  # noqa: PLC0415
    from ortgpu.optimizer.matching import apply, make_node, provider_runs  # noqa: PLC0415
    view = GraphView(graph, overridable)
    removed, added = [], []
    for node in graph.nodes:
        if (node.op_type != op_type or node.domain != "" or len(node.outputs) != 1
                or "broadcast" in node.attrs):   # Gemm before opset 7: legacy broadcasting
            continue
        y = node.outputs[0]
        act_node = view.only_reader(y)
        if act_node is None or not view.is_float(y) or act_node.inputs[0] != y:
            continue
        act = activation_of(view, act_node)
        if act is None:
            continue
        name, params = act
        opset = graph.opsets.get("", 1)
        if name == "Clip" and 11 <= opset and not body_supports(view.elem_type(y), opset):
            continue
        attrs = dict(node.attrs, activation=name)
        if params:  # (an empty list has no attribute type in a saved model)
            attrs["activation_params"] = params
        fused = make_node(fused_op, DOMAIN, graph, node.inputs, act_node.outputs, attrs, node)
        if not provider_runs(graph, providers, node, fused):
            continue
        removed += [node, act_node]
        added.append(fused)
    if added:
        apply(graph, removed, added)
    return len(added)
