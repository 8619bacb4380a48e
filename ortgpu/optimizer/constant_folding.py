"""Constant folding (basic level).

A node whose inputs are all constants (initializers that are not graph inputs, or no
inputs at all) and whose op is deterministic is run once; its outputs become
initializers and the node leaves the graph.  Outputs larger than FOLD_LIMIT_BYTES stay
computed at run time, so folding never inflates a model's memory without bound.
"""
from __future__ import annotations

import numpy as np
import onnx

from ortgpu.graph import Graph

FOLD_LIMIT_BYTES = 64 << 20

# Ops whose result changes between runs (or that only make sense at run time).
_NOT_FOLDABLE = {
    ("", "RandomUniform"), ("", "RandomNormal"), ("", "RandomUniformLike"), ("", "RandomNormalLike"),
    ("", "Multinomial"), ("", "Bernoulli"), ("", "Dropout"),
}


def fold_constants(graph: Graph, providers, overridable: set[str]) -> int:
    """Fold what can be folded in `graph` (not its subgraphs); returns the number of nodes folded.

    `overridable` names the initializers a run may replace (graph inputs from IR 4 on);
    they are not constants."""
    from ortgpu.executor import Plan  # noqa: PLC0415  (the executor imports this module's callers)
    host = [p for p in providers if p.device == "cpu"]  # fold on the host: no device round trip
    graph_inputs = {v.name for v in graph.inputs}
    constants = {n for n in graph.initializers if n not in overridable}
    outputs = {v.name for v in graph.outputs}
    kept, folded = [], 0
    for node in graph.nodes:
        ins = [x for x in node.inputs if x]
        if ((node.domain, node.op_type) in _NOT_FOLDABLE or node.subgraphs()
                or not all(x in constants for x in ins)
                or any(o in outputs or o in graph_inputs for o in node.outputs if o)):
            kept.append(node)
            continue
        mini = Graph(f"fold_{node.name}", [node], [], [], {x: graph.initializers[x] for x in ins},
                     graph.types, graph.opsets)
        mini.outputs = [onnx.ValueInfoProto(name=o) for o in node.outputs if o]
        try:
            values = Plan(mini, host).run([])
        except Exception:
            kept.append(node)  # it will fail (or succeed) at run time, with the node named
            continue
        if not all(isinstance(v, np.ndarray) and v.nbytes <= FOLD_LIMIT_BYTES for v in values):
            kept.append(node)
            continue
        for name, value in zip((o for o in node.outputs if o), values):
            graph.initializers[name] = value
            constants.add(name)
        folded += 1
    graph.nodes = kept
    return folded

