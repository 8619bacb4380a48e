"""NoopElimination (basic level): arithmetic with a neutral constant leaves the graph.

Rules: x + 0, 0 + x, x - 0, x * 1, 1 * x and x / 1, where the constant is all zeros (ones)
and broadcasting it changes neither x's shape nor its type: the constant is a scalar, or
has no more dims than x and each of its dims (aligned to the right) is 1 or equals x's
static dim there.  0 - x and 1 / x are not no-ops; x + 0 turns -0.0 into +0.0, a difference
onnxruntime's rule ignores too.  Graph outputs keep their names as in EliminateIdentity.
"""
from __future__ import annotations

import numpy as np

from ortgpu.graph import Graph, Node
from ortgpu.graph_query import dims
from ortgpu.optimizer.graph_tools.graph_edit import bypass_each

# op -> (neutral value, may the constant be the first operand)
_NEUTRAL = {"Add": (0, True), "Sub": (0, False), "Mul": (1, True), "Div": (1, False)}


def _keeps_shape(const: np.ndarray, x_dims: list | None) -> bool:
    if const.ndim == 0:
        return True
    if x_dims is None or const.ndim > len(x_dims):
        return False
    return all(c == 1 or c == d for c, d in zip(const.shape, x_dims[len(x_dims) - const.ndim:]))


def _passed_through(node: Node, graph: Graph, consts: dict) -> str | None:
    """The operand that the node returns unchanged, or None."""
    neutral, either = _NEUTRAL[node.op_type]
    pairs = [(node.inputs[0], node.inputs[1])]
    if either:
        pairs.append((node.inputs[1], node.inputs[0]))
    for x, c in pairs:
        value = consts.get(c)
        if (value is not None and x not in consts and value.dtype.kind in "fiu" and value.size
                and np.all(value == neutral) and _keeps_shape(value, dims(graph, x))):
            return x
    return None


def eliminate_noop(graph: Graph, providers, overridable: set[str]) -> int:
    return bypass_each(graph, overridable, _NEUTRAL,
                       lambda n, g, consts: _passed_through(n, g, consts) if len(n.inputs) == 2 and n.opset >= 7
                       else None)
