"""The graph IR back into ONNX: GraphProto / ModelProto, and the optimized model that
``SessionOptions.optimized_model_filepath`` asks for.

The written model is valid ONNX (``onnx.checker.check_model(full_check=True)`` passes):
initializers from the graph's arrays, every node's attributes (subgraphs written again, since
passes change them too), the source model's IR version, producer and metadata, and its opset
imports.  Fused ops of the ``ortgpu`` domain add that domain's import and their function
bodies (``ortgpu.fused_ops``) as model-local functions, so any ONNX tool can
run the file; ortgpu, loading it, keeps those nodes where it has kernels for them.

External data: as onnxruntime's session config keys say
(``session.optimized_model_external_initializers_file_name``, and
``..._min_size_in_bytes``, default 1024), or, without them, automatically for a model whose
initializers pass the 2 GB protobuf limit (into ``<file name>.data`` beside it).
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import AttributeProto, numpy_helper

from ortgpu.errors import Fail
from ortgpu.graph import IMPLIED_DOMAINS, Graph, Node, attribute_value
from ortgpu.providers.registry import schema_for

EXTERNAL_FILE_KEY = "session.optimized_model_external_initializers_file_name"
EXTERNAL_MIN_SIZE_KEY = "session.optimized_model_external_initializers_min_size_in_bytes"
_PROTOBUF_LIMIT = 2_000_000_000 - (64 << 20)  # bytes, with room for everything but the weights
_FUNCTIONS_IR = 8  # model-local functions need IR 8
_OVERLOADS_IR = 10  # function overloads (FunctionProto.overload, NodeProto.overload) need IR 10


# --- attributes ---------------------------------------------------------------------------
def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and a.tobytes() == b.tobytes())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _declared_type(node: Node, name: str) -> int | None:
    schema = schema_for(node.op_type, node.opset, node.domain)
    attr = schema.attributes.get(name) if schema is not None else None
    return int(attr.type) if attr is not None else None


def attribute_to_proto(node: Node, name: str, value, overloads: dict | None = None) -> AttributeProto:
    """One parsed attribute as an AttributeProto, typed as the op's schema declares it.
    `overloads`: id(node) -> function overload name, for fused nodes in subgraphs."""
    declared = _declared_type(node, name)
    if isinstance(value, Graph):
        return onnx.helper.make_attribute(name, graph_to_proto(value, overloads=overloads))
    if isinstance(value, np.ndarray):
        value = numpy_helper.from_array(value)
    elif isinstance(value, list):
        if value and isinstance(value[0], Graph):
            value = [graph_to_proto(g, overloads=overloads) for g in value]
        elif value and isinstance(value[0], np.ndarray):
            value = [numpy_helper.from_array(v) for v in value]
        elif declared == AttributeProto.FLOATS:
            value = [float(v) for v in value]
    elif declared == AttributeProto.FLOAT and isinstance(value, int):
        value = float(value)
    if isinstance(value, list) and not value:
        return onnx.helper.make_attribute(name, [], attr_type=declared or AttributeProto.INTS)
    return onnx.helper.make_attribute(name, value)


def node_to_proto(node: Node, overloads: dict | None = None) -> onnx.NodeProto:
    """`node` as a NodeProto.  An attribute whose value still equals its file form is copied
    from the node's NodeProto as it was (keeping sparse tensors and names exact).
    `overloads` (id(node) -> name) gives the function overload a fused node calls."""
    p = onnx.helper.make_node(node.op_type, node.inputs, node.outputs, name=node.name,
                              domain=node.domain or None)
    original = {a.name: a for a in node.proto.attribute} if node.proto is not None else {}
    for name, value in node.attrs.items():
        a = original.get(name)
        if (a is not None and a.type not in (AttributeProto.GRAPH, AttributeProto.GRAPHS)
                and _same(attribute_value(a, {}, {}), value)):
            p.attribute.append(a)
        else:
            p.attribute.append(attribute_to_proto(node, name, value, overloads))
    if node.proto is not None and node.proto.doc_string:
        p.doc_string = node.proto.doc_string
    overload = (overloads or {}).get(id(node), "")
    if overload:
        p.overload = overload
    return p


# --- graphs and models --------------------------------------------------------------------
def graph_to_proto(graph: Graph, typed_inputs_above: int | None = None,
                   overloads: dict | None = None) -> onnx.GraphProto:
    """`graph` as a GraphProto (nodes in their order, initializers from the arrays).

    `typed_inputs_above` (bytes): initializers larger than that become typed graph inputs
    without data instead, for shape inference over a graph whose weights it does not need.
    `overloads`: id(node) -> the function overload a fused node calls."""
    inits, extra_inputs = [], []
    for name, value in graph.initializers.items():
        if typed_inputs_above is not None and value.nbytes > typed_inputs_above and value.dtype != object:
            if name not in {v.name for v in graph.inputs}:
                extra_inputs.append(onnx.helper.make_value_info(name, _type_of(value)))
            continue
        inits.append(numpy_helper.from_array(value, name))
    return onnx.helper.make_graph([node_to_proto(n, overloads) for n in graph.nodes], graph.name,
                                  list(graph.inputs) + extra_inputs, list(graph.outputs), inits,
                                  value_info=_contrib_value_info(graph))


def _contrib_value_info(graph: Graph) -> list[onnx.ValueInfoProto]:
    """The types of the values that nodes outside onnx's domains (com.microsoft, ortgpu)
    produce, as known to the graph: onnx's shape inference cannot type them, and a reader
    (a subgraph reading one from the outer scope, a loader) needs them, as in the models
    onnxruntime's optimizer writes."""
    from ortgpu.graph_query import tensor_type  # noqa: PLC0415
    listed = {v.name for v in graph.outputs}
    out = []
    for n in graph.nodes:
        if n.domain in ("", "ai.onnx", "ai.onnx.ml"):
            continue
        for o in n.outputs:
            tp = graph.types.get(o) if o and o not in listed else None
            if tp is not None and tensor_type(tp) is not None:
                out.append(onnx.helper.make_value_info(o, tp))
                listed.add(o)
    return out


def _type_of(value: np.ndarray) -> onnx.TypeProto:
    from ortgpu.dtypes import onnx_code  # noqa: PLC0415
    return onnx.helper.make_tensor_type_proto(onnx_code(value.dtype), list(value.shape))


def _fused_nodes(graph: Graph):
    from ortgpu.fused_ops import DOMAIN  # noqa: PLC0415
    for n in graph.nodes:
        if n.domain == DOMAIN:
            yield n
        for g in n.subgraphs():
            yield from _fused_nodes(g)


def _fused_functions(graph: Graph, opset: int) -> tuple[list[onnx.FunctionProto], dict[int, str]]:
    """The function bodies of the graph's fused nodes, and id(node) -> overload name.

    A body is built for every node (it may depend on the node's attributes and inputs);
    identical bodies are written once.  An op type with one body and no overload name keeps
    the plain function (IR 8); distinct bodies of one op type are overloads of it (IR 10):
    a body that names its own overload (FusedElementwise: the program's digest) keeps that
    name, the others are called 'v0', 'v1', ..."""
    from ortgpu.fused_ops import DOMAIN, FUNCTIONS  # noqa: PLC0415
    bodies: dict[str, dict[bytes, onnx.FunctionProto]] = {}  # op type -> content -> body
    of_node: list[tuple[Node, bytes]] = []
    for n in _fused_nodes(graph):
        if n.op_type not in FUNCTIONS:
            raise Fail(f"Cannot save the optimized model: fused op {DOMAIN}::{n.op_type} "
                       f"(node '{n.name}') has no function body registered in fused_functions")
        body = FUNCTIONS[n.op_type](n, opset)
        body.domain, body.name = DOMAIN, n.op_type
        own = body.overload
        body.overload = ""
        key = body.SerializeToString(deterministic=True)
        body.overload = own
        bodies.setdefault(n.op_type, {}).setdefault(key, body)
        of_node.append((n, key))
    functions, names = [], {}
    for op_type, distinct in bodies.items():
        used: set[str] = set()
        plain = len(distinct) == 1 and not next(iter(distinct.values())).overload
        for k, (key, body) in enumerate(distinct.items()):
            if not plain:
                name = body.overload or f"v{k}"
                while name in used:
                    name = f"{name}_{k}"
                body.overload = name
            used.add(body.overload)
            names[(op_type, key)] = body.overload
            functions.append(body)
    overloads = {id(n): names[(n.op_type, key)] for n, key in of_node if names[(n.op_type, key)]}
    return functions, overloads


def _node_domains(graph: Graph) -> set:
    """The domains of the nodes of `graph` and of its subgraphs."""
    found = set()
    for n in graph.nodes:
        found.add(n.domain)
        for g in n.subgraphs():
            found |= _node_domains(g)
    return found


def model_from_graph(source: onnx.ModelProto, graph: Graph) -> onnx.ModelProto:
    """A ModelProto of `graph` that keeps `source`'s IR version, producer and metadata, with
    the ortgpu domain's import and function bodies when fused ops are used (one body per
    distinct node form, as function overloads where an op type needs several)."""
    from ortgpu.fused_ops import DOMAIN, DOMAIN_VERSION  # noqa: PLC0415
    opsets = dict(graph.opsets)
    for d in _node_domains(graph):  # a domain onnxruntime implies (com.microsoft) is imported
        if d in IMPLIED_DOMAINS:
            opsets.setdefault(d, IMPLIED_DOMAINS[d])
    functions, overloads = _fused_functions(graph, opsets.get("", 1))
    if functions:
        opsets.setdefault(DOMAIN, DOMAIN_VERSION)
        for f in functions:  # every domain a body uses is imported by the model too
            for imp in f.opset_import:
                opsets.setdefault(imp.domain, imp.version)
    model = onnx.helper.make_model(
        graph_to_proto(graph, overloads=overloads),
        opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
        functions=functions)
    ir = source.ir_version
    if functions:
        ir = max(ir, _FUNCTIONS_IR)
    if any(f.overload for f in functions):
        ir = max(ir, _OVERLOADS_IR)
    model.ir_version = ir
    for field in ("producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(model, field, getattr(source, field))
    model.metadata_props.extend(source.metadata_props)
    if model.ir_version < 4:  # before IR 4 every initializer is listed among the inputs
        listed = {v.name for v in model.graph.input}
        model.graph.input.extend(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                                 for t in model.graph.initializer if t.name not in listed)
    return model


def save_model(model: onnx.ModelProto, path: str, external_file: str = "",
               min_external_bytes: int = 1024) -> None:
    """Write `model` to `path`; initializers of at least `min_external_bytes` go into
    `external_file` (relative to the model's folder) when one is named, or into
    '<file name>.data' when the model would not fit in one protobuf."""
    if not external_file and sum(t.ByteSize() for t in model.graph.initializer) > _PROTOBUF_LIMIT:
        external_file = os.path.basename(path) + ".data"
    try:
        if external_file:
            data_path = os.path.join(os.path.dirname(os.path.abspath(path)), external_file)
            if os.path.exists(data_path):
                os.remove(data_path)  # onnx appends to an existing data file
            onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=external_file, size_threshold=min_external_bytes)
        else:
            onnx.save_model(model, path)
    except OSError as e:
        raise Fail(f"Failed to save the optimized model to '{path}': {e.strerror or e}") from None


def save_optimized_model(source: onnx.ModelProto, graph: Graph, path: str, config: dict) -> None:
    """What ``optimized_model_filepath`` does: write the optimized `graph` as a model."""
    min_size = config.get(EXTERNAL_MIN_SIZE_KEY, "1024")
    try:
        min_bytes = int(min_size)
    except ValueError:
        raise Fail(f"Session config entry {EXTERNAL_MIN_SIZE_KEY} must be an integer, got "
                   f"'{min_size}'") from None
    save_model(model_from_graph(source, graph), path, config.get(EXTERNAL_FILE_KEY, ""), min_bytes)
