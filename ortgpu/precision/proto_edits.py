"""The float16 converter's edits of protobufs: renaming a value's uses and definition
across an ONNX graph and its subgraphs, and filling in value types.  What the converter asks
of a GraphProto (its subgraphs, its names) is :mod:`ortgpu.graph_query`'s."""
from __future__ import annotations

import onnx
from onnx import TensorProto

from ortgpu.graph_query import proto_subgraphs


def rename_uses(g: onnx.GraphProto, renames: dict[str, str]) -> None:
    """Every read of a name in `renames` in `g` and its subgraphs (node inputs, subgraph
    outputs) reads its new name instead."""
    for n in g.node:
        for i, name in enumerate(n.input):
            if name in renames:
                n.input[i] = renames[name]
        for sub in proto_subgraphs(n):
            rename_uses(sub, renames)
            for vi in sub.output:
                if vi.name in renames:
                    vi.name = renames[vi.name]


def rename_definition(g, old: str, new: str) -> None:
    """The node output or initializer of `g` named `old` is renamed `new`."""
    for n in g.node:
        for j, name in enumerate(n.output):
            if name == old:
                n.output[j] = new
                return
    for t in g.initializer:
        if t.name == old:
            t.name = new
            return
    # a graph input passed straight through: a Cast reads it under its own name
    raise ValueError(f"graph output '{old}' is a graph input of another type; cannot convert it")


def with_types(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with value_info for its values when some node output lacks one.  Shape inference
    runs on a copy whose large initializers carry no data (it needs their types and shapes
    only), which spares serializing the weights; the nodes (subgraph value_info) come back."""
    g = model.graph
    known = {vi.name for vi in list(g.value_info) + list(g.output)}
    if all(o in known for n in g.node for o in n.output if o):
        return model
    skeleton = onnx.ModelProto()
    _copy_without_weights(model, skeleton)
    inferred = onnx.shape_inference.infer_shapes(skeleton, strict_mode=False, data_prop=True)
    del g.value_info[:]
    g.value_info.extend(inferred.graph.value_info)
    del g.node[:]
    g.node.extend(inferred.graph.node)
    return model


def _copy_without_weights(model: onnx.ModelProto, out: onnx.ModelProto) -> None:
    for field in ("ir_version", "opset_import", "functions"):
        if field == "ir_version":
            out.ir_version = model.ir_version
        else:
            getattr(out, field).extend(getattr(model, field))
    g, sg = model.graph, out.graph
    sg.name = g.name
    for field in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(sg, field).extend(getattr(g, field))
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT and (len(t.raw_data) > 4096 or len(t.float_data) > 1024):
            stub = sg.initializer.add()
            stub.name, stub.data_type = t.name, t.data_type
            stub.dims.extend(t.dims)
        else:
            sg.initializer.append(t)
