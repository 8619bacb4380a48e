"""ReshapeFusion (basic level): Reshapes whose shape is computed at run time, or that reshape
a Reshape, become one Reshape with a constant shape.

Rules:
- Computed shape: the shape input is not a constant but each of its elements is known (see
  shape_values): a static dim or constant stays that number; a dim symbol equal to the
  Reshape input's own dim at the same position becomes 0 ("copy this dim"), which needs
  allowzero=0.  Any other element (a dim of another axis, an unknown value) keeps the
  computation.  The Shape/Gather/Concat chain, unread now, goes with DeadNodeElimination.
- Chain: Reshape(Reshape(x, s1), s2) is Reshape(x, s2) when s2 is a constant without 0
  entries, or allowzero=1 (a 0 entry would copy a dim of the inner result, not of x).  The
  inner Reshape stays while others read it.
"""
from __future__ import annotations

import numpy as np

from ortgpu.graph import Graph, Node
from ortgpu.graph_query import add_initializer, constants, int_list, producers
from ortgpu.optimizer.graph_tools.shape_values import ShapeValues


def _constant_shape(node: Node, shapes: ShapeValues) -> list[int] | None:
    """The shape input as constant entries, or None when some element is not expressible."""
    value = shapes.of(node.inputs[1])
    own = shapes.dim_symbols(node.inputs[0])
    if value is None or value.scalar:
        return None
    out = []
    for pos, item in enumerate(value.items):
        if isinstance(item, int):
            out.append(item)
        elif not node.attrs.get("allowzero", 0) and own is not None and pos < len(own) and own[pos] == item:
            out.append(0)
        else:
            return None
    return out


def fuse_reshape(graph: Graph, providers, overridable: set[str]) -> int:
    consts = constants(graph, overridable)
    made = producers(graph)
    shapes = ShapeValues(graph, consts)
    fused = 0
    for n in graph.nodes:
        if n.op_type != "Reshape" or n.domain != "" or n.opset < 5 or len(n.inputs) < 2:
            continue
        if n.inputs[1] not in consts:
            shape = _constant_shape(n, shapes)
            if shape is not None:
                n.inputs = [n.inputs[0], add_initializer(graph, f"{n.name or n.outputs[0]}_shape",
                                                         np.array(shape, np.int64))]
                consts[n.inputs[1]] = graph.initializers[n.inputs[1]]
                fused += 1
        inner = made.get(n.inputs[0])
        target = int_list(consts.get(n.inputs[1]))
        if (inner is not None and inner.op_type == "Reshape" and inner.domain == "" and target is not None
                and (0 not in target or n.attrs.get("allowzero", 0))):
            n.inputs = [inner.inputs[0], n.inputs[1]]
            fused += 1
    return fused
