"""DeadNodeElimination (basic level): nodes whose outputs nobody needs leave the graph.

Rules: a node is needed when one of its outputs is a graph output or is read by a needed
node (directly or from inside a needed node's subgraph).  ONNX ops have no side effects, so
the rest goes, including nodes with no outputs.  Runs after the rewriting passes, which
leave the producers of values they replaced behind.
"""
from __future__ import annotations

from ortgpu.graph import Graph
from ortgpu.graph_query import output_names
from ortgpu.optimizer.graph_tools.graph_edit import remove


def eliminate_dead_nodes(graph: Graph, providers, overridable: set[str]) -> int:
    needed = output_names(graph)
    dead = []
    for n in reversed(graph.nodes):
        if not any(o and o in needed for o in n.outputs):
            dead.append(n)
            continue
        needed.update(x for x in n.inputs if x)
        for g in n.subgraphs():
            needed |= g.outer_names()
    remove(graph, dead)
    return len(dead)
