"""Small graph edits that the optimizer passes share: renaming a value's uses (into
subgraphs too), taking a node out of the data flow, removing nodes.  What they ask of the
graph (readers, producers, constants, types) is :mod:`ortgpu.graph_query`'s.

Rules every pass keeps through these helpers: nodes stay in topological order; a graph
output keeps its name (a node that produces one is bypassed by renaming its input's producer
instead, or not at all); an overridable initializer (a run may feed it) is not a constant.
"""
from __future__ import annotations

import onnx

from ortgpu.graph import Graph, Node
from ortgpu.graph_query import constants, output_names, producers


def rename_uses(graph: Graph, mapping: dict[str, str]) -> None:
    """Make every reader of a value `old` in `mapping` read `mapping[old]` instead, in
    subgraphs too (unless a subgraph defines its own `old`).  A subgraph output naming `old`
    is renamed; the top-level outputs are not.  One sweep over the nodes, so passes batch
    their renames."""
    if not mapping:
        return
    for n in graph.nodes:
        ins = n.inputs
        for i, x in enumerate(ins):
            if x in mapping:
                ins[i] = mapping[x]
        for g in n.subgraphs():
            _rename_in_subgraph(g, mapping)


def _rename_in_subgraph(g: Graph, mapping: dict[str, str]) -> None:
    defined = {v.name for v in g.inputs} | set(g.initializers)
    defined.update(o for n in g.nodes for o in n.outputs)
    visible = {old: new for old, new in mapping.items() if old not in defined}  # others are shadowed
    if not visible:
        return
    rename_uses(g, visible)
    for i, v in enumerate(g.outputs):
        if v.name in visible:
            w = onnx.ValueInfoProto()
            w.CopyFrom(v)
            w.name = visible[v.name]
            g.outputs[i] = w


class Rewirer:
    """Takes nodes out of the data flow during one pass and applies the renames in one sweep.

    ``bypass(node, src, dst)`` lets the readers of `dst` (an output of `node`) read `src`
    instead, and marks `node` for removal.  When `dst` is a graph output it keeps its name:
    the node producing `src` is renamed to produce `dst` instead, which needs `src` to be made
    by a node of this graph and not be a graph output itself; otherwise bypass returns False
    and the node stays.  Names are resolved through earlier bypasses, so chains collapse.
    ``finish()`` renames, removes the marked nodes and returns how many went."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.outs = output_names(graph)
        self.made = producers(graph)
        self.alias: dict[str, str] = {}
        self.dead: list[Node] = []

    def resolve(self, name: str) -> str:
        seen = set()
        while name in self.alias and name not in seen:
            seen.add(name)
            name = self.alias[name]
        return name

    def bypass(self, node: Node, src: str, dst: str) -> bool:
        src = self.resolve(src)
        if dst not in self.outs:
            self.alias[dst] = src
        else:
            maker = self.made.get(src)
            if src in self.outs or maker is None or maker is node or any(maker is d for d in self.dead):
                return False
            maker.outputs = [dst if o == src else o for o in maker.outputs]
            self.made[dst] = maker
            self.alias[src] = dst
            if src in self.graph.types and dst not in self.graph.types:
                self.graph.types[dst] = self.graph.types[src]
        self.dead.append(node)
        return True

    def drop(self, node: Node) -> None:
        """Mark `node` for removal (its outputs are initializers now, or nobody reads them)."""
        self.dead.append(node)

    def finish(self) -> int:
        rename_uses(self.graph, {old: self.resolve(old) for old in self.alias})
        remove(self.graph, self.dead)
        return len(self.dead)


def bypass_each(graph: Graph, overridable: set[str], op_types, passed_input) -> int:
    """Take out of the data flow every ai.onnx node whose type is in `op_types` and for which
    ``passed_input(node, graph, consts)`` names the input it passes through unchanged (None:
    the node stays), with a Rewirer; returns how many nodes went."""
    consts = constants(graph, overridable)
    rw = Rewirer(graph)
    for n in graph.nodes:
        if n.op_type not in op_types or n.domain != "":
            continue
        x = passed_input(n, graph, consts)
        if x is not None:
            rw.bypass(n, x, n.outputs[0])
    return rw.finish()


def remove(graph: Graph, dead: list[Node]) -> None:
    """Drop the nodes in `dead` (by identity), keeping the others' order."""
    if dead:
        ids = {id(n) for n in dead}
        graph.nodes = [n for n in graph.nodes if id(n) not in ids]
