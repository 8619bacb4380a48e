"""What the fusion and layout passes read about values: element type, static shape, and
the clean-up of initializers a rewrite left unread."""
from __future__ import annotations

import onnx

from ortgpu.graph import Graph


def elem_type(graph: Graph, name: str) -> str | None:
    """NumPy name of a value's element type, or None when unknown."""
    if name in graph.initializers:
        return graph.initializers[name].dtype.name
    tp = graph.types.get(name)
    if tp is None or tp.WhichOneof("value") != "tensor_type" or not tp.tensor_type.elem_type:
        return None
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(tp.tensor_type.elem_type).name
    except (KeyError, TypeError, ValueError):
        return None


def partial_shape(graph: Graph, name: str) -> tuple | None:
    """Shape with what is known: ints, dim names, None for an unknown dim; None when even
    the rank is unknown."""
    if name in graph.initializers:
        return tuple(graph.initializers[name].shape)
    tp = graph.types.get(name)
    if tp is None or tp.WhichOneof("value") != "tensor_type" or not tp.tensor_type.HasField("shape"):
        return None
    return tuple(int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or None)
                 for d in tp.tensor_type.shape.dim)


def rank(graph: Graph, name: str) -> int | None:
    """The number of dims of a value, known even where some dims are not, or None."""
    if name in graph.initializers:
        return graph.initializers[name].ndim
    tp = graph.types.get(name)
    if tp is None or tp.WhichOneof("value") != "tensor_type" or not tp.tensor_type.HasField("shape"):
        return None
    return len(tp.tensor_type.shape.dim)


def drop_unread_initializers(graph: Graph, names) -> None:
    """Remove those of ``names`` that no node, subgraph, graph input or output reads any more
    (weights a rewrite replaced by new ones)."""
    used = {v.name for v in graph.outputs} | {v.name for v in graph.inputs}
    for n in graph.nodes:
        used.update(n.inputs)
        for g in n.subgraphs():
            used |= g.outer_names()
    for name in set(names) - used:
        graph.initializers.pop(name, None)
