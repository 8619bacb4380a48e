"""Expansion of ops that onnx defines as functions (Mish, Gelu, LayerNormalization, ...)
into their bodies, for nodes that no provider has a kernel for.

onnxruntime does the same: a function op without a kernel is inlined.  The body comes
from the op's schema (``function_body`` or the context-dependent builder, which needs
the input types), with names made unique per call site and attribute references bound
to the node's attributes or the function's defaults.
"""
from __future__ import annotations

import itertools

import onnx

from ortgpu.graph import Graph, Node, node_from_proto
from ortgpu.placement import choose, node_types
from ortgpu.providers.registry import schema_for

_counter = itertools.count()
_MAX_EXPANSION_DEPTH = 8


def function_body(node: Node, input_types: list) -> onnx.FunctionProto | None:
    """The FunctionProto that defines `node`'s op at its opset, or None when there is none."""
    schema = schema_for(node.op_type, node.opset, node.domain)
    if schema is None:
        return None
    raw = b""
    if schema.has_function:
        versions = sorted(schema.function_opset_versions)
        usable = [v for v in versions if v <= node.opset] or versions[:1]
        raw = schema.get_function_with_opset_version(usable[-1])
    if not raw and schema.has_context_dependent_function and node.proto is not None:
        if any(t is None for t in input_types):
            return None
        versions = sorted(schema.context_dependent_function_opset_versions)
        usable = [v for v in versions if v <= node.opset] or versions[:1]
        try:
            raw = schema.get_context_dependent_function_with_opset_version(
                usable[-1], node.proto.SerializeToString(), [t.SerializeToString() for t in input_types])
        except Exception:
            return None
    if not raw:
        return None
    fp = onnx.FunctionProto()
    fp.ParseFromString(raw)
    return fp


def expand(node: Node, fp: onnx.FunctionProto, graph_opsets: dict[str, int], types: dict) -> list[Node]:
    """The nodes of `fp` instantiated for `node`: inputs, outputs and attributes bound."""
    tag = f"{node.name or node.op_type}__fn{next(_counter)}"
    rename: dict[str, str] = {}
    for formal, actual in itertools.zip_longest(fp.input, node.inputs, fillvalue=""):
        if formal:
            rename[formal] = actual
    for formal, actual in itertools.zip_longest(fp.output, node.outputs, fillvalue=""):
        if formal:
            rename[formal] = actual or f"{tag}/{formal}"
    node_attrs = {a.name: a for a in node.proto.attribute} if node.proto is not None else {}
    defaults = {a.name: a for a in fp.attribute_proto}
    opsets = dict(graph_opsets)
    for imp in fp.opset_import:
        opsets["" if imp.domain == "ai.onnx" else imp.domain] = imp.version

    out = []
    for k, p in enumerate(fp.node):
        q = onnx.NodeProto()
        q.CopyFrom(p)
        q.name = f"{tag}/{p.name or p.op_type}_{k}"
        del q.input[:]
        del q.output[:]
        q.input.extend(rename.setdefault(x, f"{tag}/{x}") if x else "" for x in p.input)
        q.output.extend(rename.setdefault(x, f"{tag}/{x}") if x else "" for x in p.output)
        del q.attribute[:]
        for a in p.attribute:
            if a.ref_attr_name:
                src = node_attrs.get(a.ref_attr_name) or defaults.get(a.ref_attr_name)
                if src is None:
                    continue
                b = onnx.AttributeProto()
                b.CopyFrom(src)
                b.name = a.name
                q.attribute.append(b)
            else:
                q.attribute.append(a)
        out.append(node_from_proto(q, opsets, types))
    return out


def expand_unimplemented(graph: Graph, providers, depth: int = 0) -> int:
    """Replace, in `graph` and its subgraphs, each node no provider runs by its function body
    (the op's onnx function, or an ortgpu fused op's definition), recursively; the number of
    nodes expanded.  The session does this once, after optimization and before partitioning."""
    from ortgpu.fused_ops import fused_body  # noqa: PLC0415 - the fused-op bodies import this module
    new_nodes, expanded = [], 0
    for node in graph.nodes:
        for sub in node.subgraphs():
            expanded += expand_unimplemented(sub, providers, depth)
        if depth < _MAX_EXPANSION_DEPTH and choose(node, providers, graph.types) is None:
            in_types = node_types(node, graph.types)[0]
            fp = function_body(node, in_types) or fused_body(node, graph.opsets)
            if fp is not None:
                body = Graph(graph.name, expand(node, fp, graph.opsets, graph.types), [], [], {},
                             graph.types, graph.opsets)
                expanded += 1 + expand_unimplemented(body, providers, depth + 1)
                new_nodes.extend(body.nodes)
                continue
        new_nodes.append(node)
    if expanded:
        graph.nodes = new_nodes
    return expanded
