"""UnsqueezeElimination (basic level): Unsqueeze nodes that need not run.

Rules:
- An Unsqueeze of a constant (with constant axes) becomes an initializer of the new shape,
  under its output's name, unless that is a graph output.
- Squeeze(Unsqueeze(x, axes), axes) with the same axes (constants, compared after making
  them non-negative against the unsqueezed rank) is x: the Squeeze's readers read x.  The
  Unsqueeze stays while others read it.  A Squeeze without axes (it drops every dim of size 1,
  and x may have some) or with other axes stays.
"""
from __future__ import annotations

import numpy as np

from ortgpu.graph import Graph, Node
from ortgpu.graph_query import constants, dims, int_list, output_names, set_initializer
from ortgpu.optimizer.graph_tools.graph_edit import Rewirer


def _axes(node: Node, consts: dict) -> list[int] | None:
    if node.opset < 13:
        return node.attrs.get("axes")
    return int_list(consts.get(node.inputs[1])) if len(node.inputs) > 1 and node.inputs[1] else None


def _normalized(axes: list[int], rank: int | None) -> set[int] | None:
    if any(a < 0 for a in axes) and rank is None:
        return None
    return {a + rank if a < 0 else a for a in axes}


def _unsqueezed(value: np.ndarray, axes: list[int]) -> np.ndarray | None:
    rank = value.ndim + len(axes)
    norm = sorted(a + rank if a < 0 else a for a in axes)
    if len(set(norm)) != len(norm) or any(not 0 <= a < rank for a in norm):
        return None  # invalid: the kernel will say so at run time
    return np.expand_dims(value, tuple(norm))


def eliminate_unsqueeze(graph: Graph, providers, overridable: set[str]) -> int:
    consts = constants(graph, overridable)
    outs = output_names(graph)
    rw = Rewirer(graph)
    for n in graph.nodes:
        if n.domain != "" or not n.inputs or not n.inputs[0]:
            continue
        if n.op_type == "Unsqueeze" and n.inputs[0] in consts and n.outputs[0] not in outs:
            axes = _axes(n, consts)
            value = _unsqueezed(consts[n.inputs[0]], axes) if axes is not None else None
            if value is not None:  # the output's name now holds the value
                set_initializer(graph, n.outputs[0], value)
                consts[n.outputs[0]] = value
                rw.drop(n)
        elif n.op_type == "Squeeze":
            inner = rw.made.get(rw.resolve(n.inputs[0]))
            if _cancels(n, inner, graph, consts):
                rw.bypass(n, inner.inputs[0], n.outputs[0])
    return rw.finish()


def _cancels(squeeze: Node, unsqueeze: Node | None, graph: Graph, consts: dict) -> bool:
    if unsqueeze is None or unsqueeze.op_type != "Unsqueeze" or unsqueeze.domain != "":
        return False
    axes_in, axes_out = _axes(unsqueeze, consts), _axes(squeeze, consts)
    if not axes_in or not axes_out:
        return False
    x_shape = dims(graph, unsqueeze.inputs[0])
    rank = len(x_shape) + len(axes_in) if x_shape is not None else None
    a, b = _normalized(axes_in, rank), _normalized(axes_out, rank)
    return a is not None and a == b and len(a) == len(axes_in) == len(axes_out)
