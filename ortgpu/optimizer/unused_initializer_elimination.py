"""Drop initializers that no node, subgraph or graph output reads (basic level).

Runs after the rewriting passes, which leave the weights they replaced behind.
Initializers that are graph inputs (overridable) stay: a run may feed them.
"""
from __future__ import annotations

from ortgpu.graph import Graph


def remove_unused_initializers(graph: Graph, providers, overridable: set[str]) -> int:
    used = {v.name for v in graph.outputs} | {v.name for v in graph.inputs}
    for n in graph.nodes:
        used.update(x for x in n.inputs if x)
        for g in n.subgraphs():
            used |= g.outer_names()
    dead = [name for name in graph.initializers if name not in used]
    for name in dead:
        del graph.initializers[name]
    return len(dead)
