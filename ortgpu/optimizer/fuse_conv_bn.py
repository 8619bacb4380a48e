"""Conv followed by an inference BatchNormalization becomes one Conv (basic level).

Rules: the Conv's weight (and bias, if any) and the BatchNormalization's scale, B, mean
and var are constants; the Conv output feeds only that BatchNormalization and is not a
graph output; the BatchNormalization is in inference mode with one output.  Then
W' = W * s[m] and B' = (B - mean) * s + beta, with s = scale / sqrt(var + epsilon),
computed in float64 and stored in the weight's dtype.
"""
from __future__ import annotations

import numpy as np
import onnx

from ortgpu.graph import Graph, Node


def _consumers(graph: Graph) -> dict[str, list[Node]]:
    users: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for x in n.inputs:
            if x:
                users.setdefault(x, []).append(n)
        for g in n.subgraphs():
            for x in g.outer_names():
                users.setdefault(x, []).append(n)
    return users


def fuse_conv_batchnorm(graph: Graph, providers, overridable: set[str]) -> int:
    consts = {n: v for n, v in graph.initializers.items() if n not in overridable}
    users = _consumers(graph)
    outputs = {v.name for v in graph.outputs}
    removed: set[int] = set()
    fused = 0
    for conv in graph.nodes:
        if conv.op_type != "Conv" or conv.domain != "" or len(conv.outputs) != 1:
            continue
        y = conv.outputs[0]
        followers = users.get(y, [])
        if y in outputs or len(followers) != 1:
            continue
        bn = followers[0]
        if (bn.op_type != "BatchNormalization" or bn.domain != "" or bn.inputs[0] != y
                or len([o for o in bn.outputs if o]) != 1 or bn.attrs.get("training_mode", 0)
                or (bn.opset < 9 and not bn.attrs.get("spatial", 1))):
            continue
        w_name = conv.inputs[1]
        b_name = conv.inputs[2] if len(conv.inputs) > 2 and conv.inputs[2] else None
        params = bn.inputs[1:5]
        if w_name not in consts or (b_name and b_name not in consts) or not all(p in consts for p in params):
            continue
        w = consts[w_name]
        if w.dtype.kind != "f":
            continue
        scale, beta, mean, var = (consts[p].astype(np.float64) for p in params)
        bias_shape = consts[b_name].shape if b_name else (w.shape[0],)
        if (w.ndim < 3 or any(a.shape != (w.shape[0],) for a in (scale, beta, mean, var))
                or bias_shape != (w.shape[0],)):
            continue  # malformed: leave it to the kernels, which fail with the node named
        s = scale / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
        bias = consts[b_name].astype(np.float64) if b_name else np.zeros_like(mean)
        new_w = (w.astype(np.float64) * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
        new_b = ((bias - mean) * s + beta).astype(w.dtype)
        tag = f"{conv.name or y}__bnfused"
        graph.initializers[tag + "_W"] = new_w
        graph.initializers[tag + "_B"] = new_b
        code = onnx.helper.np_dtype_to_tensor_dtype(w.dtype)
        graph.types[tag + "_W"] = onnx.helper.make_tensor_type_proto(code, list(new_w.shape))
        graph.types[tag + "_B"] = onnx.helper.make_tensor_type_proto(code, list(new_b.shape))
        conv.inputs = [conv.inputs[0], tag + "_W", tag + "_B"]
        conv.outputs = [bn.outputs[0]]
        conv.proto = None  # the node no longer matches its file form
        removed.add(id(bn))
        fused += 1
    if removed:
        graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    return fused
