"""Value types inferred again after rewrites, as onnxruntime resolves its graph after each
transformer.

Folding turns computed values into initializers of known shape, which lets shape inference
say more than it could on the file (a broadcast against a folded constant keeps the
``batch`` dim_param, say), and the passes that compare dims (ReshapeFusion, MatMulAddFusion,
ExpandElimination, ...) find more.  The graph is written out with its large initializers as
typed inputs (inference needs their shapes, not their data) and the types known so far as
value_info hints, inferred by onnx, and each value's type is merged into ``graph.types``:
per dim a static value beats a dim_param, which beats an unknown dim; onnx's invented
``unk__`` names count as unknown.  A failed inference changes nothing.

onnx leaves the dim a Reshape computes from -1 unknown; :func:`refine_reshapes` names it
when the element counts say which input dim it is (a single symbol left over, static dims
equal): Reshape(x[batch, 1, 768], [-1, 768]) is [batch, 768].  Inference then runs again
so that the name reaches the values downstream.
"""
from __future__ import annotations

import math

import onnx
import onnx.shape_inference

from ortgpu.graph import Graph
from ortgpu.graph_query import dims, int_list, tensor_type, type_dims

_DATA_KEPT_BYTES = 1024  # initializers up to this size keep their data (shape values need it)
_MAX_PASSES = 3


def refresh_types(graph: Graph) -> None:
    """Merge freshly inferred types into `graph.types` (top-level graphs only: a subgraph
    alone lacks its outer scope), naming Reshape's -1 dims where they can be named."""
    for _ in range(_MAX_PASSES):
        _infer(graph)
        if not refine_reshapes(graph):
            return


def _infer(graph: Graph) -> None:
    from ortgpu.model_writer import graph_to_proto  # noqa: PLC0415 - the writer imports the optimizer
    proto = graph_to_proto(graph, typed_inputs_above=_DATA_KEPT_BYTES)
    declared = {v.name for v in proto.input} | {v.name for v in proto.output} | {t.name for t in proto.initializer}
    proto.value_info.extend(onnx.helper.make_value_info(o, graph.types[o]) for n in graph.nodes for o in n.outputs
                            if o and o not in declared and o in graph.types)
    model = onnx.helper.make_model(proto, opset_imports=[onnx.helper.make_opsetid(d, v)
                                                         for d, v in graph.opsets.items()])
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - inference is a help, never a requirement
        return
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        merged = _merge(graph.types.get(vi.name), vi.type)
        if merged is not None:
            graph.types[vi.name] = merged


def refine_reshapes(graph: Graph) -> int:
    """Name the unknown -1 dim of Reshape outputs where the counts allow; how many were named."""
    named = 0
    for n in graph.nodes:
        if n.op_type != "Reshape" or n.domain != "" or len(n.inputs) < 2 or n.opset < 5:
            continue
        shape, have, out = int_list(graph.initializers.get(n.inputs[1])), dims(graph, n.inputs[0]), n.outputs[0]
        tp = graph.types.get(out)
        if shape is None or have is None or -1 not in shape or tensor_type(tp) is None:
            continue
        at = shape.index(-1)
        cur = tp.tensor_type.shape.dim
        if len(cur) != len(shape) or _known(cur[at]):
            continue
        sym = _minus_one_dim(shape, have, bool(n.attrs.get("allowzero", 0)))
        if sym is not None:
            new = onnx.TypeProto()
            new.CopyFrom(tp)
            new.tensor_type.shape.dim[at].dim_param = sym
            graph.types[out] = new
            named += 1
    return named


def _minus_one_dim(shape: list[int], have: list, allowzero: bool) -> str | None:
    """The dim_param the -1 entry of `shape` stands for, given the input dims `have`."""
    kept = [have[p] if w == 0 and not allowzero and p < len(have) else w
            for p, w in enumerate(shape) if w != -1]
    if any(d is None for d in have) or any(d is None or d == 0 for d in kept):
        return None
    syms_in = [d for d in have if isinstance(d, str)]
    syms_out = [d for d in kept if isinstance(d, str)]
    for s in list(syms_out):
        if s in syms_in:
            syms_in.remove(s)
            syms_out.remove(s)
    static_in = math.prod(d for d in have if isinstance(d, int))
    static_out = math.prod(d for d in kept if isinstance(d, int))
    if syms_out or len(syms_in) != 1 or static_in != static_out:
        return None
    return syms_in[0]


def _known(d) -> int:
    """How much a dim says: 2 static, 1 named, 0 unknown."""
    if d.HasField("dim_value"):
        return 2
    return 1 if d.dim_param and not d.dim_param.startswith("unk__") else 0


def _merge(old: onnx.TypeProto | None, new: onnx.TypeProto) -> onnx.TypeProto | None:
    """The type that knows the most of `old` and `new`, or None to keep `old`."""
    if type_dims(new) is None:
        return None
    if type_dims(old) is None:
        out = onnx.TypeProto()
        out.CopyFrom(new)
        for d in out.tensor_type.shape.dim:
            if not _known(d):
                d.Clear()
        if tensor_type(old) is not None and old.tensor_type.elem_type:
            out.tensor_type.elem_type = old.tensor_type.elem_type
        return out
    a, b = old.tensor_type.shape.dim, new.tensor_type.shape.dim
    if len(a) != len(b) or all(_known(x) >= _known(y) for x, y in zip(a, b)):
        return None
    out = onnx.TypeProto()
    out.CopyFrom(old)
    for d, y in zip(out.tensor_type.shape.dim, b):
        if _known(y) > _known(d):
            d.CopyFrom(y)
    return out
