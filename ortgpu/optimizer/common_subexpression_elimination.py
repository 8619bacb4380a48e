"""CommonSubexpressionElimination (basic level): a node that computes what an earlier node
computes already leaves the graph; its readers read the earlier node's outputs.

Rules: same domain, op type and opset, the same inputs in the same order, equal attributes
(compared by value) and the same number of outputs; not a nondeterministic op (random ops,
Dropout) and no subgraph attribute; the earlier node produces every output the later one
produces; none of the later node's outputs is a graph output (its name must stay).
"""
from __future__ import annotations

import numpy as np

from ortgpu.graph import Graph, Node
from ortgpu.graph_query import output_names
from ortgpu.optimizer.graph_tools.graph_edit import remove, rename_uses

_NONDETERMINISTIC = {"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike",
                     "Multinomial", "Bernoulli", "Dropout"}


def _attr_key(value):
    """A hashable, value-comparing stand-in for a parsed attribute value."""
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape,
                tuple(value.ravel().tolist()) if value.dtype == object else value.tobytes())
    if isinstance(value, list):
        return ("list",) + tuple(_attr_key(v) for v in value)
    if hasattr(value, "SerializeToString"):  # a TypeProto
        return ("proto", value.SerializeToString())
    if isinstance(value, float):  # by bits: 0.0 and -0.0 differ, NaN equals NaN
        return ("float", value.hex())
    return value


def _key(node: Node):
    if node.subgraphs() or (node.domain == "" and node.op_type in _NONDETERMINISTIC):
        return None
    attrs = frozenset((k, _attr_key(v)) for k, v in node.attrs.items())
    return (node.domain, node.op_type, node.opset, tuple(node.inputs), attrs, len(node.outputs))


def eliminate_common_subexpressions(graph: Graph, providers, overridable: set[str]) -> int:
    outs = output_names(graph)
    seen: dict = {}
    alias: dict[str, str] = {}  # output of a duplicate -> the same output of the earlier node
    dead = []
    for n in graph.nodes:
        if alias:  # nodes come in topological order: every input is final here
            n.inputs = [alias.get(x, x) for x in n.inputs]
        key = _key(n)
        if key is None:
            continue
        earlier = seen.setdefault(key, n)
        if earlier is n:
            continue
        pairs = [(mine, theirs) for mine, theirs in zip(n.outputs, earlier.outputs) if mine]
        if any(not theirs or mine in outs for mine, theirs in pairs):
            continue
        alias.update(pairs)
        dead.append(n)
    rename_uses(graph, alias)  # subgraphs read outer values too
    remove(graph, dead)
    return len(dead)
