"""The in-memory graph the runtime works on: nodes with resolved opsets and parsed
attributes, value types from shape inference, initializers as arrays, subgraphs as Graphs.

Built from an onnx GraphProto by :func:`from_proto`, which also sorts nodes
topologically and refuses cycles and undefined inputs with InvalidGraph.
"""
from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import AttributeProto, numpy_helper

from ortgpu.errors import Fail, InvalidGraph


@dataclasses.dataclass
class Node:
    name: str
    op_type: str
    domain: str          # "" for ai.onnx
    opset: int           # the version of `domain` this node was written against
    inputs: list[str]    # "" marks an omitted optional input
    outputs: list[str]   # "" marks an unused optional output
    attrs: dict          # parsed attribute values (Graph for subgraphs)
    proto: onnx.NodeProto | None = None

    def subgraphs(self) -> list["Graph"]:
        out = []
        for v in self.attrs.values():
            if isinstance(v, Graph):
                out.append(v)
            elif isinstance(v, list) and v and isinstance(v[0], Graph):
                out.extend(v)
        return out

    def describe(self) -> str:
        return f"{self.op_type}({self.domain or 'ai.onnx'}, {self.opset}) node '{self.name}'"


@dataclasses.dataclass
class Graph:
    name: str
    nodes: list[Node]
    inputs: list[onnx.ValueInfoProto]
    outputs: list[onnx.ValueInfoProto]
    initializers: dict[str, np.ndarray]
    types: dict[str, onnx.TypeProto]      # every value with a known type
    opsets: dict[str, int]
    # while the optimizer works on a subgraph: the constants of its enclosing scopes (read by
    # ConstantFolding: a Slice of an outer weight folds inside an If branch, as in onnxruntime)
    outer_constants: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def outer_names(self) -> set[str]:
        """Names this graph (and its subgraphs) reads but does not define: its outer-scope uses."""
        defined = {v.name for v in self.inputs} | set(self.initializers)
        used: set[str] = set()
        for n in self.nodes:
            defined.update(o for o in n.outputs if o)
        for n in self.nodes:
            used.update(i for i in n.inputs if i)
            for g in n.subgraphs():
                used |= g.outer_names()
        used.update(o.name for o in self.outputs)
        return used - defined


def tensor_to_array(t: onnx.TensorProto) -> np.ndarray:
    try:
        arr = numpy_helper.to_array(t)
    except Exception as e:  # an unknown data_type, or data that does not fill the dims
        raise InvalidGraph(f"Tensor '{t.name}' (data_type {t.data_type}, dims {list(t.dims)}) cannot be "
                           f"read: {type(e).__name__}: {e}") from None
    if arr.dtype.kind in "SU":  # strings are object arrays of str, as onnxruntime returns them
        arr = arr.astype(object)
    if arr.dtype == object:
        flat = [x.decode("utf-8", "surrogateescape") if isinstance(x, bytes) else x for x in arr.ravel()]
        arr = np.array(flat, dtype=object).reshape(arr.shape)
    return arr


# onnxruntime densifies a sparse initializer only up to the 2 GiB limit of embedded tensor data.
DENSE_SPARSE_LIMIT = 2**31


def sparse_to_array(sp: onnx.SparseTensorProto) -> np.ndarray:
    """The dense array of a sparse tensor; its declared size is checked before anything is
    allocated (Fail naming the tensor, its dims and the bytes when above DENSE_SPARSE_LIMIT)."""
    values = tensor_to_array(sp.values)
    idx = tensor_to_array(sp.indices).astype(np.int64)
    dims = [int(d) for d in sp.dims]
    if any(d < 0 for d in dims):
        raise InvalidGraph(f"Sparse tensor '{sp.values.name}' has negative dims {dims}")
    nbytes = math.prod(dims) * values.dtype.itemsize
    if nbytes > DENSE_SPARSE_LIMIT:
        raise Fail(f"Sparse tensor: {sp.values.name} (dims {dims}) dense data size of {nbytes} bytes exceeds "
                   f"the {DENSE_SPARSE_LIMIT} byte limit for embedded initializer data.")
    dense = np.zeros(tuple(dims), dtype=values.dtype)
    try:
        if idx.ndim == 1:
            dense.reshape(-1)[idx] = values
        else:
            dense[tuple(idx.T)] = values
    except (IndexError, ValueError) as e:
        raise InvalidGraph(f"Sparse tensor '{sp.values.name}' has indices outside its dims "
                           f"{list(sp.dims)}: {e}") from None
    return dense


def _decode(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape") if isinstance(b, bytes) else b


def attribute_value(a: AttributeProto, opsets: dict[str, int], outer_types: dict):
    t = a.type
    if t == AttributeProto.FLOAT:
        return float(a.f)
    if t == AttributeProto.INT:
        return int(a.i)
    if t == AttributeProto.STRING:
        return _decode(a.s)
    if t == AttributeProto.TENSOR:
        return tensor_to_array(a.t)
    if t == AttributeProto.GRAPH:
        return from_proto(a.g, opsets, outer_types)
    if t == AttributeProto.SPARSE_TENSOR:
        return sparse_to_array(a.sparse_tensor)
    if t == AttributeProto.TYPE_PROTO:
        return a.tp
    if t == AttributeProto.FLOATS:
        return [float(x) for x in a.floats]
    if t == AttributeProto.INTS:
        return [int(x) for x in a.ints]
    if t == AttributeProto.STRINGS:
        return [_decode(x) for x in a.strings]
    if t == AttributeProto.TENSORS:
        return [tensor_to_array(x) for x in a.tensors]
    if t == AttributeProto.GRAPHS:
        return [from_proto(g, opsets, outer_types) for g in a.graphs]
    if t == AttributeProto.SPARSE_TENSORS:
        return [sparse_to_array(x) for x in a.sparse_tensors]
    if t == AttributeProto.TYPE_PROTOS:
        return list(a.type_protos)
    raise InvalidGraph(f"attribute '{a.name}' has unknown type {t}")


# Domains onnxruntime registers itself and so accepts without an opset_import (at their newest
# version): onnxruntime's transformer optimizer writes com.microsoft nodes without importing it.
IMPLIED_DOMAINS = {"com.microsoft": 1}


def node_from_proto(p: onnx.NodeProto, opsets: dict[str, int], types: dict) -> Node:
    domain = "" if p.domain in ("", "ai.onnx") else p.domain
    if domain not in opsets and domain in IMPLIED_DOMAINS:
        opsets = {**opsets, domain: IMPLIED_DOMAINS[domain]}
    if domain not in opsets:
        raise InvalidGraph(f"Node '{p.name}' ({p.op_type}) uses domain '{domain}' that the model "
                           f"does not import (opset_import has {sorted(opsets)})")
    attrs = {}
    for a in p.attribute:
        if a.ref_attr_name:
            raise InvalidGraph(f"Node '{p.name}' ({p.op_type}) refers to attribute "
                               f"'{a.ref_attr_name}' outside a function body")
        attrs[a.name] = attribute_value(a, opsets, types)
    return Node(p.name, p.op_type, domain, opsets[domain], list(p.input), list(p.output), attrs, p)


def from_proto(g: onnx.GraphProto, opsets: dict[str, int], outer_types: dict | None = None) -> Graph:
    """Convert a GraphProto (shape-inferred) into a Graph, nodes sorted topologically."""
    types: dict[str, onnx.TypeProto] = dict(outer_types or {})
    fed = {vi.name for vi in g.input}
    # a graph input's type is what is fed: a graph output of the same name declaring another
    # type does not change it (onnxruntime does not check such a declaration)
    declared = list(g.input) + list(g.value_info) + [vi for vi in g.output if vi.name not in fed]
    for vi in declared:
        if vi.type.WhichOneof("value") is not None:
            types[vi.name] = vi.type
    inits = {}
    for t in g.initializer:
        inits[t.name] = tensor_to_array(t)
        # a constant's type is its tensor's, whatever a graph output of its name declares
        # (onnxruntime runs such a model); a fed initializer keeps its input's declaration
        if t.name not in types or t.name not in fed:
            types[t.name] = onnx.helper.make_tensor_type_proto(t.data_type, list(t.dims))
    for sp in g.sparse_initializer:
        inits[sp.values.name] = sparse_to_array(sp)
    nodes = [node_from_proto(p, opsets, types) for p in g.node]
    graph = Graph(g.name, nodes, list(g.input), list(g.output), inits, types, dict(opsets))
    graph.nodes = topological_order(graph, outer=set(outer_types or ()))
    return graph


def topological_order(graph: Graph, outer: Iterable[str] = ()) -> list[Node]:
    """Kahn's order of the nodes; InvalidGraph on a cycle, an undefined input or a name defined twice."""
    available = set(outer) | {v.name for v in graph.inputs} | set(graph.initializers)
    producer: dict[str, int] = {}
    for i, n in enumerate(graph.nodes):
        for o in n.outputs:
            if not o:
                continue
            if o in producer or o in graph.initializers or o in {v.name for v in graph.inputs}:
                raise InvalidGraph(f"Duplicate definition of value '{o}' (output of node '{n.name}' "
                                   f"({n.op_type}))")
            producer[o] = i
    deps: list[set[int]] = []
    for n in graph.nodes:
        reads = [x for x in n.inputs if x]
        for sg in n.subgraphs():
            reads.extend(sg.outer_names())
        d = set()
        for x in reads:
            if x in producer:
                d.add(producer[x])
            elif x not in available:
                raise InvalidGraph(f"This is an invalid model. Node '{n.name}' ({n.op_type}) input "
                                   f"'{x}' is not a graph input, initializer, or output of a previous node.")
        deps.append(d)
    order, indeg = kahn_order(deps)
    if len(order) != len(graph.nodes):
        stuck = [graph.nodes[i].name or graph.nodes[i].op_type for i in range(len(graph.nodes)) if indeg[i] > 0]
        raise InvalidGraph(f"This is an invalid model. Graph '{graph.name}' has a cycle through nodes {stuck[:5]}")
    for o in graph.outputs:
        if o.name not in producer and o.name not in available:
            raise InvalidGraph(f"This is an invalid model. Graph output '{o.name}' is not produced by any node")
    return [graph.nodes[i] for i in order]


def attrs_with_defaults(node: Node, opsets) -> dict:
    """The node's attributes, plus the defaults its own schema version gives the ones it
    leaves out (what a kernel is called with)."""
    from ortgpu.providers.registry import schema_for  # noqa: PLC0415
    attrs = dict(node.attrs)
    schema = schema_for(node.op_type, node.opset, node.domain)
    if schema is not None:
        for name, a in schema.attributes.items():
            if name not in attrs and a.default_value.type != 0:
                attrs[name] = attribute_value(a.default_value, opsets, {})
    return attrs


def kahn_order(deps: list) -> tuple[list[int], list[int]]:
    """A topological order of nodes given each node's producers (`deps[i]`: indices), keeping
    the file's order among ready nodes, and each node's count of unfinished producers (nonzero
    only on a cycle, where the order is short)."""
    users: list[list[int]] = [[] for _ in deps]
    indeg = [len(d) for d in deps]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    ready = [i for i, k in enumerate(indeg) if k == 0]  # a heap: the file's order among ready nodes
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(ready, u)
    return order, indeg
