"""Channels-last regions around float16 convolutions (layout level, "NhwcTransformer").

cuDNN runs float16 convolutions on tensor cores in NHWC; fed NCHW it transposes inside.
This pass moves whole regions to NHWC so that the transposes happen only where the region
meets the rest of the graph.

Rules.  A *seed* is an ai.onnx Conv with 4-D data of known rank, a constant 4-D weight,
whose provider (the one that would run it) says ``prefers_nhwc(node, dtype)``.  The region
grows forward from the seeds through consumers that are *layout-agnostic* and run on the
same provider: the element-wise ops of ``fused_elementwise.OPS``, ``ortgpu::FusedElementwise``
and Concat, when each of their outputs is 4-D and each input is 4-D, a region value, or a
constant (of at most 4 dims, or a single element).  In the region

* a Conv becomes ``ortgpu::NhwcConv`` with its weight transposed once to OHWI;
* a constant operand of more than one element is broadcast-aligned to 4 dims and permuted
  to NHWC (a new initializer); Concat's axis is renumbered;
* a 4-D value entering from outside gets one Transpose to NHWC before its first region
  consumer, and a region value read outside (or a graph output) one Transpose back, right
  after its producer, under its original name.

Every region value is renamed ``<name>_nhwc`` with a permuted type.  Returns the number of
Convs converted (0 when no provider asks for NHWC).
"""
from __future__ import annotations

import numpy as np
import onnx

from ortgpu import fused_ops
from ortgpu.fused_ops.nhwc_conv import CONV_ATTRS
from ortgpu.placement import provider_of
from ortgpu.graph import Graph, Node
from ortgpu.graph_query import add_initializer, consumers, drop_unread_initializers, dtype_name, rank, tensor_type
from ortgpu.providers.kernels import fused_elementwise as fe
from ortgpu.providers.kernels import nhwc

NAME = "NhwcTransformer"
TO_NHWC, TO_NCHW = list(nhwc.TO_NHWC), list(nhwc.TO_NCHW)
AGNOSTIC = frozenset(fe.OPS) | {"Concat"}


class _Region:
    """The graph facts the pass needs, and the region being built."""

    def __init__(self, graph: Graph, providers, overridable):
        self.graph = graph
        self.providers = list(providers)
        self.consts = {n: v for n, v in graph.initializers.items() if n not in overridable}
        self.users: dict[str, list[Node]] = consumers(graph)
        self.members: dict[int, Node] = {}
        self.values: set[str] = set()     # names produced in the region

    def owner(self, node: Node):
        return provider_of(node, self.graph, self.providers)

    def rank4(self, name: str) -> bool:
        return rank(self.graph, name) == 4

    def is_seed(self, node: Node):
        """The provider asking for NHWC for this Conv, else None."""
        if node.domain or node.op_type != "Conv" or len(node.inputs) < 2 or len(node.outputs) != 1:
            return None
        x, w = node.inputs[0], node.inputs[1]
        if not self.rank4(x) or w not in self.consts or self.consts[w].ndim != 4:
            return None
        dtype = dtype_name(self.graph, x)
        prov = self.owner(node)
        if prov is None or not prov.prefers_nhwc(node, dtype) \
                or prov.kernel_for(nhwc.OP_TYPE, nhwc.DOMAIN, 1) is None:
            return None
        return prov

    def agnostic(self, node: Node, prov) -> bool:
        """Whether ``node`` may join the region of provider ``prov`` (module docstring)."""
        fused = node.domain == fe.DOMAIN and node.op_type == fe.OP_TYPE
        if not fused and (node.domain or node.op_type not in AGNOSTIC or node.subgraphs()):
            return False
        if not node.outputs or not all(o and self.rank4(o) for o in node.outputs):
            return False
        for x in node.inputs:
            if not x or x in self.values:
                continue
            c = self.consts.get(x)
            if c is not None:
                if c.ndim > 4 and c.size != 1:
                    return False
            elif not self.rank4(x):
                return False
        return self.owner(node) is prov

    def grow(self, seeds: list[tuple[Node, object]]) -> None:
        for node, _ in seeds:
            self._add(node)
        queue = [(o, prov) for node, prov in seeds for o in node.outputs]
        while queue:
            v, prov = queue.pop()
            for u in self.users.get(v, []):
                if id(u) not in self.members and self.agnostic(u, prov):
                    self._add(u)
                    queue.extend((o, prov) for o in u.outputs)

    def _add(self, node: Node) -> None:
        self.members[id(node)] = node
        self.values.update(o for o in node.outputs if o)


# ---------------------------------------------------------------- rewriting

def _permuted_type(tp, perm):
    tt = tensor_type(tp)
    if tt is None or not tt.HasField("shape"):
        return tp
    dims = list(tp.tensor_type.shape.dim)
    if len(dims) != len(perm):
        return tp
    out = onnx.TypeProto()
    out.CopyFrom(tp)
    del out.tensor_type.shape.dim[:]
    for p in perm:
        out.tensor_type.shape.dim.add().CopyFrom(dims[p])
    return out


def _const_nhwc(value: np.ndarray) -> np.ndarray:
    """A constant operand broadcast-aligned to 4 dims and permuted to NHWC."""
    aligned = value.reshape((1,) * (4 - value.ndim) + value.shape)
    return np.ascontiguousarray(aligned.transpose(TO_NHWC))


class _Rewriter:
    def __init__(self, region: _Region):
        self.r = region
        self.g = region.graph
        self.entries: dict[str, Node] = {}        # outside value -> Transpose to NHWC
        self.new_consts: dict[str, str] = {}

    def nhwc_name(self, name: str) -> str:
        return f"{name}_nhwc"

    def transpose(self, src: str, dst: str, perm) -> Node:
        tp = self.g.types.get(src)
        self.g.types[dst] = _permuted_type(tp, perm) if perm == TO_NHWC else self.g.types.get(dst, tp)
        return Node(f"{dst}/Transpose", "Transpose", "", self.g.opsets.get("", 13), [src], [dst], {"perm": list(perm)})

    def const_operand(self, name: str, weight: bool) -> str:
        value = self.r.consts[name]
        if value.size == 1 and not weight:
            return name
        key = (name, weight)
        new = self.new_consts.get(key)
        if new is None:
            arr = np.ascontiguousarray(value.transpose(TO_NHWC)) if weight else _const_nhwc(value)
            new = add_initializer(self.g, f"{name}_ohwi" if weight else self.nhwc_name(name), arr)
            self.new_consts[key] = new
        return new

    def operand(self, name: str, before: list[Node]) -> str:
        """The NHWC name of a region node's input, adding what it needs."""
        if not name:
            return name
        if name in self.r.values:
            return self.nhwc_name(name)
        if name in self.r.consts:
            return self.const_operand(name, weight=False)
        t = self.entries.get(name)
        if t is None:
            t = self.entries[name] = self.transpose(name, self.nhwc_name(name), TO_NHWC)
            before.append(t)
        return t.outputs[0]

    def rewrite(self, node: Node, before: list[Node]) -> Node:
        if node.op_type == "Conv" and not node.domain:
            ins = [self.operand(node.inputs[0], before), self.const_operand(node.inputs[1], weight=True)]
            ins += node.inputs[2:3]
            attrs = {k: v for k, v in node.attrs.items() if k in CONV_ATTRS}
            out = Node(f"{node.name or node.outputs[0]}/NhwcConv", nhwc.OP_TYPE, nhwc.DOMAIN,
                       self.g.opsets.setdefault(nhwc.DOMAIN, fused_ops.DOMAIN_VERSION),
                       ins, [], attrs)
        else:
            attrs = dict(node.attrs)
            if node.op_type == "Concat" and not node.domain:
                axis = attrs.get("axis", 1) % 4
                attrs["axis"] = TO_NHWC.index(axis)
            out = Node(node.name, node.op_type, node.domain, node.opset,
                       [self.operand(x, before) for x in node.inputs], [], attrs)
        for o in node.outputs:
            out.outputs.append(self.nhwc_name(o) if o else o)
            if o:
                self.g.types[self.nhwc_name(o)] = _permuted_type(self.g.types.get(o), TO_NHWC)
        return out

    def exits(self, node: Node) -> list[Node]:
        outputs = {v.name for v in self.g.outputs}
        out = []
        for o in node.outputs:
            if o and (o in outputs or any(id(u) not in self.r.members for u in self.r.users.get(o, []))):
                out.append(self.transpose(self.nhwc_name(o), o, TO_NCHW))
        return out


def transform_to_nhwc(graph: Graph, providers, overridable: set[str]) -> int:
    """Move the regions around the seeds of ``graph`` to NHWC; returns the Convs converted."""
    region = _Region(graph, providers, overridable)
    seeds = [(n, p) for n in graph.nodes for p in [region.is_seed(n)] if p is not None]
    if not seeds:
        return 0
    region.grow(seeds)
    rw = _Rewriter(region)
    nodes: list[Node] = []
    for node in graph.nodes:
        if id(node) not in region.members:
            nodes.append(node)
            continue
        before: list[Node] = []
        new = rw.rewrite(node, before)
        nodes.extend(before)
        nodes.append(new)
        nodes.extend(rw.exits(node))
    graph.nodes = nodes
    drop_unread_initializers(graph, [name for name, _ in rw.new_consts])
    return len(seeds)
