"""The float16 converter's edits of protobufs: filling in value types.  Renaming a value's
uses and definition is :mod:`ortgpu.optimizer.graph_tools.proto_rename`'s (shared with the
quantization tool).  What the converter asks of a GraphProto (its subgraphs, its names) is
:mod:`ortgpu.graph_query`'s."""
from __future__ import annotations

import onnx
from onnx import TensorProto


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
