"""LayerNormFusion (extended level): layer normalization written out in primitive ops becomes
one LayerNormalization node.

Pattern (operands of Add and Mul in either order)::

    mean = ReduceMean(x, axes)        d = Sub(x, mean)
    var  = ReduceMean(Pow(d, 2) | Mul(d, d), axes)
    y    = Div(d, Sqrt(Add(var, epsilon)))
    out  = Add(Mul(y, gamma), beta)   (the Add, or both, may be absent)

Rules: both ReduceMeans keep dims and reduce the same trailing axes (negative axes, or
positive ones with the rank known); epsilon, gamma and beta are constants, gamma and beta
of the normalized shape (a missing gamma becomes ones, which needs that shape known);
every intermediate is read only inside the pattern; x is a float tensor.  The result is
ai.onnx LayerNormalization (axis = the first reduced axis, as a negative number), below
opset 17 too for float32, as onnxruntime's optimizer writes it (onnxruntime registers the op
in ai.onnx from version 1, so the saved model runs there, though onnx.checker rejects it);
other types below opset 17 (or no kernel for that) get ``ortgpu::LayerNormalization``
(a function body; float32 only below opset 15).  The provider that
would run the first ReduceMean must have a kernel for it.
"""
from __future__ import annotations

import numpy as np

from ortgpu.fused_ops import DOMAIN, body_supports, ms_takes
from ortgpu.graph import Graph, Node
from ortgpu.graph_query import add_initializer, elem_type
from ortgpu.optimizer.graph_tools.matching import GraphView, apply, first_runnable, make_node

LAYER_NORM_OPSET = 17


def fuse_layer_norm(graph: Graph, providers, overridable: set[str]) -> int:
    """Fuse every decomposed layer normalization; returns the number of fusions."""
    view = GraphView(graph, overridable)
    removed, added = [], []
    for r1 in graph.nodes:
        m = _match(view, r1) if r1.op_type == "ReduceMean" and r1.domain == "" else None
        if m is None:
            continue
        x, axis, eps, gamma, beta, out, nodes = m
        fused = _layer_norm_node(graph, providers, view, x, axis, eps, gamma, beta, out, r1)
        if fused is None:
            continue
        _finish_inputs(graph, view, fused, axis)
        removed += nodes
        added.append(fused)
    if added:
        apply(graph, removed, added)
    return len(added)


def _axes(view: GraphView, node: Node) -> list[int] | None:
    if node.attrs.get("keepdims", 1) != 1:
        return None
    if node.opset >= 18:
        return view.ints(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else None
    return node.attrs.get("axes")


def _trailing_axis(axes: list[int], rank: int | None) -> int | None:
    """The first of `axes` as a negative axis when they are the trailing axes, else None."""
    if not axes:
        return None
    if rank is not None:
        axes = [a - rank if a >= 0 else a for a in axes]
    elif any(a >= 0 for a in axes):
        return None
    axes = sorted(axes)
    return axes[0] if axes == list(range(axes[0], 0)) else None


def _reader(view: GraphView, name: str, op: str) -> Node | None:
    n = view.only_reader(name)
    return n if n is not None and n.op_type == op and n.domain == "" else None


def _match(view: GraphView, r1: Node):
    x = r1.inputs[0]
    axes = _axes(view, r1)
    axis = _trailing_axis(axes, view.rank(x)) if axes else None
    sub = _reader(view, r1.outputs[0], "Sub")
    if axis is None or sub is None or sub.inputs != [x, r1.outputs[0]] or not view.is_float(x):
        return None
    d = sub.outputs[0]
    users = view.readers.get(d, [])
    if d in view.graph_outputs or len({id(u) for u in users}) != 2:
        return None
    sq = next((u for u in users if u.op_type in ("Pow", "Mul")), None)
    div = next((u for u in users if u.op_type == "Div"), None)
    if sq is None or div is None or div.inputs[0] != d or sq.domain != "" or div.domain != "":
        return None
    if not ((sq.op_type == "Pow" and sq.inputs[0] == d and view.scalar_near(sq.inputs[1], 2.0))
            or (sq.op_type == "Mul" and sq.inputs == [d, d])):
        return None
    r2 = _reader(view, sq.outputs[0], "ReduceMean")
    if r2 is None or _trailing_axis(_axes(view, r2) or [], view.rank(x)) != axis:
        return None
    add_eps = _reader(view, r2.outputs[0], "Add")
    eps = view.scalar(view.other_input(add_eps, r2.outputs[0]) or "") if add_eps else None
    sqrt = _reader(view, add_eps.outputs[0], "Sqrt") if eps is not None else None
    if sqrt is None or _reader(view, sqrt.outputs[0], "Div") is not div or div.inputs[1] != sqrt.outputs[0]:
        return None
    nodes = [r1, sub, sq, r2, add_eps, sqrt, div]
    y = div.outputs[0]
    gamma = beta = None
    mul = _reader(view, y, "Mul")
    if mul is not None and _param(view, view.other_input(mul, y), x, axis):
        gamma, y = view.other_input(mul, y), mul.outputs[0]
        nodes.append(mul)
    add = _reader(view, y, "Add")
    if add is not None and _param(view, view.other_input(add, y), x, axis):
        beta, y = view.other_input(add, y), add.outputs[0]
        nodes.append(add)
    if gamma is None and not all(isinstance(d, int) for d in (view.shape(x) or [None])[axis:]):
        return None   # ones for gamma need the normalized shape
    return x, axis, eps, gamma, beta, y, nodes


def _param(view: GraphView, name: str | None, x: str, axis: int) -> bool:
    """A constant gamma or beta of the normalized shape (leading 1s allowed): each dim equals
    x's where shape inference knows it, and is not a broadcast 1 where it does not."""
    v = view.const(name) if name else None
    if v is None:
        return False
    shape = list(v.shape)
    while len(shape) > -axis and shape[0] == 1:
        shape.pop(0)
    x_shape = view.shape(x)
    want = x_shape[axis:] if x_shape and len(x_shape) >= -axis else [None] * -axis
    return len(shape) == -axis and all(d == w if isinstance(w, int) else d > 1 for d, w in zip(shape, want))


def _normalized_param(graph: Graph, view: GraphView, name: str, axis: int) -> str:
    """`name`, or a new constant holding its value without the leading 1s."""
    v = view.const(name)
    if v.ndim == -axis:
        return name
    return add_initializer(graph, f"{name}_normalized", v.reshape(v.shape[v.ndim + axis:]))


def _layer_norm_node(graph, providers, view, x, axis, eps, gamma, beta, out, anchor) -> Node | None:
    """ai.onnx LayerNormalization (below opset 17 as onnxruntime's own optimizer writes it: the
    op onnxruntime registers in the ai.onnx domain from version 1) for float32; other types
    below opset 17, or no kernel for that, ``ortgpu::LayerNormalization`` (a function body)."""
    attrs = {"axis": axis, "epsilon": eps}
    opset = graph.opsets.get("", 1)
    ins = [x, gamma or "", beta or ""]
    elem = elem_type(view.graph, x)
    body_ok = opset < LAYER_NORM_OPSET and body_supports(elem, opset)
    onnx_ok = opset >= LAYER_NORM_OPSET or ms_takes(elem)
    return first_runnable(
        graph, providers, anchor,
        lambda: make_node("LayerNormalization", "", graph, ins, [out], attrs, anchor) if onnx_ok else None,
        lambda: make_node("LayerNormalization", DOMAIN, graph, ins, [out], attrs, anchor) if body_ok else None)


def _finish_inputs(graph: Graph, view: GraphView, node: Node, axis: int) -> None:
    """Give the fused node its gamma (ones when the pattern had none) and beta in the
    normalized shape."""
    x, gamma, beta = node.inputs
    if gamma:
        gamma = _normalized_param(graph, view, gamma, axis)
    else:
        from ortgpu.dtypes import np_dtype  # noqa: PLC0415
        gamma = add_initializer(graph, f"{node.outputs[0]}_gamma",
                                np.ones(view.shape(x)[axis:], np_dtype(elem_type(view.graph, x))))
    node.inputs = [x, gamma] + ([_normalized_param(graph, view, beta, axis)] if beta else [])
