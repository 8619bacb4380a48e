"""The questions the optimizer and the precision converter ask of a graph, each asked one
way: is this type a tensor, what is a value's element type, its dims, its rank, who reads
and who makes it, which initializers are constants, and how a new constant is added.

Two levels, one vocabulary:

* a ``TypeProto`` (:func:`tensor_type`, :func:`type_dims`): the answer for any value type,
  None where the type is absent or not a tensor (sequence, map, optional, sparse);
* a value of an in-memory :class:`~ortgpu.graph.Graph` by name (:func:`elem_type`,
  :func:`dims`, :func:`rank`, :func:`dtype_name`): an initializer answers from its array
  (the data is the truth), any other value from ``graph.types``.

Conventions: an element type is an ONNX ``TensorProto`` code, 0 (UNDEFINED) when unknown; a
dim is an int when static, its dim_param (str) when named, None when unknown; a shape is a
list of dims, None when even the rank is unknown.  Walking a ``GraphProto`` (the converter
rewrites protobufs) uses :func:`proto_subgraphs` and the name sets below it.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
from onnx import AttributeProto

from ortgpu.dtypes import np_dtype, onnx_code
from ortgpu.graph import Graph, Node

# ---------------------------------------------------------------- types


def tensor_type(tp: onnx.TypeProto | None):
    """The tensor part of `tp` (a ``TypeProto.Tensor``), or None when `tp` is absent or not a
    tensor: the one spelling of "is this a tensor"."""
    if tp is None or tp.WhichOneof("value") != "tensor_type":
        return None
    return tp.tensor_type


def type_dims(tp: onnx.TypeProto | None) -> list | None:
    """The dims of a tensor type (int, dim_param or None each); None for an unknown rank or a
    type that is not a tensor."""
    tt = tensor_type(tp)
    if tt is None or not tt.HasField("shape"):
        return None
    return [int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]


def tensor_type_proto(value: np.ndarray) -> onnx.TypeProto:
    """The tensor type of an array: its element type and static shape."""
    return onnx.helper.make_tensor_type_proto(onnx_code(value.dtype), list(value.shape))


# ---------------------------------------------------------------- values of a Graph


def elem_type(graph: Graph, name: str) -> int:
    """ONNX element type code of the value `name` (0 when unknown or not a tensor)."""
    value = graph.initializers.get(name)
    if value is not None:
        return onnx_code(value.dtype)
    tt = tensor_type(graph.types.get(name))
    return tt.elem_type if tt is not None else 0


def dtype_name(graph: Graph, name: str) -> str | None:
    """NumPy name of `name`'s element type ("float16", "bool", ...), None when unknown or
    without a NumPy dtype."""
    code = elem_type(graph, name)
    try:
        return np_dtype(code).name if code else None
    except TypeError:
        return None


def dims(graph: Graph, name: str) -> list | None:
    """The dims of the value `name` (see the module's conventions)."""
    value = graph.initializers.get(name)
    if value is not None:
        return list(np.shape(value))
    return type_dims(graph.types.get(name))


def rank(graph: Graph, name: str) -> int | None:
    """The number of dims of `name`, known even where some dims are not; None when unknown."""
    d = dims(graph, name)
    return None if d is None else len(d)


def same_dim(a, b) -> bool:
    """Two dims from :func:`dims` are known to be equal (same value or same dim_param)."""
    return a is not None and a == b


def int_list(value) -> list[int] | None:
    """A constant's entries as Python ints (a scalar as a one-element list); None for
    non-integers and arrays of more than one dim."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" or arr.ndim > 1:
        return None
    return [int(v) for v in arr.reshape(-1)]


# ---------------------------------------------------------------- structure of a Graph


def consumers(graph: Graph) -> dict[str, list[Node]]:
    """Value name -> the nodes that read it (a node whose subgraph reads it counts too)."""
    users: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for x in n.inputs:
            if x:
                users.setdefault(x, []).append(n)
        for g in n.subgraphs():
            for x in g.outer_names():
                users.setdefault(x, []).append(n)
    return users


def producers(graph: Graph) -> dict[str, Node]:
    """Value name -> the node of this graph that produces it."""
    return {o: n for n in graph.nodes for o in n.outputs if o}


def output_names(graph: Graph) -> set[str]:
    """The names of the graph's outputs."""
    return {v.name for v in graph.outputs}


def constants(graph: Graph, overridable: set[str]) -> dict[str, np.ndarray]:
    """The initializers a run cannot replace (`overridable` names those it can: graph inputs
    with an initializer from IR 4 on): the values a pass may fold or read."""
    return {n: v for n, v in graph.initializers.items() if n not in overridable}


def unique_name(graph: Graph, base: str) -> str:
    """`base`, or `base` with a numeric suffix, that names no value of `graph`."""
    taken = set(graph.initializers) | set(graph.types) | {v.name for v in graph.inputs}
    taken.update(o for n in graph.nodes for o in n.outputs)
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


# ---------------------------------------------------------------- adding constants


def add_initializer(graph: Graph, base: str, value) -> str:
    """Store `value` as a new initializer (its type recorded) under a name no value of the
    graph has yet (`base` or `base` with a suffix); returns that name."""
    name = unique_name(graph, base)
    value = np.asarray(value)
    graph.initializers[name] = value
    graph.types[name] = tensor_type_proto(value)
    return name


def set_initializer(graph: Graph, name: str, value: np.ndarray) -> None:
    """Make `name` (an existing value, its producer about to go) an initializer holding
    `value`; a type the value already has is kept."""
    graph.initializers[name] = value
    if name not in graph.types:
        graph.types[name] = tensor_type_proto(value)


def drop_unread_initializers(graph: Graph, names) -> None:
    """Remove those of `names` that no node, subgraph, graph input or output reads any more
    (weights a rewrite replaced by new ones)."""
    used = output_names(graph) | {v.name for v in graph.inputs}
    for n in graph.nodes:
        used.update(n.inputs)
        for g in n.subgraphs():
            used |= g.outer_names()
    for name in set(names) - used:
        graph.initializers.pop(name, None)


# ---------------------------------------------------------------- GraphProto walks


def proto_subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The subgraphs of a NodeProto (If branches, Loop and Scan bodies)."""
    for a in node.attribute:
        if a.type == AttributeProto.GRAPH:
            yield a.g
        elif a.type == AttributeProto.GRAPHS:
            yield from a.graphs


def proto_names(g: onnx.GraphProto, out: set) -> set:
    """Every value, node and initializer name of `g` and its subgraphs, added to `out`."""
    out.update(vi.name for vi in list(g.input) + list(g.output) + list(g.value_info))
    out.update(t.name for t in g.initializer)
    for n in g.node:
        out.add(n.name)
        out.update(n.input)
        out.update(n.output)
        for sub in proto_subgraphs(n):
            proto_names(sub, out)
    return out


def proto_reads(g: onnx.GraphProto, out: set) -> set:
    """Names read by the nodes of `g` and its subgraphs or given out as their outputs, added
    to `out`."""
    for n in g.node:
        out.update(n.input)
        for sub in proto_subgraphs(n):
            out.update(vi.name for vi in sub.output)
            proto_reads(sub, out)
    out.update(vi.name for vi in g.output)
    return out
