"""EliminateDropout (basic level): a Dropout that is an identity at inference leaves the graph.

Rules: the Dropout does not train (opset 12+: no `training_mode` input, or a constant false
one; opset 6 and older: `is_test` set, as those versions train by default) and its `mask`
output is absent or read by nobody (at inference the mask is all true, but its shape is
only known at run time).  The ratio does not matter.  Graph outputs keep their names as in
EliminateIdentity.
"""
from __future__ import annotations

import numpy as np

from ortgpu.graph import Graph, Node
from ortgpu.graph_query import constants, consumers, output_names
from ortgpu.optimizer.graph_tools.graph_edit import Rewirer


def _inference_only(node: Node, consts: dict) -> bool:
    if node.opset < 7:
        return bool(node.attrs.get("is_test", 0))
    if node.opset >= 12 and len(node.inputs) > 2 and node.inputs[2]:
        mode = consts.get(node.inputs[2])
        return mode is not None and np.size(mode) == 1 and not bool(np.asarray(mode).reshape(-1)[0])
    return True


def eliminate_dropout(graph: Graph, providers, overridable: set[str]) -> int:
    consts = constants(graph, overridable)
    users = consumers(graph)
    outs = output_names(graph)
    rw = Rewirer(graph)
    for n in graph.nodes:
        if n.op_type != "Dropout" or n.domain != "" or not n.inputs[0] or not _inference_only(n, consts):
            continue
        mask = n.outputs[1] if len(n.outputs) > 1 else ""
        if mask and (mask in outs or users.get(mask)):
            continue
        rw.bypass(n, n.inputs[0], n.outputs[0])
    return rw.finish()
