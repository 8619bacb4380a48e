"""EliminateSlice (basic level): a Slice that keeps every element leaves the graph.

Rules: starts, ends, axes and steps are constants (attributes before opset 10); every step
is 1; on each sliced axis the start is 0 (or at most -dim) and the end reaches the axis'
end: at least its static dim, or at least 2**31 - 1 (the "to the end" sentinel exporters
write) when the dim is not static.  A Slice that cuts anything stays.  Graph outputs keep
their names as in EliminateIdentity.
"""
from __future__ import annotations

from ortgpu.graph import Graph, Node
from ortgpu.graph_query import dims, int_list
from ortgpu.optimizer.graph_tools.graph_edit import bypass_each

_TO_THE_END = 2**31 - 1


def _params(node: Node, consts: dict):
    """(starts, ends, axes, steps) as int lists, or None when one is not a constant."""
    if node.opset < 10:
        starts, ends = node.attrs.get("starts"), node.attrs.get("ends")
        axes = node.attrs.get("axes", list(range(len(starts or []))))
        return (starts, ends, axes, [1] * len(starts or [])) if starts is not None and ends is not None else None
    ins = node.inputs + [""] * (5 - len(node.inputs))
    got = []
    for x in ins[1:]:
        got.append(int_list(consts.get(x)) if x else None)
        if x and got[-1] is None:
            return None
    starts, ends, axes, steps = got
    if starts is None or ends is None:
        return None
    return starts, ends, axes if axes is not None else list(range(len(starts))), steps or [1] * len(starts)


def _keeps_everything(node: Node, graph: Graph, consts: dict) -> bool:
    params = _params(node, consts)
    if params is None:
        return False
    starts, ends, axes, steps = params
    shape = dims(graph, node.inputs[0])
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if step != 1:
            return False
        dim = None
        if shape is not None and -len(shape) <= axis < len(shape):
            dim = shape[axis] if isinstance(shape[axis], int) else None
        whole_start = start == 0 or (dim is not None and start <= -dim)
        whole_end = end >= _TO_THE_END or (dim is not None and end >= dim)
        if not (whole_start and whole_end):
            return False
    return True


def eliminate_slice(graph: Graph, providers, overridable: set[str]) -> int:
    return bypass_each(graph, overridable, ("Slice",),
                       lambda n, g, consts: n.inputs[0] if n.inputs[0] and _keeps_everything(n, g, consts) else None)
