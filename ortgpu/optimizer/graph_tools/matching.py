"""What the fusion passes share: a read-only view of a graph for matching patterns, the check
that a provider would run a fused op, and the one way to apply rewrites.

Rules every fusion follows through these helpers:

* only constants are folded into a fused op's attributes or packed weights: initializers
  that a run cannot override, or outputs of Constant nodes;
* an intermediate value of a pattern may have no reader outside the pattern and may not be
  a graph output (:meth:`GraphView.private`), so removing its producer loses nothing;
* a fused node keeps the output names of the nodes it replaces (their types stay known);
* a fusion happens only when the provider that would run the pattern's anchor node has a
  kernel for the fused op and accepts its input types (:func:`provider_runs`): with the
  CUDA provider first, a float node fuses into an op CUDA (or the shared kernels) runs; a
  provider without a kernel for the fused op keeps the pattern as it is;
* :func:`apply` removes the replaced nodes, adds the fused ones, drops the producers that
  only fed removed nodes (shape computations of a Reshape that left, for instance) and
  sorts the graph topologically again.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np
import onnx

from ortgpu.graph import Graph, Node, topological_order
from ortgpu.graph_query import dims, elem_type

FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE})

_counter = itertools.count()


class GraphView:
    """Producers, readers and constants of `graph`, for matching (rebuild after a rewrite)."""

    def __init__(self, graph: Graph, overridable: Iterable[str] = ()):
        self.graph = graph
        self.overridable = set(overridable)
        self.producer: dict[str, Node] = {}
        self.readers: dict[str, list[Node]] = {}
        for n in graph.nodes:
            for o in n.outputs:
                if o:
                    self.producer[o] = n
            for x in n.inputs:
                if x:
                    self.readers.setdefault(x, []).append(n)
            for sub in n.subgraphs():
                for x in sub.outer_names():
                    self.readers.setdefault(x, []).append(n)
        self.graph_outputs = {v.name for v in graph.outputs}

    # --- values ---------------------------------------------------------------------------
    def const(self, name: str) -> np.ndarray | None:
        """The value of a constant: a non-overridable initializer or a Constant node's tensor."""
        if not name:
            return None
        if name in self.graph.initializers and name not in self.overridable:
            return self.graph.initializers[name]
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant" and node.domain == "":
            value = node.attrs.get("value")
            if isinstance(value, np.ndarray):
                return value
            for key in ("value_float", "value_int"):
                if key in node.attrs:
                    return np.asarray(node.attrs[key])
            for key in ("value_floats", "value_ints"):
                if key in node.attrs:
                    return np.asarray(node.attrs[key])
        return None

    def scalar(self, name: str) -> float | None:
        """A one-element float or int constant as a Python float, else None."""
        v = self.const(name)
        if v is None or v.size != 1 or v.dtype.kind not in "fiu":
            return None
        return float(v.reshape(-1)[0])

    def scalar_near(self, name: str, target: float) -> bool:
        """A one-element float constant equal to `target` up to 1e-4 relative, or up to the
        rounding of its own dtype (float16 constants are the nearest float16 to `target`)."""
        v = self.const(name)
        if v is None or v.size != 1 or v.dtype.kind not in "fiu":
            return False
        rel = max(1e-4, 2 * float(np.finfo(v.dtype).eps)) if v.dtype.kind == "f" else 1e-4
        return close(float(v.reshape(-1)[0]), target, rel)

    def ints(self, name: str) -> list[int] | None:
        """An integer constant as a flat list, else None."""
        v = self.const(name)
        if v is None or v.dtype.kind not in "iu":
            return None
        return [int(x) for x in v.reshape(-1)]

    def shape(self, name: str) -> list | None:
        """The shape of a constant (a Constant node's output too), else the dims of
        :func:`ortgpu.graph_query.dims`."""
        v = self.const(name)
        if v is not None:
            return list(v.shape)
        return dims(self.graph, name)

    def rank(self, name: str) -> int | None:
        s = self.shape(name)
        return None if s is None else len(s)

    def same_shape(self, a: str, b: str) -> bool:
        """Whether `a` and `b` are known to have one shape (every dim known, equal numbers or
        equal symbolic names)."""
        sa, sb = self.shape(a), self.shape(b)
        return (sa is not None and sb is not None and len(sa) == len(sb)
                and all(x is not None and x == y for x, y in zip(sa, sb)))

    def is_float(self, name: str) -> bool:
        return elem_type(self.graph, name) in FLOAT_TYPES

    # --- structure ------------------------------------------------------------------------
    def op(self, name: str, op_type: str, domain: str = "") -> Node | None:
        """The producer of `name` when it is `op_type` (of `domain`), else None."""
        n = self.producer.get(name) if name else None
        return n if n is not None and n.op_type == op_type and n.domain == domain else None

    def private(self, name: str) -> bool:
        """Read by exactly one node and not a graph output."""
        return name not in self.graph_outputs and len(self.readers.get(name, ())) == 1

    def only_reader(self, name: str) -> Node | None:
        """The one node reading `name` when it is private, else None."""
        return self.readers[name][0] if self.private(name) else None

    def other_input(self, node: Node, name: str) -> str | None:
        """For a two-input node reading `name`, the other input (None when it reads `name` twice
        or has another arity)."""
        ins = node.inputs
        if len(ins) != 2 or ins.count(name) != 1:
            return None
        return ins[1] if ins[0] == name else ins[0]

    def contained(self, values: Iterable[str], nodes: Iterable[Node]) -> bool:
        """Whether removing `nodes` leaves every one of `values` unread: no value is a graph
        output and each reader is one of `nodes` or a node that would be left without readers
        itself (a shape computation feeding only the removed nodes, for instance)."""
        gone = {id(n) for n in nodes}
        dead = self._dead_after(gone)
        for v in values:
            if v in self.graph_outputs:
                return False
            if any(id(r) not in gone and id(r) not in dead for r in self.readers.get(v, ())):
                return False
        return True

    def _dead_after(self, gone: set[int]) -> set[int]:
        """Nodes outside `gone` all of whose outputs would be unread once `gone` is removed."""
        dead: set[int] = set()
        for n in reversed(self.graph.nodes):
            if id(n) in gone or n.subgraphs():
                continue
            outs = [o for o in n.outputs if o]
            if outs and all(o not in self.graph_outputs and all(
                    id(r) in gone or id(r) in dead for r in self.readers.get(o, ())) for o in outs):
                dead.add(id(n))
        return dead

    def readers_of(self, name: str, op_type: str, domain: str = "") -> list[Node]:
        """The readers of `name` that are `op_type` nodes (of `domain`)."""
        return [r for r in self.readers.get(name, ()) if r.op_type == op_type and r.domain == domain]

    def skip_noop_casts(self, name: str) -> tuple[str, list[Node]]:
        """Follow private Cast nodes that keep the element type: (the last value, the Casts)."""
        casts = []
        while True:
            reader = self.only_reader(name)
            if (reader is None or reader.op_type != "Cast" or reader.domain != ""
                    or not elem_type(self.graph, name) or reader.attrs.get("to") != elem_type(self.graph, name)):
                return name, casts
            casts.append(reader)
            name = reader.outputs[0]


def close(value: float | None, target: float, rel: float = 1e-4) -> bool:
    """`value` is within relative `rel` of `target`."""
    return value is not None and abs(value - target) <= rel * abs(target)


def fused_name(anchor: Node, op_type: str) -> str:
    """A node name for a fused op, unique in the process."""
    return f"{anchor.name or anchor.outputs[0]}/{op_type}_{next(_counter)}"


def make_node(op_type: str, domain: str, graph: Graph, inputs, outputs, attrs: dict, anchor: Node) -> Node:
    """A new node of `graph` (opset from the graph's imports, adding ortgpu's or
    com.microsoft's when needed)."""
    from ortgpu.fused_ops.registry import DOMAIN, DOMAIN_VERSION, MS_DOMAIN, MS_VERSION  # noqa: PLC0415
    if domain == DOMAIN:
        graph.opsets.setdefault(DOMAIN, DOMAIN_VERSION)
    elif domain == MS_DOMAIN:
        graph.opsets.setdefault(MS_DOMAIN, MS_VERSION)
    return Node(fused_name(anchor, op_type), op_type, domain, graph.opsets[domain], list(inputs),
                list(outputs), dict(attrs), None)


def provider_runs(graph: Graph, providers, anchor: Node, fused: Node) -> bool:
    """Whether the provider that runs `anchor` (ortgpu.placement, as the partitioner decides)
    also runs `fused` with its types; with no providers given (a bare graph rewrite) the fused
    op just needs a kernel."""
    from ortgpu.placement import provider_of, runs  # noqa: PLC0415
    if not providers:
        from ortgpu.providers.registry import SHARED, lookup  # noqa: PLC0415
        return lookup(fused.op_type, fused.domain, fused.opset, (SHARED,)) is not None
    owner = provider_of(anchor, graph, providers)
    return owner is not None and runs(owner, fused, graph.types) is not None


def first_runnable(graph: Graph, providers, anchor: Node, *makers) -> Node | None:
    """The first node made by `makers` (callables returning a fused node or None) that the
    provider of `anchor` runs (:func:`provider_runs`): onnxruntime's op first, ortgpu's
    fallback after it."""
    for make in makers:
        node = make()
        if node is not None and provider_runs(graph, providers, anchor, node):
            return node
    return None


class Rewrite:
    """The fusions one pass collects before changing the graph: each fused node with the
    nodes it replaces.  A node belongs to at most one fusion (``claimed``); ``finish``
    applies them all at once (see apply) and returns how many fused nodes were added."""

    def __init__(self):
        self.removed: list[Node] = []
        self.added: list[Node] = []
        self._claimed: set[int] = set()

    def claimed(self, *nodes: Node) -> bool:
        """Whether any of `nodes` already belongs to a collected fusion."""
        return any(id(n) in self._claimed for n in nodes)

    def replace(self, nodes: list[Node], fused: Node) -> None:
        """Collect `fused` as the replacement of `nodes`, which are claimed from now on."""
        self._claimed.update(id(n) for n in nodes)
        self.removed += nodes
        self.added.append(fused)

    def finish(self, graph: Graph) -> int:
        if self.added:
            apply(graph, self.removed, self.added)
        return len(self.added)


def apply(graph: Graph, removed: Iterable[Node], added: Iterable[Node]) -> None:
    """Replace `removed` by `added`, drop the nodes left without readers, sort topologically.

    Nodes still reading an output of `removed` that no added node produces are dropped with
    their own readers: the passes only remove values that such dead code reads
    (:meth:`GraphView.contained`)."""
    removed, added = list(removed), list(added)
    gone = {id(n) for n in removed}
    lost = {o for n in removed for o in n.outputs if o} - {o for n in added for o in n.outputs if o}
    nodes = []
    for n in graph.nodes:
        if id(n) in gone:
            continue
        if any(x in lost for x in n.inputs):
            lost.update(o for o in n.outputs if o)
            continue
        nodes.append(n)
    freed = {x for n in removed for x in n.inputs if x}
    graph.nodes = _drop_orphans(graph, nodes + added, freed)
    graph.nodes = topological_order(graph, outer=graph.outer_names())


def _drop_orphans(graph: Graph, nodes: list[Node], freed: set[str]) -> list[Node]:
    """Remove, transitively, nodes producing some of `freed` whose outputs nobody reads now."""
    keep_names = {v.name for v in graph.outputs}
    readers: dict[str, int] = {}
    for n in nodes:
        for x in n.inputs:
            if x:
                readers[x] = readers.get(x, 0) + 1
        for sub in n.subgraphs():
            for x in sub.outer_names():
                readers[x] = readers.get(x, 0) + 1
    producer = {o: n for n in nodes for o in n.outputs if o}
    dead: set[int] = set()
    work = list(freed)
    while work:
        name = work.pop()
        node = producer.get(name)
        if node is None or id(node) in dead:
            continue
        outs = [o for o in node.outputs if o]
        if any(readers.get(o, 0) or o in keep_names for o in outs):
            continue
        dead.add(id(node))
        for x in node.inputs:
            if x:
                readers[x] -= 1
                work.append(x)
    return [n for n in nodes if id(n) not in dead]
