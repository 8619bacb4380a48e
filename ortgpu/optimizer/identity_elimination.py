"""EliminateIdentity (basic level): an Identity node leaves the graph and its readers read its
input.

Rules: any Identity (tensor, sequence or optional value).  When its output is a graph output,
the producer of its input is renamed to produce that output instead; an Identity from a graph
input, an initializer or an outer-scope value straight to a graph output stays.
"""
from __future__ import annotations

from ortgpu.graph import Graph
from ortgpu.optimizer.graph_tools.graph_edit import Rewirer


def eliminate_identity(graph: Graph, providers, overridable: set[str]) -> int:
    rw = Rewirer(graph)
    for n in graph.nodes:
        if n.op_type == "Identity" and n.domain == "" and n.inputs and n.inputs[0]:
            rw.bypass(n, n.inputs[0], n.outputs[0])
    return rw.finish()
