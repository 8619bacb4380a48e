"""ConstantSharing (basic level): small constant initializers with equal contents become one.

Rules: initializers that are constants (not graph inputs) of at most SHARE_LIMIT_BYTES, with
the same dtype, shape and bytes; the first in the graph's order stays and every reader of
the others reads it (in subgraphs too).  Sharing makes equal computations visibly equal to
CommonSubexpressionElimination.  The copies, unread now, are dropped by
UnusedInitializerElimination.
"""
from __future__ import annotations

from ortgpu.graph import Graph
from ortgpu.graph_query import constants, consumers, output_names
from ortgpu.optimizer.graph_tools.graph_edit import rename_uses

SHARE_LIMIT_BYTES = 4096


def share_constants(graph: Graph, providers, overridable: set[str]) -> int:
    outs = output_names(graph)
    users = consumers(graph)
    first: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    for name, value in constants(graph, overridable).items():
        if value.nbytes > SHARE_LIMIT_BYTES or value.dtype == object or name in outs:
            continue
        key = (value.dtype.str, value.shape, value.tobytes())
        keep = first.setdefault(key, name)
        if keep != name and users.get(name):
            alias[name] = keep
    rename_uses(graph, alias)
    return len(alias)
