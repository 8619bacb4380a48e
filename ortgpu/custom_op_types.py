"""Types and shapes of custom-op outputs, for shape inference.

onnx's shape inference knows nothing of a custom op, so the values it produces (and every
value computed from them) would stay untyped, and the placement could not tell which device
may hold them.  :func:`annotate` writes each custom node's output types (and shapes, where
the op declares a shape function) into the model's value_info from the op's declaration,
checks the declared input types, and lets onnx's inference carry them downstream.
"""
from __future__ import annotations

import onnx
from onnx import helper

from ortgpu.custom_ops import _REQUIRED, CustomOpDef, definition_for, session_ops
from ortgpu.dtypes import elem_name
from ortgpu.errors import InvalidGraph


def prepare(model: onnx.ModelProto, custom_ops) -> tuple[onnx.ModelProto, dict]:
    """A session's ``custom_ops=`` as its own op table, and `model` with the outputs of its
    custom nodes (own or global ops) typed."""
    own = session_ops(custom_ops)
    return annotate(model, own), own


def annotate(model: onnx.ModelProto, own: dict) -> onnx.ModelProto:
    """`model` with the outputs of its custom nodes typed (a new proto when anything changes)."""
    opsets = {("" if i.domain == "ai.onnx" else i.domain): i.version for i in model.opset_import}
    custom = [(n, d) for n in model.graph.node if n.domain not in ("", "ai.onnx")
              for d in [definition_for(n.domain, n.op_type, opsets.get(n.domain, 1), own)] if d is not None]
    if not custom:
        return model
    model = _copy(model)
    done: set[int] = set()
    while len(done) < len(custom):
        types = _known_types(model.graph)
        for k in range(len(custom)):  # a declared graph output of a node not yet typed waits too
            if k not in done:
                for o in custom[k][0].output:
                    types.pop(o, None)
        ready = [k for k in range(len(custom)) if k not in done
                 and all(x in types for x in custom[k][0].input if x)]
        forced = not ready  # inputs that nothing types: go on with what is known
        for k in ready or [k for k in range(len(custom)) if k not in done]:
            node, d = custom[k]
            ins = [types.get(x) if x else None for x in node.input]
            _check_inputs(node, d, ins)
            done.add(k)
            for i, tp in enumerate(_output_types(node, d, ins)):
                if node.output[i] and tp is not None:
                    _set_type(model.graph, node.output[i], tp)
                    types[node.output[i]] = tp
        model = _infer(model)
        if forced:
            break
    return model


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    from ortgpu.loading import _dim_params, _forget_invented_dims  # noqa: PLC0415
    named = _dim_params(model.graph)
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - shapes are a help; the kernels compute the real ones
        return model
    _forget_invented_dims(model.graph, named)
    return model


def _known_types(g: onnx.GraphProto) -> dict:
    types = {vi.name: vi.type for vi in list(g.input) + list(g.value_info) + list(g.output)
             if vi.type.WhichOneof("value") and (vi.type.WhichOneof("value") != "tensor_type"
                                                 or vi.type.tensor_type.elem_type)}
    for t in g.initializer:
        types.setdefault(t.name, helper.make_tensor_type_proto(t.data_type, list(t.dims)))
    return types


def _check_inputs(node, d: CustomOpDef, ins) -> None:
    """InvalidGraph when a known input type differs from the op's declaration."""
    if d.input_types is None:
        return
    if len(node.input) > len(d.input_types):
        raise InvalidGraph(f"This is an invalid model. Custom op {d.domain}::{d.op_type} node '{node.name}' "
                           f"has {len(node.input)} inputs, the op declares {len(d.input_types)}")
    for i, (want, tp) in enumerate(zip(d.input_types, ins)):
        if want is None or tp is None or tp.WhichOneof("value") != "tensor_type":
            continue
        got = tp.tensor_type.elem_type
        if got and got != want:
            raise InvalidGraph(f"This is an invalid model. Type Error: Type (tensor({elem_name(got)})) of input "
                               f"{i} ('{node.input[i]}') of custom op {d.domain}::{d.op_type} in node "
                               f"'{node.name}' is invalid: the op declares tensor({elem_name(want)})")


def _output_types(node, d: CustomOpDef, ins) -> list:
    """TypeProto per output of `node`: the declared element type (or input 0's) and the shape
    the op's shape function gives (no shape when it has none)."""
    n = len(node.output)
    declared = list(d.output_types or [])
    first = ins[0].tensor_type.elem_type if ins and ins[0] is not None and \
        ins[0].WhichOneof("value") == "tensor_type" else 0
    codes = [(declared[i] if i < len(declared) and declared[i] is not None else first) for i in range(n)]
    shapes = _shapes(node, d, ins, n)
    return [helper.make_tensor_type_proto(c, shapes[i]) if c else None for i, c in enumerate(codes)]


def _shapes(node, d: CustomOpDef, ins, n: int) -> list:
    """Output shapes (lists of int/str/None) from the op's declaration, None where unknown."""
    if d.shape is None:
        return [None] * n
    in_shapes = [_dims(tp) for tp in ins]
    if d.shape == "same":
        return [in_shapes[0] if in_shapes else None] * n
    if not callable(d.shape):
        raise InvalidGraph(f"custom op {d.domain}::{d.op_type}: shape must be 'same' or a function, "
                           f"got {d.shape!r}")
    if any(s is None for s in in_shapes):
        return [None] * n  # an input of unknown rank: nothing to say
    attrs = {k: v for k, v in d.attrs.items() if v is not _REQUIRED}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        attrs[a.name] = v.decode() if isinstance(v, bytes) else v
    try:
        out = d.shape(*in_shapes, **attrs)
    except Exception as e:
        raise InvalidGraph(f"custom op {d.domain}::{d.op_type} node '{node.name}': its shape function "
                           f"failed on input shapes {in_shapes}: {type(e).__name__}: {e}") from None
    if out is None:
        return [None] * n
    out = [out] if n == 1 else list(out)  # one output: one shape; several: a shape each
    out = [None if s is None else list(s) for s in out]
    return (out + [None] * n)[:n]


def _dims(tp) -> list | None:
    if tp is None or tp.WhichOneof("value") != "tensor_type" or not tp.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tp.tensor_type.shape.dim]


def _set_type(g: onnx.GraphProto, name: str, tp: onnx.TypeProto) -> None:
    for vi in g.output:  # a graph output: what the model declares wins, the op fills the gaps
        if vi.name == name:
            if vi.type.WhichOneof("value") in (None, "tensor_type") and not vi.type.tensor_type.HasField("shape"):
                code = vi.type.tensor_type.elem_type
                vi.type.CopyFrom(tp)
                if code:
                    vi.type.tensor_type.elem_type = code
            return
    g.value_info.append(helper.make_value_info(name, tp))
