"""BNMulAddFusion (basic level): an inference BatchNormalization followed by a multiplication or
an addition by a per-channel constant becomes one BatchNormalization, scale' = scale * s and
B' = B * s for a Mul by s, B' = B + t for an Add of t (the pass repeats round after round, so a
Mul then an Add both fold).  Caffe2's DenseNet-121 export writes BatchNormalization, Mul, Add
before each Relu; folded, 124 passes over the activations a run are gone.

Rules: the BatchNormalization is an ai.onnx one in inference mode (no training_mode, opset 9+
or spatial=1 before) with one output, read only by the Mul/Add and not a graph output; its
scale and B are constants of shape (C,) (mean and var are left as they are); the other
operand is a constant of the same dtype that is one value per channel or a single value (see
conv_folding.per_channel, with the BatchNormalization's output rank known).  Arithmetic is in
float64, stored in the scale's dtype as new initializers (the old ones may be shared).
"""
from __future__ import annotations

import numpy as np

from ortgpu.graph import Graph, Node
from ortgpu.graph_query import add_initializer, constants, consumers, output_names, rank
from ortgpu.optimizer.graph_tools.conv_folding import per_channel
from ortgpu.optimizer.graph_tools.graph_edit import remove


def _inference_bn(bn: Node) -> bool:
    return (bn.op_type == "BatchNormalization" and bn.domain == "" and len(bn.inputs) == 5
            and len([o for o in bn.outputs if o]) == 1 and bn.outputs[0] != ""
            and not bn.attrs.get("training_mode", 0) and (bn.opset >= 9 or bn.attrs.get("spatial", 1)))


def _folded(reader: Node, scale: np.ndarray, beta: np.ndarray, vector: np.ndarray):
    """The new (scale, B) in float64 once `reader` (Mul or Add by `vector`) is folded."""
    if reader.op_type == "Mul":
        return scale * vector, beta * vector
    return scale, beta + vector


def fuse_bn_mul_add(graph: Graph, providers, overridable: set[str]) -> int:
    """Fold each per-channel constant Mul/Add that alone reads an inference BatchNormalization's
    output into it; returns the number of nodes folded."""
    consts = constants(graph, overridable)
    users = consumers(graph)
    outs = output_names(graph)
    dead = []
    for bn in graph.nodes:
        if not _inference_bn(bn):
            continue
        y = bn.outputs[0]
        readers = users.get(y, [])
        if y in outs or len(readers) != 1 or readers[0].op_type not in ("Mul", "Add") or readers[0].domain != "":
            continue
        reader = readers[0]
        if len(reader.inputs) != 2 or reader.inputs.count(y) != 1:
            continue
        value = consts.get(reader.inputs[1] if reader.inputs[0] == y else reader.inputs[0])
        scale, beta = consts.get(bn.inputs[1]), consts.get(bn.inputs[2])
        out_rank = rank(graph, y) or rank(graph, bn.inputs[0])
        if value is None or scale is None or beta is None or out_rank is None or out_rank < 2:
            continue
        if scale.ndim != 1 or beta.shape != scale.shape or value.dtype != scale.dtype:
            continue
        vector = per_channel(value, scale.shape[0], out_rank)
        if vector is None:
            continue
        new_scale, new_beta = _folded(reader, scale.astype(np.float64), beta.astype(np.float64), vector)
        tag = bn.name or y
        bn.inputs = [bn.inputs[0], add_initializer(graph, f"{tag}_scale_folded", new_scale.astype(scale.dtype)),
                     add_initializer(graph, f"{tag}_B_folded", new_beta.astype(scale.dtype)), *bn.inputs[3:]]
        bn.outputs = [reader.outputs[0]]
        bn.proto = None  # the node no longer matches its file form
        dead.append(reader)
    remove(graph, dead)
    return len(dead)
