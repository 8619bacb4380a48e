"""CastElimination (basic level): a Cast to the type its input already has leaves the graph.

Rules: the input's element type is known (from shape inference or an initializer) and equals
the `to` attribute.  A Cast that changes the type stays, even where the values would survive
the round trip.  Graph outputs keep their names as in EliminateIdentity.
"""
from __future__ import annotations

from ortgpu.graph import Graph
from ortgpu.graph_query import elem_type
from ortgpu.optimizer.graph_tools.graph_edit import Rewirer


def eliminate_cast(graph: Graph, providers, overridable: set[str]) -> int:
    rw = Rewirer(graph)
    for n in graph.nodes:
        if n.op_type != "Cast" or n.domain != "" or not n.inputs or not n.inputs[0]:
            continue
        src = n.inputs[0]
        have = elem_type(graph, src)
        if have and have == n.attrs.get("to"):
            rw.bypass(n, src, n.outputs[0])
    return rw.finish()
