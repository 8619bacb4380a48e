"""Renaming values in an ONNX GraphProto (the file form, before or without the IR of
ortgpu.graph): the float16 converter (ortgpu.precision.convert) and the quantization tool's
QDQ writer (ortgpu.quantization.qdq_writer) insert nodes on a value and move its readers or its
definition to a new name through these two functions.  graph_edit.rename_uses is the same
edit on the IR."""
from __future__ import annotations

import onnx

from ortgpu.graph_query import proto_subgraphs


def rename_uses(g: onnx.GraphProto, renames: dict[str, str]) -> None:
    """Every read of a name in `renames` in `g` and its subgraphs (node inputs, subgraph
    outputs) reads its new name instead (a subgraph that defines the name itself is left as
    it is: its reads are of its own value)."""
    if not renames:
        return
    for n in g.node:
        for i, name in enumerate(n.input):
            if name in renames:
                n.input[i] = renames[name]
        for sub in proto_subgraphs(n):
            own = {x.name for x in sub.input} | {t.name for t in sub.initializer} \
                | {o for m in sub.node for o in m.output}
            visible = {k: v for k, v in renames.items() if k not in own}
            rename_uses(sub, visible)
            for vi in sub.output:
                if vi.name in visible:
                    vi.name = visible[vi.name]


def rename_definition(g: onnx.GraphProto, old: str, new: str) -> None:
    """The node output or initializer of `g` named `old` is renamed `new` (its readers are
    not: rename_uses does that).  ValueError when `g` defines no `old` (a graph input)."""
    for n in g.node:
        for j, name in enumerate(n.output):
            if name == old:
                n.output[j] = new
                return
    for t in g.initializer:
        if t.name == old:
            t.name = new
            return
    raise ValueError(f"value '{old}' is not made by a node or an initializer of graph '{g.name}'; "
                     "cannot rename its definition")
