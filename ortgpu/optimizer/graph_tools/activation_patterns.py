"""Recognize an activation node that ConvActivationFusion and GemmActivationFusion can fold
into their fused op, and make that op (onnxruntime's com.microsoft FusedConv / FusedGemm
where it takes the activation, ortgpu's otherwise): its name and parameters as the fused kernels take them
(providers/kernels/fused.py ACTIVATIONS).

Rules: Relu, Sigmoid, Tanh, HardSwish have no parameters; LeakyRelu takes [alpha] and
HardSigmoid [alpha, beta], with the schema defaults when the node leaves them out; Clip
takes [min, max], from attributes before opset 11 and from constant scalar inputs after
(an omitted bound is open: -inf / +inf; a bound that is not a constant is no match).
HardSwish written out, ``y * Clip(y + 3, 0, 6) / 6`` (Div by 6 or Mul by 1/6, operands of Add
and Mul in either order, as paddle2onnx exports it), is HardSwish too.
"""
from __future__ import annotations

import math

from ortgpu.graph import Node
from ortgpu.graph_query import elem_type
from ortgpu.optimizer.graph_tools.matching import GraphView

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


def decomposed_hard_swish(view: GraphView, y: str) -> tuple[list[Node], str] | None:
    """The nodes of ``y * Clip(y + 3, 0, 6) / 6`` reading `y` (its only readers) and the
    name of the result, else None."""
    readers = view.readers.get(y, [])
    add = next((r for r in readers if r.op_type == "Add" and r.domain == ""), None)
    mul = next((r for r in readers if r.op_type == "Mul" and r.domain == ""), None)
    if add is None or mul is None or len(readers) != 2 or y in view.graph_outputs:
        return None
    three = view.other_input(add, y)
    clip = view.only_reader(add.outputs[0])
    if three is None or not view.scalar_near(three, 3.0) or clip is None or clip.op_type != "Clip" \
            or clip.inputs[0] != add.outputs[0]:
        return None
    bounds = _clip_bounds(view, clip)
    if bounds is None or bounds[1] != [0.0, 6.0] or view.other_input(mul, y) != clip.outputs[0] \
            or not view.private(clip.outputs[0]):
        return None
    last = view.only_reader(mul.outputs[0])
    if last is None or len(last.inputs) != 2 or (last.op_type == "Div" and last.inputs[0] != mul.outputs[0]):
        return None
    six = view.other_input(last, mul.outputs[0])
    if not ((last.op_type == "Div" and view.scalar_near(six, 6.0))
            or (last.op_type == "Mul" and view.scalar_near(six, 1 / 6))):
        return None
    return [add, clip, mul, last], last.outputs[0]


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


def fused_activation_node(graph, providers, anchor: Node, fused_op: str, inputs, outputs, base_attrs: dict,
                          name: str, params, elem: int | None, ms_ok: bool = True):
    """The fused node of `anchor` + activation `name`: onnxruntime's ``com.microsoft::fused_op``
    where onnxruntime's op takes that activation and the provider runs it, else
    ``ortgpu::fused_op`` (attributes ``activation``/``activation_params``, with a function
    body); None when neither can be made or run.  `ms_ok` False: the inputs are outside what
    onnxruntime's op accepts (FusedConv's Z of another shape than the result)."""
    from ortgpu.fused_ops import DOMAIN, MS_DOMAIN, body_supports, ms_activation_attrs, ms_takes  # noqa: PLC0415
    from ortgpu.optimizer.graph_tools.matching import make_node, provider_runs  # noqa: PLC0415
    ms_attrs = ms_activation_attrs(fused_op, name, params) if ms_ok and ms_takes(elem) else None
    if ms_attrs is not None:
        fused = make_node(fused_op, MS_DOMAIN, graph, inputs, outputs, dict(base_attrs, **ms_attrs), anchor)
        if provider_runs(graph, providers, anchor, fused):
            return fused
    opset = graph.opsets.get("", 1)
    if name == "Clip" and 11 <= opset and not body_supports(elem, opset):
        return None
    attrs = dict(base_attrs, activation=name)
    if params:  # (an empty list has no attribute type in a saved model)
        attrs["activation_params"] = list(params)
    fused = make_node(fused_op, DOMAIN, graph, inputs, outputs, attrs, anchor)
    return fused if provider_runs(graph, providers, anchor, fused) else None


def fuse_with_activation(graph, providers, overridable, op_type: str, fused_op: str, accept=None) -> int:
    """Fold the activation that alone reads a float `op_type` node's output into one fused
    node (:func:`fused_activation_node`: onnxruntime's com.microsoft op where it takes the
    activation, else ortgpu's); `accept(node)`, when given, says which `op_type` nodes may
    fuse.  Returns the number of fusions."""
    from ortgpu.optimizer.graph_tools.matching import apply  # noqa: PLC0415
    view = GraphView(graph, overridable)
    removed, added = [], []
    for node in graph.nodes:
        if (node.op_type != op_type or node.domain != "" or len(node.outputs) != 1
                or "broadcast" in node.attrs   # Gemm before opset 7: legacy broadcasting
                or (accept is not None and not accept(node))):
            continue
        y = node.outputs[0]
        if not view.is_float(y):
            continue
        act_node = view.only_reader(y)
        act = activation_of(view, act_node) if act_node is not None and act_node.inputs[0] == y else None
        if act is not None:
            act_nodes, out = [act_node], act_node.outputs[0]
        else:
            found = decomposed_hard_swish(view, y)
            if found is None:
                continue
            (act_nodes, out), act = found, ("HardSwish", [])
        name, params = act
        fused = fused_activation_node(graph, providers, node, fused_op, node.inputs, [out], node.attrs,
                                      name, params, elem_type(view.graph, y))
        if fused is None:
            continue
        removed += [node] + act_nodes
        added.append(fused)
    if added:
        apply(graph, removed, added)
    return len(added)
