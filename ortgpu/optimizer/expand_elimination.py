"""ExpandElimination (basic level): an Expand that broadcasts nothing leaves the graph.

Rules: the shape input is a constant, the input's rank is known, the shape has no more
entries than the input has dims, and each entry (aligned to the right) is 1 or equals the
input's static dim there.  An Expand that adds dims or grows one stays, and so does one whose
input dims are unknown where the shape asks for more than 1.  Graph outputs keep their
names as in EliminateIdentity.
"""
from __future__ import annotations

from ortgpu.graph import Graph, Node
from ortgpu.graph_query import dims, int_list
from ortgpu.optimizer.graph_tools.graph_edit import bypass_each


def _broadcasts_nothing(node: Node, graph: Graph, consts: dict) -> bool:
    shape = int_list(consts.get(node.inputs[1])) if len(node.inputs) > 1 else None
    have = dims(graph, node.inputs[0])
    if shape is None or have is None or len(shape) > len(have):
        return False
    return all(want == 1 or want == dim for want, dim in zip(shape, have[len(have) - len(shape):]))


def eliminate_expand(graph: Graph, providers, overridable: set[str]) -> int:
    return bypass_each(graph, overridable, ("Expand",),
                       lambda n, g, consts: n.inputs[0] if n.inputs[0] and _broadcasts_nothing(n, g, consts) else None)
